// A small stand-in for sessiond that implements the refresh contract of
// API.md (rotation, the reuse grace, reuse after it ending the session, DPoP
// proofs checked for typ, alg, signature, htm, htu, iat and jti) with knobs to
// lose answers, fail closed and skew its clock. Its checks are written apart
// from the client's code (its own thumbprint and verification), so a client
// bug cannot be mirrored by it.

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const USER = { username: 'alice', password: 'correct horse battery' };

interface Answer {
  token: string;
  token_type: 'Bearer';
  expires_at: string;
  refresh_token: string;
  refresh_expires_at: string;
  session: Record<string, unknown>;
}

interface FakeSession {
  id: string;
  alive: boolean;
  jkt: string | undefined;
  current: string;
  prev: { token: string; spentAt: number; answer: Answer } | undefined;
}

export interface RefreshSeen {
  token: string;
  at: number;
  status: number;
  /** false when the server processed it and then dropped the connection. */
  delivered: boolean;
}

export interface FakeOptions {
  accessTtlMs?: number;
  graceMs?: number;
  /** false: sign-ins return only an access token (ACCESS_TOKEN_TTL unset). */
  refreshTokens?: boolean;
}

const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const opaque = (prefix: string) => prefix + randomBytes(32).toString('base64url');

export class FakeSessiond {
  accessTtlMs: number;
  graceMs: number;
  refreshTokens: boolean;
  /** The fake's clock minus the real one (its Date header and every check use it). */
  clockOffsetMs = 0;
  /** The base of the expected `htu`; default: the URL the request came to. */
  publicUrl: string | undefined;
  /** Process this many refreshes, then drop the connection instead of answering. */
  dropRefreshResponses = 0;
  /** Hold every refresh answer this long (so parallel callers overlap it). */
  refreshDelayMs = 0;
  /** Hold every refresh this long before looking at it (so later requests overtake it). */
  refreshDelayBeforeMs = 0;
  /** Every route answers 503 unavailable, as sessiond does with Redis down. */
  unavailable = false;
  /** Only refreshes answer 503 unavailable. */
  refreshUnavailable = false;
  /** Every access token is refused (401 unauthorized) while refreshes still work. */
  refuseAccessTokens = false;

  readonly refreshes: RefreshSeen[] = [];
  readonly apiCalls: { path: string; token: string; status: number }[] = [];
  readonly logins: { dpop: boolean; status: number }[] = [];
  rotations = 0;
  reuseDetected = 0;

  readonly #sessions = new Map<string, FakeSession>();
  readonly #refreshOwner = new Map<string, string>();
  readonly #access = new Map<string, { sid: string; exp: number }>();
  readonly #seenJti = new Set<string>();
  readonly #server: http.Server;
  url = '';

  constructor(options: FakeOptions = {}) {
    this.accessTtlMs = options.accessTtlMs ?? 60_000;
    this.graceMs = options.graceMs ?? 30_000;
    this.refreshTokens = options.refreshTokens ?? true;
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
  }

  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  /** Ends a session as a device screen or an admin would. */
  revoke(sid: string): void {
    const s = this.#sessions.get(sid);
    if (s) s.alive = false;
  }

