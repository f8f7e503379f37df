// A small stand-in for sessiond that implements the refresh contract of
// API.md (rotation, the reuse grace, reuse after it ending the session, DPoP
// proofs checked for typ, alg, signature, htm, htu, iat and jti) with knobs to
// lose answers, fail closed and skew its clock; and the second-factor
// contract (mfa_required and /v1/auth/login/mfa, step-up in place, TOTP
// enrollment needing a fresh session, an aal 2 route) with one fixed code. Its checks are written apart
// from the client's code (its own thumbprint and verification), so a client
// bug cannot be mirrored by it.

import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const USER = { username: 'alice', password: 'correct horse battery' };
/** An account with TOTP from the start. */
export const MFA_USER = { username: 'bob', password: 'bob has a second factor' };
/** The one TOTP code the fake's authenticator shows (its real server counterpart takes each code once). */
export const TOTP_CODE = '123456';
export const RECOVERY_CODE = 'abcd-efgh-jkmn';
const TOTP_SECRET = 'JBSWY3DPEHPK3PXP';

interface Account {
  password: string;
  totp: boolean;
  pendingTotp: boolean;
  recovery: Set<string>;
}

interface PendingMfa {
  username: string;
  device: { name?: string; platform?: string } | undefined;
  expiresAt: number;
  wrong: number;
}

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
  username: string;
  aal: 1 | 2;
  amr: string[];
  authTime: number;
  device: { name?: string; platform?: string } | undefined;
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
  /** STEP_UP_MAX_AGE: how recent auth_time must be to add or remove a factor. */
  stepUpMaxAgeMs = 600_000;

  readonly accounts = new Map<string, Account>([
    [USER.username, { password: USER.password, totp: false, pendingTotp: false, recovery: new Set() }],
    [MFA_USER.username, { password: MFA_USER.password, totp: true, pendingTotp: false, recovery: new Set([RECOVERY_CODE]) }],
  ]);
  /** POST /v1/auth/login/mfa as it arrived: with a proof (its htu when it checked out) and the answer. */
  readonly mfaLogins: { dpop: boolean; htu: string | undefined; status: number }[] = [];
  readonly reauths: { body: Record<string, unknown>; status: number }[] = [];

  readonly refreshes: RefreshSeen[] = [];
  readonly apiCalls: { path: string; token: string; status: number }[] = [];
  readonly logins: { dpop: boolean; status: number }[] = [];
  rotations = 0;
  reuseDetected = 0;

  readonly #sessions = new Map<string, FakeSession>();
  readonly #refreshOwner = new Map<string, string>();
  readonly #access = new Map<string, { sid: string; exp: number }>();
  readonly #seenJti = new Set<string>();
  readonly #pendingMfa = new Map<string, PendingMfa>();
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

  /** Moves every session's auth_time this far into the past (a session signed in that long ago). */
  ageAuthTime(ms: number): void {
    for (const s of this.#sessions.values()) s.authTime -= ms;
  }

  /** How the server holds the session now (aal, amr, auth_time). */
  sessionState(sid: string): { aal: number; amr: string[]; authTime: number } | undefined {
    const s = this.#sessions.get(sid);
    return s && { aal: s.aal, amr: [...s.amr], authTime: s.authTime };
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
      case 'POST /v1/auth/login/mfa':
        return this.#loginMfa(req, res, raw, htu);
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
      case 'POST /v1/auth/reauthenticate':
        return this.#reauthenticate(res, sess, raw);
      case 'GET /v1/admin/users':
        // As with ADMIN_REQUIRES_AAL2=true.
        if (sess.aal < 2) return this.#problem(res, 403, 'step_up_required');
        return this.#json(res, 200, { users: [] });
      case 'GET /v1/me/mfa': {
        const a = this.accounts.get(sess.username)!;
        return this.#json(res, 200, { totp: a.totp, recovery_codes_left: a.recovery.size, passkeys: 0 });
      }
      case 'POST /v1/me/mfa/totp':
      case 'POST /v1/me/mfa/totp/confirm':
      case 'DELETE /v1/me/mfa/totp':
      case 'POST /v1/me/mfa/recovery-codes':
        return this.#enrollment(route, res, sess, raw);
    }
    return this.#problem(res, 404, 'not_found');
  }

  async #login(req: http.IncomingMessage, res: http.ServerResponse, raw: string, htu: string): Promise<void> {
    const body = JSON.parse(raw) as { username?: string; password?: string; device?: PendingMfa['device'] };
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
    const account = this.accounts.get(body.username ?? '');
    if (!account || body.password !== account.password) {
      this.logins.push({ dpop: jkt !== undefined, status: 401 });
      return this.#problem(res, 401, 'invalid_credentials', { 'www-authenticate': 'Bearer' });
    }
    if (account.totp) {
      // The proof here binds nothing: the session starts at /v1/auth/login/mfa, with that request's proof.
      const token = opaque('mfa_');
      this.#pendingMfa.set(token, { username: body.username!, device: body.device, expiresAt: this.now() + 300_000, wrong: 0 });
      this.logins.push({ dpop: jkt !== undefined, status: 401 });
      return this.#problem(res, 401, 'mfa_required', { 'www-authenticate': 'Bearer' },
        { mfa_token: token, methods: ['totp', 'recovery_code'] });
    }
    this.logins.push({ dpop: jkt !== undefined, status: 201 });
    return this.#start(res, body.username!, body.device, jkt, 1, ['pwd']);
  }

  async #loginMfa(req: http.IncomingMessage, res: http.ServerResponse, raw: string, htu: string): Promise<void> {
    const body = JSON.parse(raw) as { mfa_token?: string; code?: string; recovery_code?: string };
    const proof = req.headers['dpop'];
    const seen: (typeof this.mfaLogins)[number] = { dpop: typeof proof === 'string', htu: undefined, status: 0 };
    this.mfaLogins.push(seen);
    let jkt: string | undefined;
    if (typeof proof === 'string') {
      try {
        jkt = await this.#verifyProof(proof, htu);
        seen.htu = htu;
      } catch {
        seen.status = 400;
        return this.#problem(res, 400, 'invalid_request');
      }
    }
    if (!body.mfa_token || (!body.code === !body.recovery_code)) {
      seen.status = 400;
      return this.#problem(res, 400, 'invalid_request');
    }
    const pending = this.#pendingMfa.get(body.mfa_token);
    if (!pending || this.now() >= pending.expiresAt) {
      seen.status = 401;
      return this.#problem(res, 401, 'unauthorized', { 'www-authenticate': 'Bearer' });
    }
    const account = this.accounts.get(pending.username)!;
    const ok = body.code ? body.code === TOTP_CODE : account.recovery.delete(body.recovery_code!);
    if (!ok) {
      if (++pending.wrong >= 5) this.#pendingMfa.delete(body.mfa_token);
      seen.status = 401;
      return this.#problem(res, 401, 'invalid_credentials', { 'www-authenticate': 'Bearer' });
    }
    this.#pendingMfa.delete(body.mfa_token); // single-use
    seen.status = 201;
    return this.#start(res, pending.username, pending.device, jkt, 2, body.code ? ['pwd', 'otp', 'mfa'] : ['pwd', 'mfa']);
  }

  #start(res: http.ServerResponse, username: string, device: PendingMfa['device'], jkt: string | undefined, aal: 1 | 2, amr: string[]): void {
    const sess: FakeSession = {
      id: opaque('s'), username, aal, amr, authTime: this.now(), device, alive: true, jkt, current: '', prev: undefined,
    };
    this.#sessions.set(sess.id, sess);
    const answer = this.#issue(sess);
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
      session: this.#sessionJson(sess),
    };
  }

  #sessionJson(sess: FakeSession): Record<string, unknown> {
    const now = this.now();
    const json: Record<string, unknown> = {
      id: sess.id, device_name: sess.device?.name ?? '', platform: sess.device?.platform ?? '', user_agent: 'test', ip: '127.0.0.1',
      created_at: rfc3339(now), last_seen_at: rfc3339(now), expires_at: rfc3339(now + 86_400_000),
      current: true, aal: sess.aal, amr: sess.amr, auth_time: rfc3339(sess.authTime),
    };
    if (sess.jkt !== undefined) json['dpop_bound'] = true;
    return json;
  }

  #reauthenticate(res: http.ServerResponse, sess: FakeSession, raw: string): void {
    const body = JSON.parse(raw) as Record<string, unknown>;
    const seen = { body, status: 0 };
    this.reauths.push(seen);
    const answer = (status: number, code: string) => {
      seen.status = status;
      return this.#problem(res, status, code, status === 401 ? { 'www-authenticate': 'Bearer' } : {});
    };
    const { password, code, recovery_code: recovery } = body as { password?: string; code?: string; recovery_code?: string };
    if (!password && !code && !recovery) return answer(400, 'invalid_request');
    if (code && recovery) return answer(400, 'invalid_request');
    const account = this.accounts.get(sess.username)!;
    if (password !== undefined && password !== account.password) return answer(401, 'invalid_credentials');
    if (code !== undefined && !(account.totp && code === TOTP_CODE)) return answer(401, 'invalid_credentials');
    if (recovery !== undefined && !account.recovery.delete(recovery)) return answer(401, 'invalid_credentials');
    sess.authTime = this.now();
    if (code || recovery) {
      sess.aal = 2;
      sess.amr = code ? ['pwd', 'otp', 'mfa'] : ['pwd', 'mfa'];
    }
    seen.status = 200;
    return this.#json(res, 200, this.#sessionJson(sess));
  }

  #enrollment(route: string, res: http.ServerResponse, sess: FakeSession, raw: string): void {
    if (this.now() - sess.authTime > this.stepUpMaxAgeMs) return this.#problem(res, 403, 'reauthentication_required');
    const account = this.accounts.get(sess.username)!;
    const codes = () => {
      account.recovery = new Set(Array.from({ length: 10 }, () => randomBytes(6).toString('hex')));
      return { recovery_codes: [...account.recovery] };
    };
    switch (route) {
      case 'POST /v1/me/mfa/totp':
        if (raw !== '{}') return this.#problem(res, 400, 'invalid_request');
        account.pendingTotp = true;
        return this.#json(res, 201, {
          secret: TOTP_SECRET, otpauth_url: `otpauth://totp/fake:${sess.username}?secret=${TOTP_SECRET}&issuer=fake`,
        });
      case 'POST /v1/me/mfa/totp/confirm': {
        const { code } = JSON.parse(raw) as { code?: string };
        if (!account.pendingTotp || code !== TOTP_CODE) return this.#problem(res, 400, 'invalid_request');
        account.pendingTotp = false;
        account.totp = true;
        return this.#json(res, 200, codes());
      }
      case 'DELETE /v1/me/mfa/totp':
        account.totp = false;
        account.recovery.clear();
        res.statusCode = 204;
        this.#date(res);
        return void res.end();
      default:
        if (!account.totp) return this.#problem(res, 404, 'not_found');
        return this.#json(res, 200, codes());
    }
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

  #problem(res: http.ServerResponse, status: number, code: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}): void {
    this.#date(res);
    res.writeHead(status, { 'content-type': 'application/problem+json', ...headers });
    res.end(JSON.stringify({ type: 'about:blank', title: code, status, detail: code, code, ...extra }));
  }
}
