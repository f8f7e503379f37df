// Second factors and step-up against FakeSessiond: the sign-in that waits for
// a code, re-authentication in place, TOTP enrollment and the two 403s that
// ask for them.

import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { inspect } from 'node:util';

import {
  errorFromResponse,
  MfaRequiredError,
  NotSignedInError,
  ReauthenticationRequiredError,
  SessiondClient,
  SessiondError,
  StepUpRequiredError,
} from '../src/index.js';
import { setup } from './fake-client.js';
import { MFA_USER, RECOVERY_CODE, TOTP_CODE, USER } from './fake-server.js';

async function mfaRequired(client: SessiondClient, credentials = MFA_USER): Promise<MfaRequiredError> {
  const err = await client.login({ ...credentials, device: { name: 'phone', platform: 'ios' } }).then(
    () => assert.fail('login resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof MfaRequiredError, String(err));
  return err;
}

/** alice, signed in at aal 1, with TOTP enrolled on her account. */
async function enrolled(t: TestContext) {
  const s = await setup(t);
  await s.client.login(USER);
  await s.client.beginTotp();
  await s.client.confirmTotp(TOTP_CODE);
  return s;
}

test('login of an account with a second factor throws MfaRequiredError: typed, nothing stored, the token kept out of logs', async (t) => {
  const { server, storage, client } = await setup(t);
  const err = await mfaRequired(client);
  assert.ok(err instanceof SessiondError);
  assert.equal(err.status, 401);
  assert.equal(err.code, 'mfa_required');
  assert.equal(err.retryable, false);
  assert.deepEqual(err.methods, ['totp', 'recovery_code']);
  assert.match(err.mfaToken, /^mfa_/);
  // Half a sign-in: not in what a logger or error reporter would write out.
  for (const shown of [err.message, JSON.stringify(err), inspect(err, { depth: 5 }), JSON.stringify(err.problem)]) {
    assert.ok(!shown.includes(err.mfaToken), shown);
  }
  assert.equal(storage.get(), null);
  assert.equal(await client.session(), null);
  assert.deepEqual(server.logins.map((l) => l.status), [401]);
  await assert.rejects(client.fetch('/v1/me'), NotSignedInError);
});

test('completeLogin with a code signs in at aal 2, bound to a new DPoP key by a proof whose htu is /v1/auth/login/mfa', async (t) => {
  const { server, url, storage, ended, client } = await setup(t);
  const err = await mfaRequired(client);
  const session = await client.completeLogin({ mfaToken: err.mfaToken, code: TOTP_CODE });
  assert.equal(session.aal, 2);
  assert.deepEqual(session.amr, ['pwd', 'otp', 'mfa']);
  assert.ok(!Number.isNaN(Date.parse(session.auth_time!)));
  assert.equal(session.dpop_bound, true);
  assert.equal(session.device_name, 'phone', "the device login() was given");
  assert.deepEqual(server.mfaLogins, [{ dpop: true, htu: `${url}/v1/auth/login/mfa`, status: 201 }]);
  const stored = storage.get()!;
  assert.equal(stored.session.id, session.id);
  assert.equal(stored.dpopKey!.privateKey.extractable, false);
  assert.equal((await client.session())?.aal, 2);
  assert.equal((await client.fetch('/v1/me')).status, 200);
  // The session is bound to the key made for this request: its refresh proof checks out.
  await client.refresh();
  assert.equal(server.rotations, 1);
  await tick();
  assert.deepEqual(ended, []);
});

test('a wrong code is invalid_credentials and the same mfaToken still finishes (here with a recovery code); spent, it is unauthorized', async (t) => {
  const { server, storage, ended, client } = await setup(t);
  const { mfaToken } = await mfaRequired(client);
  const wrong = await client.completeLogin({ mfaToken, code: '000000' }).then(() => assert.fail('resolved'), (e: unknown) => e);
  assert.ok(wrong instanceof SessiondError && !(wrong instanceof MfaRequiredError), String(wrong));
  assert.equal(wrong.code, 'invalid_credentials');
  assert.equal(storage.get(), null);
  const session = await client.completeLogin({ mfaToken, recoveryCode: RECOVERY_CODE });
  assert.equal(session.aal, 2);
  assert.deepEqual(session.amr, ['pwd', 'mfa']);
  const spent = await client.completeLogin({ mfaToken, code: TOTP_CODE }).then(() => assert.fail('resolved'), (e: unknown) => e);
  assert.ok(spent instanceof SessiondError);
  assert.equal(spent.code, 'unauthorized', 'sign in again from the password');
  assert.equal(storage.get()?.session.id, session.id, 'a refused completion leaves the session held alone');
  assert.deepEqual(server.mfaLogins.map((l) => l.status), [401, 201, 401]);
  await tick();
  assert.deepEqual(ended, []);
});

test('without DPoP, completeLogin sends no proof and the session is unbound', async (t) => {
  const { server, client } = await setup(t, {}, { dpop: false });
  const { mfaToken } = await mfaRequired(client);
  const session = await client.completeLogin({ mfaToken, code: TOTP_CODE });
  assert.equal(session.dpop_bound, undefined);
  assert.deepEqual(server.mfaLogins, [{ dpop: false, htu: undefined, status: 201 }]);
});

test('a device clock gone wrong between the password and the code: the proof is made again once on the server time, the code not spent', async (t) => {
  const { server, client } = await setup(t);
  const { mfaToken } = await mfaRequired(client);
  server.clockOffsetMs = -10 * 60_000; // the device is now ten minutes ahead
  const session = await client.completeLogin({ mfaToken, code: TOTP_CODE });
  assert.equal(session.aal, 2);
  assert.deepEqual(server.mfaLogins.map((l) => l.status), [400, 201]);
});

test('TOTP enrollment: beginTotp, confirmTotp (a wrong code is invalid_request), mfaStatus, regenerateRecoveryCodes, removeTotp', async (t) => {
  const { client } = await setup(t);
  await client.login(USER);
  assert.deepEqual(await client.mfaStatus(), { totp: false, recovery_codes_left: 0, passkeys: 0 });
  const enrollment = await client.beginTotp();
  assert.match(enrollment.secret, /^[A-Z2-7]+$/);
  assert.match(enrollment.otpauth_url, /^otpauth:\/\/totp\//);
  const wrong = await client.confirmTotp('000000').then(() => assert.fail('resolved'), (e: unknown) => e);
  assert.ok(wrong instanceof SessiondError, String(wrong));
  assert.equal(wrong.status, 400);
  assert.equal(wrong.code, 'invalid_request');
  assert.equal((await client.mfaStatus()).totp, false);
  const codes = await client.confirmTotp(TOTP_CODE);
  assert.equal(codes.length, 10);
  assert.deepEqual(await client.mfaStatus(), { totp: true, recovery_codes_left: 10, passkeys: 0 });
  const fresh = await client.regenerateRecoveryCodes();
  assert.equal(fresh.length, 10);
  assert.ok(fresh.every((c) => !codes.includes(c)));
  await client.removeTotp();
  assert.deepEqual(await client.mfaStatus(), { totp: false, recovery_codes_left: 0, passkeys: 0 });
  await assert.rejects(client.regenerateRecoveryCodes(), (e: unknown) => e instanceof SessiondError && e.code === 'not_found');
  // The next sign-in needs no code again.
  assert.equal((await client.login(USER)).aal, 1);
});

test('reauthenticate with a code raises the session to aal 2 in place: same session and tokens, the stored Session updated', async (t) => {
  const { server, storage, ended, client } = await enrolled(t);
  const before = storage.get()!;
  assert.equal(before.session.aal, 1);
  assert.deepEqual(before.session.amr, ['pwd']);
  const session = await client.reauthenticate({ code: TOTP_CODE });
  assert.equal(session.id, before.session.id);
  assert.equal(session.aal, 2);
  assert.deepEqual(session.amr, ['pwd', 'otp', 'mfa']);
  assert.deepEqual(server.reauths.map((r) => [r.body, r.status]), [[{ code: TOTP_CODE }, 200]]);
  const after = storage.get()!;
  assert.equal(after.accessToken, before.accessToken);
  assert.equal(after.refreshToken, before.refreshToken);
  assert.equal(after.dpopKey, before.dpopKey);
  assert.deepEqual(after.session, session);
  assert.equal((await client.session())?.aal, 2);
  assert.equal(server.refreshes.length, 0);
  // A recovery code steps up too; a password with a code is one call.
  assert.equal((await client.reauthenticate({ password: USER.password, code: TOTP_CODE })).aal, 2);
  assert.deepEqual(server.reauths.at(-1)!.body, { password: USER.password, code: TOTP_CODE });
  await tick();
  assert.deepEqual(ended, []);
});

test('a wrong password or code at reauthenticate is invalid_credentials: no refresh, no sign-out, the session as it was', async (t) => {
  const { server, storage, ended, client } = await enrolled(t);
  const before = storage.get();
  for (const proof of [{ password: 'wrong password' }, { code: '000000' }, { recoveryCode: 'nope' }]) {
    const err = await client.reauthenticate(proof).then(() => assert.fail('resolved'), (e: unknown) => e);
    assert.ok(err instanceof SessiondError, String(err));
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_credentials');
  }
  assert.deepEqual(server.reauths.map((r) => r.body), [{ password: 'wrong password' }, { code: '000000' }, { recovery_code: 'nope' }]);
  assert.equal(server.refreshes.length, 0, 'a 401 about the password is not one about the token');
  assert.equal(storage.get(), before);
  assert.equal((await client.session())?.aal, 1);
  await tick();
  assert.deepEqual(ended, []);
});

test('an old session: enrollment throws ReauthenticationRequiredError until reauthenticate({ password })', async (t) => {
  const { server, ended, client } = await setup(t);
  const session = await client.login(USER);
  server.ageAuthTime(server.stepUpMaxAgeMs + 1000);
  const err = await client.beginTotp().then(() => assert.fail('resolved'), (e: unknown) => e);
  assert.ok(err instanceof ReauthenticationRequiredError && err instanceof SessiondError, String(err));
  assert.equal(err.status, 403);
  assert.equal(err.code, 'reauthentication_required');
  assert.equal(err.retryable, false);
  const aged = server.sessionState(session.id)!.authTime;
  const again = await client.reauthenticate({ password: USER.password });
  assert.equal(again.aal, 1, 'a password alone does not raise the level');
  assert.ok(Date.parse(again.auth_time!) > aged + server.stepUpMaxAgeMs, 'auth_time is now');
  assert.equal((await client.session())?.auth_time, again.auth_time);
  assert.equal((await client.beginTotp()).secret.length > 0, true);
  await tick();
  assert.deepEqual(ended, []);
});

test('an aal 1 session on an aal 2 route: errorFromResponse gives StepUpRequiredError, and after reauthenticate({ code }) the call goes through', async (t) => {
  const { client } = await enrolled(t);
  const res = await client.fetch('/v1/admin/users');
  assert.equal(res.status, 403);
  const err = await errorFromResponse(res);
  assert.ok(err instanceof StepUpRequiredError && err instanceof SessiondError, String(err));
  assert.equal(err.code, 'step_up_required');
  await client.reauthenticate({ code: TOTP_CODE });
  assert.equal((await client.fetch('/v1/admin/users')).status, 200);
});

test('the typed calls use the shared refresh, and need a session', async (t) => {
  const { server, client } = await setup(t);
  await assert.rejects(client.mfaStatus(), NotSignedInError);
  await assert.rejects(client.reauthenticate({ password: USER.password }), NotSignedInError);
  await client.login(USER);
  server.expireAccessTokens();
  const [a, b] = await Promise.all([client.mfaStatus(), client.reauthenticate({ password: USER.password })]);
  assert.equal(a.totp, false);
  assert.equal(b.aal, 1);
  assert.equal(server.refreshes.length, 1);
});

test('a step-up does not write its client\'s older tokens over a refresh another client sharing the storage stored', async (t) => {
  const { server, url, storage, client } = await enrolled(t);
  const other = new SessiondClient({ baseUrl: url, storage });
  await other.refresh(); // the storage now holds the successor; `client` still holds the spent token
  const live = storage.get()!;
  assert.equal(live.refreshToken, server.currentRefreshToken(live.session.id));
  assert.equal((await client.reauthenticate({ code: TOTP_CODE })).aal, 2);
  assert.equal(storage.get(), live, 'the live tokens stay: the step-up is on the server, the stored Session catches up at the next refresh');
  await other.refresh();
  assert.equal(storage.get()!.session.aal, 2);
  await client.refresh(); // takes the live token from the storage, as any refresh does
  assert.equal(server.reuseDetected, 0);
  assert.equal((await client.fetch('/v1/me')).status, 200);
});