  /** Every access token issued so far expires now (the refresh tokens do not). */
  expireAccessTokens(): void {
    for (const a of this.#access.values()) a.exp = Math.min(a.exp, this.now());
  }

  isAlive(sid: string): boolean {
    return this.#sessions.get(sid)?.alive ?? false;
  }

  /** The session's live refresh token (the one not yet spent). */
  currentRefreshToken(sid: string): string | undefined {
    return this.#sessions.get(sid)?.current;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString();
    const path = (req.url ?? '/').split('?')[0]!;
    const route = `${req.method} ${path}`;
    if (this.unavailable || (this.refreshUnavailable && route === 'POST /v1/auth/refresh')) {
      if (route === 'POST /v1/auth/refresh') this.refreshes.push({ token: '', at: Date.now(), status: 503, delivered: true });
      return this.#problem(res, 503, 'unavailable', { 'retry-after': '2' });
    }
    const htu = (this.publicUrl ?? `http://${req.headers.host}`) + path;
    switch (route) {
      case 'POST /v1/auth/login':
        return this.#login(req, res, raw, htu);
      case 'POST /v1/auth/refresh':
        return this.#refresh(req, res, raw, htu);
    }
    const sess = this.#authenticate(req);
    const token = (req.headers.authorization ?? '').replace(/^Bearer /i, '');
    const status = !sess ? 401 : route === 'PUT /v1/me/password' ? 401 : 200;
    this.apiCalls.push({ path, token, status });
    if (!sess) return this.#problem(res, 401, 'unauthorized', { 'www-authenticate': 'Bearer error="invalid_token"' });
    switch (route) {
      case 'GET /v1/me':
        return this.#json(res, 200, { id: 'u1', username: USER.username, role: 'user', disabled: false, created_at: rfc3339(0) });
      case 'PUT /v1/me/password':
        // A 401 that is about the password, not the token.
        return this.#problem(res, 401, 'invalid_credentials', { 'www-authenticate': 'Bearer' });
      case 'POST /v1/auth/logout':
        sess.alive = false;
        res.statusCode = 204;
        this.#date(res);
        return void res.end();
      case 'POST /v1/auth/logout-all':
        sess.alive = false;
        return this.#json(res, 200, { revoked: 1 });
    }
    return this.#problem(res, 404, 'not_found');
  }

  async #login(req: http.IncomingMessage, res: http.ServerResponse, raw: string, htu: string): Promise<void> {
    const body = JSON.parse(raw) as { username?: string; password?: string };
    const proof = req.headers['dpop'];
    let jkt: string | undefined;
    if (typeof proof === 'string') {
      try {
        jkt = await this.#verifyProof(proof, htu);
      } catch {
        this.logins.push({ dpop: true, status: 400 });
        return this.#problem(res, 400, 'invalid_request');
      }
    }
    if (body.username !== USER.username || body.password !== USER.password) {
      this.logins.push({ dpop: jkt !== undefined, status: 401 });
      return this.#problem(res, 401, 'invalid_credentials', { 'www-authenticate': 'Bearer' });
    }
    const sess: FakeSession = { id: opaque('s'), alive: true, jkt, current: '', prev: undefined };
    this.#sessions.set(sess.id, sess);
    const answer = this.#issue(sess);
    this.logins.push({ dpop: jkt !== undefined, status: 201 });
    if (!this.refreshTokens) {
      const { refresh_token: _r, refresh_expires_at: _e, ...plain } = answer;
      return this.#json(res, 201, plain);
    }
    return this.#json(res, 201, answer);
  }

