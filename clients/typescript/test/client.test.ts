// The client's behaviour against FakeSessiond (the refresh contract of
// API.md). Each test states the false sign-out or leak it guards against.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setImmediate as tick } from 'node:timers/promises';
import { test } from 'node:test';

import {
  createDpopProof,
  generateDpopKey,
  InvalidDpopProofError,
  jwkThumbprint,
  MemoryStorage,
  NetworkError,
  NotSignedInError,
  publicJwk,
  SessionEndedError,
  type SessionEndReason,
  SessiondClient,
  UnavailableError,
} from '../src/index.js';
import { setup } from './fake-client.js';
import { USER } from './fake-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function decode(proof: string) {
  const [h, p] = proof.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()),
    claims: JSON.parse(Buffer.from(p!, 'base64url').toString()),
  };
}

test('sign-in binds the session to a DPoP key whose private half cannot be exported', async (t) => {
  const { server, storage, client } = await setup(t);
  const session = await client.login({ ...USER, device: { name: 'test', platform: 'node' } });
  assert.equal(session.dpop_bound, true);
  assert.deepEqual(server.logins, [{ dpop: true, status: 201 }]);
  const key = storage.get()!.dpopKey!;
  assert.equal(key.privateKey.extractable, false);
  await assert.rejects(crypto.subtle.exportKey('jwk', key.privateKey));
  const res = await client.fetch('/v1/me');
  assert.equal(res.status, 200);
  assert.equal((await res.json()).username, USER.username);
  assert.equal(server.apiCalls[0]!.token, storage.get()!.accessToken);
});

test('a DPoP proof is a dpop+jwt ES256 JWS with the public JWK, htm, htu without query, iat and a fresh jti', async () => {
  const key = await generateDpopKey();
  const a = decode(await createDpopProof(key, 'POST', 'https://Auth.Example.com:443/v1/auth/refresh?x=1#f', 1700000000));
  const b = decode(await createDpopProof(key, 'POST', 'https://auth.example.com/v1/auth/refresh', 1700000000));
  assert.equal(a.header.typ, 'dpop+jwt');
  assert.equal(a.header.alg, 'ES256');
  assert.deepEqual(Object.keys(a.header.jwk).sort(), ['crv', 'kty', 'x', 'y']);
  assert.equal(a.claims.htm, 'POST');
  assert.equal(a.claims.htu, 'https://auth.example.com/v1/auth/refresh');
  assert.equal(a.claims.iat, 1700000000);
  assert.notEqual(a.claims.jti, b.claims.jti);
  const jwk = await publicJwk(key);
  const expected = createHash('sha256').update(`{"crv":"P-256","kty":"EC","x":"${jwk.x}","y":"${jwk.y}"}`).digest('base64url');
  assert.equal(await jwkThumbprint(jwk), expected);
});

test('100 parallel calls across an expiry the client saw coming cause exactly one refresh and no 401', async (t) => {
  const { server, storage, client } = await setup(t, { accessTtlMs: 2000 });
  await client.login(USER);
  const first = storage.get()!;
  // Past the real expiry: the old token would be refused by the server.
  await sleep(first.accessExpiresAt - server.now() + 20);
  server.refreshDelayMs = 50;
  const results = await Promise.all(Array.from({ length: 100 }, () => client.fetch('/v1/me')));
  assert.deepEqual(results.map((r) => r.status), Array(100).fill(200));
  assert.equal(server.refreshes.length, 1);
  assert.equal(server.refreshes[0]!.token, first.refreshToken);
  assert.equal(server.apiCalls.filter((c) => c.status === 401).length, 0, 'no call went out with the dead token');
  assert.notEqual(storage.get()!.accessToken, first.accessToken);
});

test('100 parallel calls across an expiry the client did not see coming: one refresh, each call retried once', async (t) => {
  const { server, storage, client } = await setup(t);
  await client.login(USER);
  const first = storage.get()!;
  server.expireAccessTokens();
  const results = await Promise.all(Array.from({ length: 100 }, () => client.fetch('/v1/me')));
  assert.deepEqual(results.map((r) => r.status), Array(100).fill(200));
  assert.equal(server.refreshes.length, 1);
  assert.equal(server.rotations, 1);
  const refused = server.apiCalls.filter((c) => c.status === 401);
  assert.equal(refused.length, 100);
  assert.ok(refused.every((c) => c.token === first.accessToken));
  assert.equal(server.apiCalls.length, 200, 'each call: once refused, once more with the new token');
});

