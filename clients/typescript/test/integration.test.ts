// The client against a real sessiond and redis-server (issue 19 point 6).
// SESSIOND_BIN names a built binary (go build -o /tmp/sessiond .); without
// it these tests are skipped with the reason, or fail when
// SESSIOND_TEST_REQUIRE_REDIS=1 says this run must use the real thing (CI).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';

import {
  createDpopProof,
  errorFromResponse,
  generateDpopKey,
  MemoryStorage,
  MfaRequiredError,
  ReauthenticationRequiredError,
  type Session,
  SessionEndedError,
  type SessionEndReason,
  SessiondClient,
  SessiondError,
  StepUpRequiredError,
  UnavailableError,
} from '../src/index.js';
import { hasRedisServer, type Stack, startStack } from './harness.js';
import { Authenticator, totpAt } from './totp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const bin = process.env.SESSIOND_BIN;
const required = process.env.SESSIOND_TEST_REQUIRE_REDIS === '1';
const missing = !bin
  ? 'SESSIOND_BIN is not set (build one: go build -o /tmp/sessiond . and run with SESSIOND_BIN=/tmp/sessiond)'
  : !hasRedisServer()
    ? 'redis-server is not on PATH'
    : '';

if (missing && required) {
  test('integration against a real sessiond and redis-server', () => {
    assert.fail(`SESSIOND_TEST_REQUIRE_REDIS=1 but ${missing}`);
  });
}

test("the tests' TOTP codes are RFC 6238's (appendix B, SHA-1)", () => {
  const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'; // base32 of "12345678901234567890"
  assert.equal(totpAt(secret, Math.floor(59 / 30), 8), '94287082');
  assert.equal(totpAt(secret, Math.floor(1111111109 / 30), 8), '07081804');
  assert.equal(totpAt(secret, Math.floor(20000000000 / 30), 8), '65353130');
});