  async #refresh(req: http.IncomingMessage, res: http.ServerResponse, raw: string, htu: string): Promise<void> {
    const token = String((JSON.parse(raw) as { refresh_token?: unknown }).refresh_token ?? '');
    if (this.refreshDelayBeforeMs) await new Promise((r) => setTimeout(r, this.refreshDelayBeforeMs));
    const seen: RefreshSeen = { token, at: Date.now(), status: 0, delivered: true };
    this.refreshes.push(seen);
    const sid = this.#refreshOwner.get(token);
    const sess = sid === undefined ? undefined : this.#sessions.get(sid);
    const refuse = () => {
      seen.status = 401;
      return this.#problem(res, 401, 'unauthorized', { 'www-authenticate': 'Bearer error="invalid_token"' });
    };
    if (!sess || !sess.alive) return refuse();
    if (sess.jkt) {
      const proof = req.headers['dpop'];
      let jkt: string | undefined;
      try {
        if (typeof proof === 'string') jkt = await this.#verifyProof(proof, htu);
      } catch {
        jkt = undefined;
      }
      if (jkt !== sess.jkt) {
        // Refused before anything is spent.
        seen.status = 401;
        return this.#problem(res, 401, 'invalid_dpop_proof', { 'www-authenticate': 'DPoP error="invalid_dpop_proof"' });
      }
    }
    let answer: Answer;
    if (token === sess.current) {
      const spentAt = this.now();
      answer = this.#issue(sess);
      sess.prev = { token, spentAt, answer };
      this.rotations++;
    } else if (sess.prev?.token === token && this.now() - sess.prev.spentAt <= this.graceMs) {
      answer = sess.prev.answer;
    } else {
      // Spent and past the grace: taken as theft, the whole session ends.
      sess.alive = false;
      this.reuseDetected++;
      return refuse();
    }
    if (this.refreshDelayMs) await new Promise((r) => setTimeout(r, this.refreshDelayMs));
    if (this.dropRefreshResponses > 0) {
      this.dropRefreshResponses--;
      seen.status = 200;
      seen.delivered = false;
      req.socket.destroy();
      return;
    }
    seen.status = 200;
    return this.#json(res, 200, answer);
  }

  #issue(sess: FakeSession): Answer {
    const now = this.now();
    // Whole seconds, as a JWT's exp is.
    const exp = Math.floor((now + this.accessTtlMs) / 1000) * 1000;
    const access = opaque('at_');
    this.#access.set(access, { sid: sess.id, exp });
    const refresh = opaque('rt_');
    this.#refreshOwner.set(refresh, sess.id);
    sess.current = refresh;
    return {
      token: access,
      token_type: 'Bearer',
      expires_at: rfc3339(exp),
      refresh_token: refresh,
      refresh_expires_at: rfc3339(now + 3600_000),
      session: {
        id: sess.id, device_name: '', platform: '', user_agent: 'test', ip: '127.0.0.1',
        created_at: rfc3339(now), last_seen_at: rfc3339(now), expires_at: rfc3339(now + 86_400_000),
        current: true, dpop_bound: sess.jkt !== undefined,
      },
    };
  }

  #authenticate(req: http.IncomingMessage): FakeSession | undefined {
    const m = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
    const a = m ? this.#access.get(m[1]!) : undefined;
    if (!a || this.refuseAccessTokens || this.now() >= a.exp) return undefined;
    const s = this.#sessions.get(a.sid);
    return s?.alive ? s : undefined;
  }

  /** Checks a proof as RFC 9449 §4.3 says; returns the key's RFC 7638 thumbprint. */
  async #verifyProof(proof: string, htu: string): Promise<string> {
    const parts = proof.split('.');
    if (parts.length !== 3) throw new Error('not a compact JWS');
    const [h, p, sig] = parts as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, any>;
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, any>;
    if (header.typ !== 'dpop+jwt' || header.alg !== 'ES256') throw new Error('typ/alg');
    const jwk = header.jwk as Record<string, string> | undefined;
    if (!jwk || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || 'd' in jwk) throw new Error('jwk');
    const key = await crypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
      { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key,
      Buffer.from(sig, 'base64url'), Buffer.from(`${h}.${p}`));
    if (!ok) throw new Error('signature');
    if (claims.htm !== 'POST' || claims.htu !== htu) throw new Error('htm/htu');
    if (typeof claims.iat !== 'number' || Math.abs(claims.iat - this.now() / 1000) > 60) throw new Error('iat');
    if (typeof claims.jti !== 'string' || claims.jti.length < 16 || this.#seenJti.has(claims.jti)) throw new Error('jti');
    this.#seenJti.add(claims.jti);
    return createHash('sha256').update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })).digest('base64url');
  }

  #date(res: http.ServerResponse): void {
    res.setHeader('date', new Date(this.now()).toUTCString());
  }

  #json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.#date(res);
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  #problem(res: http.ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
    this.#date(res);
    res.writeHead(status, { 'content-type': 'application/problem+json', ...headers });
    res.end(JSON.stringify({ type: 'about:blank', title: code, status, detail: code, code }));
  }
}