test('a refresh whose response was lost is retried with the same token and gets the same successor', async (t) => {
  const { server, storage, ended, client } = await setup(t);
  const session = await client.login(USER);
  const spent = storage.get()!.refreshToken;
  server.dropRefreshResponses = 2;
  await client.refresh();
  assert.deepEqual(server.refreshes.map((r) => [r.token === spent, r.delivered]), [[true, false], [true, false], [true, true]]);
  assert.equal(server.rotations, 1, 'the retries were answered from the grace, not rotated again');
  assert.equal(storage.get()!.refreshToken, server.currentRefreshToken(session.id));
  assert.ok(server.isAlive(session.id));
  assert.equal((await client.fetch('/v1/me')).status, 200);
  await client.refresh();
  assert.equal(server.rotations, 2, 'the stored successor is the live token');
  assert.deepEqual(ended, []);
});

test('parallel calls whose one refresh lost its response all succeed on one rotation', async (t) => {
  const { server, ended, client } = await setup(t);
  await client.login(USER);
  server.expireAccessTokens();
  server.dropRefreshResponses = 1;
  const results = await Promise.all(Array.from({ length: 50 }, () => client.fetch('/v1/me')));
  assert.deepEqual(results.map((r) => r.status), Array(50).fill(200));
  assert.equal(server.refreshes.length, 2);
  assert.equal(server.refreshes[0]!.token, server.refreshes[1]!.token);
  assert.equal(server.rotations, 1);
  assert.deepEqual(ended, []);
});

test('retries of a lost refresh stay inside the reuse grace, then fail retryably without signing out', async (t) => {
  const grace = 2000;
  const { server, storage, ended, client } = await setup(t, { graceMs: grace }, { refreshReuseGraceMs: grace });
  const session = await client.login(USER);
  const before = storage.get();
  server.dropRefreshResponses = Infinity;
  const err = await client.refresh().then(() => assert.fail('resolved'), (e: unknown) => e);
  assert.ok(err instanceof NetworkError, String(err));
  assert.equal(err.retryable, true);
  const seen = server.refreshes;
  assert.ok(seen.length >= 3, `retried (${seen.length} attempts)`);
  assert.ok(seen.every((r) => r.token === before!.refreshToken && r.status === 200), 'same token, never refused');
  assert.ok(seen.at(-1)!.at - seen[0]!.at < grace, `last retry ${seen.at(-1)!.at - seen[0]!.at} ms after the first`);
  assert.equal(server.reuseDetected, 0);
  assert.ok(server.isAlive(session.id));
  assert.equal(storage.get(), before, 'tokens kept');
  await tick();
  assert.deepEqual(ended, []);
});

test('a stolen refresh token used by another device ends the session, and the client reports it once', async (t) => {
  const { server, url, storage, ended, client } = await setup(t, { graceMs: 300 });
  await client.login(USER);
  // The thief copied the storage, key included (a device without the key is the next test).
  const thiefStorage = new MemoryStorage();
  thiefStorage.set({ ...storage.get()! });
  const thiefEnded: SessionEndReason[] = [];
  const thief = new SessiondClient({ baseUrl: url, storage: thiefStorage, onSessionEnded: (r) => thiefEnded.push(r) });
  await thief.refresh();
  await sleep(400); // past the grace
  server.expireAccessTokens();
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => client.fetch('/v1/me')));
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.ok(r.reason instanceof SessionEndedError && r.reason.reason === 'refresh_rejected', String(r.reason));
  }
  assert.equal(server.reuseDetected, 1);
  await tick();
  assert.deepEqual(ended, ['refresh_rejected']);
  assert.equal(storage.get(), null);
  await assert.rejects(client.fetch('/v1/me'), NotSignedInError);
  // The thief's session is the same one: it ended too.
  await assert.rejects(thief.fetch('/v1/me'), SessionEndedError);
  await tick();
  assert.deepEqual(thiefEnded, ['refresh_rejected']);
});