describe('against a real sessiond and redis-server', { skip: missing || false }, () => {
  let stack: Stack;
  // The admin's calls go through a client too: its access token lives 10 s.
  let admin: SessiondClient;

  before(async () => {
    stack = await startStack(bin!);
    admin = new SessiondClient({ baseUrl: stack.directUrl, dpop: false });
    await admin.login({ username: stack.adminUsername, password: stack.adminPassword });
  });
  after(async () => {
    await stack?.stop();
  });

  /** A user of its own for each test, so no test sees another's sessions. */
  async function newUser(): Promise<{ username: string; password: string; id: string }> {
    const user = { username: `u${randomBytes(6).toString('hex')}`, password: randomBytes(12).toString('base64url') };
    const res = await admin.fetch('/v1/admin/users', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...user, role: 'user' }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    return { ...user, id: (await res.json()).id };
  }

  function newClient(options: { dpop?: boolean; storage?: MemoryStorage } = {}) {
    const storage = options.storage ?? new MemoryStorage();
    const ended: SessionEndReason[] = [];
    const client = new SessiondClient({
      baseUrl: stack.proxy.url,
      storage,
      dpop: options.dpop ?? true,
      refreshReuseGraceMs: stack.graceMs,
      onSessionEnded: (r) => ended.push(r),
    });
    return { client, storage, ended };
  }

  async function signIn(options: { dpop?: boolean } = {}) {
    const user = await newUser();
    const c = newClient(options);
    const session = await c.client.login({ ...user, device: { name: 'integration', platform: 'node' } });
    const stored = c.storage.get()!;
    assert.ok(stored.refreshToken, 'sign-in returned no refresh_token: does this sessiond implement ACCESS_TOKEN_TTL?');
    assert.equal(session.dpop_bound === true, options.dpop ?? true, 'dpop_bound as the sign-in asked');
    return { ...c, user, session, first: stored };
  }

  const direct = (path: string, token: string) =>
    fetch(`${stack.directUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });

  const refreshesSeen = () => stack.proxy.seen.filter((s) => s.method === 'POST' && s.path === '/v1/auth/refresh');

  test('100 parallel API calls across a real expiry cause exactly one refresh', async () => {
    const { client, storage, session, first } = await signIn();
    // Past the server's own leeway: until the old token is refused there.
    const deadline = Date.now() + 30_000;
    while ((await direct('/v1/me', first.accessToken)).status !== 401) {
      assert.ok(Date.now() < deadline, 'the access token never expired (ACCESS_TOKEN_TTL=10s)');
      await sleep(500);
    }
    stack.proxy.reset();
    const results = await Promise.all(Array.from({ length: 100 }, () => client.fetch('/v1/me')));
    assert.deepEqual(results.map((r) => r.status), Array(100).fill(200));
    assert.equal(refreshesSeen().length, 1, 'one POST /v1/auth/refresh reached the server');
    assert.equal(stack.proxy.count('GET', '/v1/me'), 100, 'no call went out with the expired token');
    const now = storage.get()!;
    assert.notEqual(now.accessToken, first.accessToken);
    assert.notEqual(now.refreshToken, first.refreshToken);
    assert.equal(now.session.id, session.id, 'the same session');
  });

  test('refresh ahead of expires_at: 100 parallel calls while the token is due cause one refresh, none refused', async () => {
    const { client, storage, first } = await signIn();
    // Due at half the token's life (the 30 s default skew is capped there).
    await sleep(first.accessExpiresAt - (first.accessExpiresAt - first.accessIssuedAt) / 2 - client.serverNow() + 100);
    stack.proxy.reset();
    const results = await Promise.all(Array.from({ length: 100 }, () => client.fetch('/v1/me')));
    assert.deepEqual(results.map((r) => r.status), Array(100).fill(200));
    assert.equal(refreshesSeen().length, 1);
    assert.equal(stack.proxy.count('GET', '/v1/me'), 100);
    assert.notEqual(storage.get()!.accessToken, first.accessToken);
    assert.equal((await direct('/v1/me', first.accessToken)).status, 200, 'it was ahead: the old token still worked');
  });

  test('a lost refresh response: the retry with the same token gets the same successor, and the session goes on', async () => {
    const { client, storage, ended, first } = await signIn();
    stack.proxy.reset();
    stack.proxy.dropNext('/v1/auth/refresh', 1);
    await client.refresh();
    const seen = refreshesSeen();
    assert.equal(seen.length, 2);
    assert.deepEqual(seen.map((s) => [JSON.parse(s.body).refresh_token === first.refreshToken, s.status, s.delivered]),
      [[true, 200, false], [true, 200, true]]);
    assert.equal((await client.fetch('/v1/me')).status, 200, 'the grace answer carries a working access token');
    const successor = storage.get()!.refreshToken;
    await sleep(stack.graceMs + 500);
    await client.refresh(); // the successor is the live token, not one the server thinks spent
    assert.notEqual(storage.get()!.refreshToken, successor);
    assert.equal((await client.fetch('/v1/me')).status, 200);
    await tick();
    assert.deepEqual(ended, []);
  });

  for (const dpop of [true, false]) {
    test(`a stolen refresh token used by another device ends the session and the client reports it (${dpop ? 'thief has the key too' : 'unbound session'})`, async () => {
      const { client, storage, ended, user, first } = await signIn({ dpop });
      const thief = newClient({ dpop, storage: new MemoryStorage() });
      thief.storage.set({ ...first });
      await thief.client.refresh();
      await sleep(stack.graceMs + 500);
      await assert.rejects(client.refresh(), (e: unknown) => e instanceof SessionEndedError && e.reason === 'refresh_rejected');
      await tick();
      assert.deepEqual(ended, ['refresh_rejected']);
      assert.equal(storage.get(), null);
      assert.equal((await direct('/v1/me', first.accessToken)).status, 401, 'the whole session ended');
      await assert.rejects(thief.client.fetch('/v1/me'), SessionEndedError);
      await tick();
      assert.deepEqual(thief.ended, ['refresh_rejected']);
      const events = await (await admin.fetch(`/v1/admin/events?user_id=${user.id}&type=session.reuse_detected`)).json();
      assert.equal(events.events?.length, 1, JSON.stringify(events));
    });
  }

  test('a refresh token stolen without the device key is refused (invalid_dpop_proof) and is not spent', async () => {
    const { client, ended, first } = await signIn();
    const url = `${stack.proxy.url}/v1/auth/refresh`;
    const post = (headers: Record<string, string>) => fetch(url, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ refresh_token: first.refreshToken }),
    });
    const proofs: Record<string, string>[] = [{}, { dpop: await createDpopProof(await generateDpopKey(), 'POST', url, Math.floor(Date.now() / 1000)) }];
    for (const headers of proofs) {
      const res = await post(headers);
      assert.equal(res.status, 401);
      assert.equal((await res.json()).code, 'invalid_dpop_proof');
      assert.match(res.headers.get('www-authenticate') ?? '', /^DPoP\b.*invalid_dpop_proof/);
    }
    // Were the token spent, this use after the grace would be taken for theft.
    await sleep(stack.graceMs + 500);
    await client.refresh();
    assert.equal((await client.fetch('/v1/me')).status, 200);
    await tick();
    assert.deepEqual(ended, []);
  });

  /** Enrolls TOTP on the account `client` is signed in to; its authenticator and recovery codes. */
  async function enrollTotp(client: SessiondClient): Promise<{ app: Authenticator; recoveryCodes: string[] }> {
    assert.equal((await client.mfaStatus()).totp, false);
    const { secret, otpauth_url: url } = await client.beginTotp();
    assert.equal(new URL(url).searchParams.get('secret'), secret);
    const app = new Authenticator(secret);
    const recoveryCodes = await client.confirmTotp(await app.next());
    assert.equal(recoveryCodes.length, 10);
    assert.deepEqual(await client.mfaStatus(), { totp: true, recovery_codes_left: 10, passkeys: 0 });
    return { app, recoveryCodes };
  }

  /** The session as GET /v1/sessions shows it now. */
  async function listed(client: SessiondClient, id: string): Promise<Session | undefined> {
    const { sessions } = (await (await client.fetch('/v1/sessions')).json()) as { sessions: Session[] };
    return sessions.find((s) => s.id === id);
  }

  test('TOTP: enroll, sign in (MfaRequiredError, completeLogin: aal 2, DPoP-bound), a recovery code, a wrong code, removal', async () => {
    const { client, user, session } = await signIn();
    assert.equal(session.aal, 1);
    assert.deepEqual(session.amr, ['pwd']);
    const { app, recoveryCodes } = await enrollTotp(client);

    stack.proxy.reset();
    const phone = newClient();
    const err = await phone.client.login({ ...user, device: { name: 'phone', platform: 'ios' } }).then(() => assert.fail('resolved'), (e: unknown) => e);
    assert.ok(err instanceof MfaRequiredError, String(err));
    assert.deepEqual([...err.methods].sort(), ['recovery_code', 'totp']);
    assert.equal(phone.storage.get(), null);
    const two = await phone.client.completeLogin({ mfaToken: err.mfaToken, code: await app.next() });
    assert.equal(two.aal, 2);
    assert.deepEqual(two.amr, ['pwd', 'otp', 'mfa']);
    assert.equal(two.dpop_bound, true, 'bound by the proof sent to /v1/auth/login/mfa');
    assert.equal(two.device_name, 'phone');
    assert.notEqual(two.id, session.id);
    assert.ok(Math.abs(Date.parse(two.auth_time!) - Date.now()) < 10_000);
    assert.deepEqual(stack.proxy.seen.map((s) => [s.path, s.status]), [['/v1/auth/login', 401], ['/v1/auth/login/mfa', 201]]);
    assert.ok(phone.storage.get()!.refreshToken);
    await phone.client.refresh(); // a refresh proof by the key made for the completion checks out
    assert.equal((await phone.client.fetch('/v1/me')).status, 200);
    assert.equal((await listed(phone.client, two.id))?.aal, 2);

    // A recovery code finishes a sign-in once; a wrong code is invalid_credentials and spends nothing.
    const laptop = newClient();
    const { mfaToken } = await laptop.client.login(user).then(() => assert.fail('resolved'), (e: MfaRequiredError) => e);
    await assert.rejects(laptop.client.completeLogin({ mfaToken, code: app.wrong() }),
      (e: unknown) => e instanceof SessiondError && e.status === 401 && e.code === 'invalid_credentials');
    const byRecovery = await laptop.client.completeLogin({ mfaToken, recoveryCode: recoveryCodes[0]! });
    assert.equal(byRecovery.aal, 2);
    assert.deepEqual(byRecovery.amr, ['pwd', 'mfa']);
    assert.equal((await laptop.client.mfaStatus()).recovery_codes_left, 9);
    await assert.rejects(laptop.client.completeLogin({ mfaToken, recoveryCode: recoveryCodes[1]! }),
      (e: unknown) => e instanceof SessiondError && e.code === 'unauthorized', 'the mfa_token is single-use');

    await client.removeTotp();
    assert.equal((await newClient().client.login(user)).aal, 1, 'no code asked once removed');
    await tick();
    assert.deepEqual([phone.ended, laptop.ended], [[], []]);
  });

  test('reauthenticate with a code raises the same session to aal 2 in place: no new token, the stored Session updated', async () => {
    const { client, storage, ended, session } = await signIn();
    const { app } = await enrollTotp(client);
    const before = storage.get()!;
    stack.proxy.reset();
    const raised = await client.reauthenticate({ code: await app.next() });
    assert.equal(raised.id, session.id);
    assert.equal(raised.aal, 2);
    assert.deepEqual(raised.amr, ['pwd', 'otp', 'mfa']);
    assert.ok(Date.parse(raised.auth_time!) >= Date.parse(session.auth_time!));
    assert.equal(refreshesSeen().length, 0);
    const after = storage.get()!;
    assert.equal(after.accessToken, before.accessToken);
    assert.equal(after.refreshToken, before.refreshToken);
    assert.equal(after.session.aal, 2);
    assert.equal((await listed(client, session.id))?.aal, 2, 'the server reads it from the session: the same token now says aal 2');
    // A password again keeps the second factor; a wrong one is invalid_credentials, not a sign-out.
    assert.equal((await client.reauthenticate({ password: 'not the password' }).catch((e: SessiondError) => e.code)), 'invalid_credentials');
    const renewed = await client.refresh();
    assert.equal(renewed.aal, 2, 'a refresh answers the raised session');
    await tick();
    assert.deepEqual(ended, []);
  });

  test('with Redis unreachable a refresh is a retryable 503, never a sign-out, and the session goes on after', async () => {
    // A stack of its own with the default 30 s grace. A refresh the server
    // gave up on (503 after its Redis deadline) can still run once Redis
    // answers again, spending the token; the retry that follows must land
    // inside the grace, which a 2 s grace equal to that deadline cannot give.
    const own = await startStack(bin!, { graceMs: 30_000 });
    try {
      const storage = new MemoryStorage();
      const ended: SessionEndReason[] = [];
      const client = new SessiondClient({ baseUrl: own.proxy.url, storage, onSessionEnded: (r) => ended.push(r) });
      const session = await client.login({ username: own.adminUsername, password: own.adminPassword });
      const first = storage.get();
      own.freezeRedis();
      try {
        await assert.rejects(client.refresh(), (e: unknown) => e instanceof UnavailableError && e.retryable);
      } finally {
        own.thawRedis();
      }
      assert.equal(storage.get(), first, 'tokens kept');
      await own.waitReady();
      assert.equal((await client.refresh()).id, session.id);
      assert.equal((await client.fetch('/v1/me')).status, 200);
      await tick();
      assert.deepEqual(ended, []);
    } finally {
      await own.stop();
    }
  });

  test('step-up: an admin at aal 1 gets StepUpRequiredError, an old session ReauthenticationRequiredError, and reauthenticate clears each', async () => {
    // A stack of its own: the shortest STEP_UP_MAX_AGE (waited out below) and admin routes at aal 2.
    const own = await startStack(bin!, { env: { STEP_UP_MAX_AGE: '10s', ADMIN_REQUIRES_AAL2: 'true' } });
    try {
      const storage = new MemoryStorage();
      const client = new SessiondClient({ baseUrl: own.proxy.url, storage });
      await client.login({ username: own.adminUsername, password: own.adminPassword });
      const res = await client.fetch('/v1/admin/users');
      assert.equal(res.status, 403);
      const refused = await errorFromResponse(res);
      assert.ok(refused instanceof StepUpRequiredError && refused.code === 'step_up_required', String(refused));
      const { app } = await enrollTotp(client);
      assert.equal((await client.reauthenticate({ code: await app.next() })).aal, 2);
      const raisedBy = Date.now();
      assert.equal((await client.fetch('/v1/admin/users')).status, 200);

      // Until auth_time is older than STEP_UP_MAX_AGE (starting an enrollment again changes nothing active).
      const deadline = Date.now() + 30_000;
      let stale: unknown;
      while (!stale) {
        assert.ok(Date.now() < deadline, 'the session never needed re-authentication (STEP_UP_MAX_AGE=10s)');
        await new Promise((r) => setTimeout(r, 500));
        stale = await client.beginTotp().then(() => undefined, (e: unknown) => e);
      }
      const answers = own.proxy.seen.slice(-4).map((x) => `${x.method} ${x.path} ${x.status}`).join(', ');
      assert.ok(stale instanceof ReauthenticationRequiredError && stale.status === 403, `${stale} (last answers: ${answers})`);
      await assert.rejects(client.removeTotp(), ReauthenticationRequiredError);
      // Still usable once the server has forgotten its own record of the step-up
      // (it remembers one for 10 s over a late cache invalidation).
      while (Date.now() < raisedBy + 11_000) await new Promise((r) => setTimeout(r, 200));
      const me = await client.fetch('/v1/me');
      assert.equal(me.status, 200, `11 s after a step-up: ${me.status} ${await me.text()}`);
      const again = await client.reauthenticate({ password: own.adminPassword });
      assert.equal(again.aal, 2, 'a password given again keeps the second factor');
      assert.equal(storage.get()!.session.auth_time, again.auth_time);
      await client.removeTotp();
      assert.equal((await client.mfaStatus()).totp, false);
      assert.equal((await client.fetch('/v1/admin/users')).status, 200, 'the session itself stays at aal 2');
    } finally {
      await own.stop();
    }
  });
});