test('a refresh token stolen without the device key is refused (invalid_dpop_proof) and burns nothing', async (t) => {
  const { server, url, storage, ended, client } = await setup(t, { graceMs: 300 });
  const session = await client.login(USER);
  const stolen = storage.get()!.refreshToken!;
  const post = (headers: Record<string, string>) =>
    fetch(`${url}/v1/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ refresh_token: stolen }) });
  const noProof = await post({});
  assert.equal(noProof.status, 401);
  assert.equal((await noProof.json()).code, 'invalid_dpop_proof');
  const ownKey = await createDpopProof(await generateDpopKey(), 'POST', `${url}/v1/auth/refresh`, Math.floor(Date.now() / 1000));
  assert.equal((await (await post({ dpop: ownKey })).json()).code, 'invalid_dpop_proof');
  assert.equal(server.currentRefreshToken(session.id), stolen, 'not spent');
  await sleep(400);
  await client.refresh();
  assert.equal(server.rotations, 1);
  assert.deepEqual(ended, []);
});

test('a refused proof (here: the key lost from storage) is InvalidDpopProofError: not a sign-out, token not spent', async (t) => {
  const { server, storage, ended, client } = await setup(t);
  const session = await client.login(USER);
  const s = storage.get()!;
  delete s.dpopKey;
  const err = await client.refresh().then(() => assert.fail('resolved'), (e: unknown) => e);
  assert.ok(err instanceof InvalidDpopProofError, String(err));
  assert.equal(err.code, 'invalid_dpop_proof');
  assert.equal(server.currentRefreshToken(session.id), s.refreshToken);
  assert.ok(server.isAlive(session.id));
  assert.equal(storage.get(), s);
  await tick();
  assert.deepEqual(ended, []);
});

test('503 unavailable is never a sign-out: tokens kept, a retryable error, and back to normal after', async (t) => {
  const { server, storage, ended, client } = await setup(t);
  await client.login(USER);
  const before = storage.get();
  server.unavailable = true;
  const err = await client.refresh().then(() => assert.fail('resolved'), (e: unknown) => e);
  assert.ok(err instanceof UnavailableError, String(err));
  assert.equal(err.retryable, true);
  assert.equal(err.retryAfterMs, 2000);
  // An API call's own 503 is its answer, returned as is.
  assert.equal((await client.fetch('/v1/me')).status, 503);
  // With the access token expired, the refresh it needs fails retryably.
  server.expireAccessTokens();
  server.unavailable = false;
  server.refreshUnavailable = true;
  await assert.rejects(client.fetch('/v1/me'), UnavailableError);
  assert.equal(storage.get(), before);
  server.refreshUnavailable = false;
  assert.equal((await client.fetch('/v1/me')).status, 200);
  await tick();
  assert.deepEqual(ended, []);
});

test('a refresh ahead of expiry that fails for now does not fail the call: the current token still works', async (t) => {
  const { server, storage, client } = await setup(t, { accessTtlMs: 60_000 }, { refreshSkewMs: 30_000 });
  await client.login(USER);
  const token = storage.get()!.accessToken;
  // 40 s later on the server's clock: due (within 30 s of expiry), not expired.
  server.clockOffsetMs = 40_000;
  assert.equal((await client.fetch('/v1/me')).status, 200); // teaches the client the server's time
  server.refreshUnavailable = true;
  server.refreshes.length = 0;
  const res = await client.fetch('/v1/me');
  assert.equal(res.status, 200);
  assert.deepEqual(server.refreshes.map((r) => r.status), [503]);
  assert.equal(server.apiCalls.at(-1)!.token, token);
});

test('a fresh token refused again is returned to the caller after one refresh: no loop, no sign-out', async (t) => {
  const { server, ended, client } = await setup(t);
  await client.login(USER);
  server.refuseAccessTokens = true;
  const res = await client.fetch('/v1/me');
  assert.equal(res.status, 401);
  assert.equal((await res.json()).code, 'unauthorized', 'the body is still readable');
  assert.equal(server.refreshes.length, 1);
  assert.equal(server.apiCalls.length, 2);
  await tick();
  assert.deepEqual(ended, []);
});

test('a 401 about something else than the token (invalid_credentials) causes no refresh', async (t) => {
  const { server, client } = await setup(t);
  await client.login(USER);
  const res = await client.fetch('/v1/me/password', {
    method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ current_password: 'x', new_password: 'yyyyyyyy' }),
  });
  assert.equal(res.status, 401);
  assert.equal(server.refreshes.length, 0);
});

test('a revoked session: parallel callers see SessionEndedError, onSessionEnded(refresh_rejected) is told once', async (t) => {
  const { server, storage, ended, client } = await setup(t);
  const session = await client.login(USER);
  server.revoke(session.id);
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => client.fetch('/v1/me')));
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof SessionEndedError));
  assert.equal(server.refreshes.length, 1);
  await tick();
  assert.deepEqual(ended, ['refresh_rejected']);
  assert.equal(storage.get(), null);
});

test('without refresh tokens (ACCESS_TOKEN_TTL unset), a 401 ends the session as revoked', async (t) => {
  const { server, ended, client } = await setup(t, { refreshTokens: false });
  const session = await client.login(USER);
  assert.equal((await client.fetch('/v1/me')).status, 200);
  server.revoke(session.id);
  await assert.rejects(client.fetch('/v1/me'), (e: unknown) => e instanceof SessionEndedError && e.reason === 'revoked');
  assert.equal(server.refreshes.length, 0);
  await tick();
  assert.deepEqual(ended, ['revoked']);
});

for (const order of ['answered after the logout', 'refused after the logout'] as const) {
  test(`logout says signed_out and a refresh in flight (${order}) cannot bring the session back`, async (t) => {
    const { server, storage, ended, client } = await setup(t);
    const session = await client.login(USER);
    if (order === 'answered after the logout') server.refreshDelayMs = 200;
    else server.refreshDelayBeforeMs = 200;
    const late = client.refresh();
    assert.equal(await client.logout(), true);
    assert.ok(!server.isAlive(session.id));
    await assert.rejects(late, (e: unknown) => e instanceof SessionEndedError && e.reason === 'signed_out');
    assert.equal(storage.get(), null);
    assert.equal(await client.session(), null);
    await tick();
    assert.deepEqual(ended, ['signed_out']);
  });
}

test('logout with the server unreachable still signs out here, and says the server did not confirm', async (t) => {
  const { server, storage, ended, client } = await setup(t);
  await client.login(USER);
  await server.close();
  assert.equal(await client.logout(), false);
  assert.equal(storage.get(), null);
  await tick();
  assert.deepEqual(ended, ['signed_out']);
});

test('clients sharing one storage and a lock (tabs) refresh once and never spend a token another spent', async (t) => {
  const { server, url, storage, ended, client } = await setup(t, { graceMs: 200 });
  let chain: Promise<unknown> = Promise.resolve();
  const lock = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn);
    chain = run.catch(() => undefined);
    return run;
  };
  const a = new SessiondClient({ baseUrl: url, storage, refreshLock: lock });
  const b = new SessiondClient({ baseUrl: url, storage, refreshLock: lock, onSessionEnded: (r) => ended.push(r) });
  await client.login(USER);
  assert.equal((await b.fetch('/v1/me')).status, 200); // b holds the first tokens
  server.expireAccessTokens();
  const results = await Promise.all([...Array(30)].flatMap(() => [a.fetch('/v1/me'), b.fetch('/v1/me')]));
  assert.ok(results.every((r) => r.status === 200));
  assert.equal(server.refreshes.length, 1);
  // Long after the grace, b is asked to refresh while holding the spent token
  // in memory: it must take the live one from the storage.
  await a.refresh();
  await sleep(300);
  await b.refresh();
  assert.equal(server.reuseDetected, 0);
  await tick();
  assert.deepEqual(ended, []);
});

test('a call made for a session that another client sharing the storage replaced is not sent as the new one', async (t) => {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  // The refresh waits until the other client has signed in.
  const { server, url, storage, client } = await setup(t, {}, { refreshLock: (fn) => gate.then(fn) });
  await client.login(USER);
  const other = new SessiondClient({ baseUrl: url, storage });
  server.expireAccessTokens();
  const pending = client.fetch('/v1/me'); // refused, then wants a refresh
  while (server.apiCalls.length === 0) await sleep(5);
  await other.login(USER); // another account could sign in here just the same
  open();
  await assert.rejects(pending, SessionEndedError);
  const newToken = storage.get()!.accessToken;
  assert.ok(server.apiCalls.every((c) => c.token !== newToken), "the new session's token was not used for it");
  assert.equal(server.refreshes.length, 0);
});

test('a wrong device clock: sign-in and refresh proofs are made on the server time, and no refresh storm', async (t) => {
  const { server, client } = await setup(t);
  server.clockOffsetMs = -10 * 60_000; // this device is ten minutes ahead
  await client.login(USER);
  assert.deepEqual(server.logins.map((l) => l.status), [400, 201], 'the first proof refused for its iat, once');
  for (let i = 0; i < 20; i++) assert.equal((await client.fetch('/v1/me')).status, 200);
  assert.equal(server.refreshes.length, 0, 'the token is not taken for expired on the local clock');
  await client.refresh();
  assert.equal(server.rotations, 1);
});

test('a refresh skew longer than the access token lives does not make every call a refresh', async (t) => {
  // ACCESS_TOKEN_TTL=10s against the default 30 s skew.
  const { server, client } = await setup(t, { accessTtlMs: 10_000 });
  await client.login(USER);
  for (let i = 0; i < 20; i++) assert.equal((await client.fetch('/v1/me')).status, 200);
  assert.equal(server.refreshes.length, 0);
});

test('a session survives a restart through its storage, DPoP key included', async (t) => {
  const { server, url, storage, client } = await setup(t);
  const session = await client.login(USER);
  const restarted = new SessiondClient({ baseUrl: url, storage });
  assert.equal((await restarted.session())?.id, session.id);
  await restarted.refresh();
  assert.equal(server.rotations, 1);
  assert.equal((await restarted.fetch('/v1/me')).status, 200);
});

test('the token is sent only to URLs under the base URL', async (t) => {
  const { url, server } = await setup(t);
  const client = new SessiondClient({ baseUrl: `${url}/api/` });
  await assert.rejects(client.fetch('https://elsewhere.example/v1/me'), TypeError);
  await assert.rejects(client.fetch(`${url}/apix/v1/me`), TypeError);
  await assert.rejects(client.fetch(`${url}/v1/me`), TypeError);
  await assert.rejects(client.fetch('/../v1/me'), TypeError);
  await assert.rejects(client.fetch('/v1/me'), NotSignedInError);
  assert.equal(server.apiCalls.length, 0);
});
