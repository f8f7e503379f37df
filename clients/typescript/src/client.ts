// The sessiond client: sign-in, authenticated calls, one shared refresh, and
// a clear report when (and only when) the session really ended.
//
// Most false sign-outs in other session systems come from the client side:
// parallel refreshes that spend one rotating token twice, a refresh whose
// response was lost and whose token is then thrown away, a 503 taken for a
// 401. Each rule below exists to close one of those.

import { createDpopProof, generateDpopKey } from './dpop.js';
import {
  errorFromResponse,
  errorOf,
  InvalidDpopProofError,
  NetworkError,
  NotSignedInError,
  readProblem,
  SessionEndedError,
  type SessionEndReason,
  SessiondError,
  UnavailableError,
} from './errors.js';
import type { MfaStatus, Reauthentication, SecondFactor, TotpEnrollment } from './mfa.js';
import { MemoryStorage, type Session, type StoredSession, type TokenStorage } from './storage.js';

export interface ClientOptions {
  /** The service's public base URL, e.g. `https://auth.example.com` (PUBLIC_URL on the server). */
  baseUrl: string;
  /** Where the session is kept; default: in memory, gone on restart. */
  storage?: TokenStorage;
  /** The fetch to use; default: the global one. */
  fetch?: typeof fetch;
  /** Bind the session to a DPoP key at sign-in (default true). */
  dpop?: boolean;
  /**
   * Refresh this long before the access token's `expires_at` (default 30 s),
   * capped at half the token's lifetime so a short ACCESS_TOKEN_TTL does not
   * make every call a refresh.
   */
  refreshSkewMs?: number;
  /**
   * The server's REFRESH_REUSE_GRACE (default 30 s; never set it above the
   * server's). A refresh whose response was lost is retried with the same
   * token only within three quarters of it, counted from the first attempt,
   * so no retry reaches the server after the grace (where it would be taken
   * for theft and end the session).
   */
  refreshReuseGraceMs?: number;
  /** How long one refresh attempt may wait for its response (default 10 s). */
  requestTimeoutMs?: number;
  /**
   * Serialises refreshes across clients that share one storage (tabs,
   * workers), e.g. `(fn) => navigator.locks.request('sessiond-refresh', fn)`.
   * Within one client a single in-flight refresh is shared without it.
   */
  refreshLock?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Told once per session, when it has ended; the tokens are cleared by then. */
  onSessionEnded?: (reason: SessionEndReason) => void;
}

export interface Credentials {
  username: string;
  password: string;
  device?: { name?: string; platform?: string };
}

/** The sign-in and refresh answer (API.md → Refresh tokens). */
interface TokenAnswer {
  token: string;
  token_type: string;
  expires_at: string;
  refresh_token?: string;
  refresh_expires_at?: string;
  session: Session;
}

// Answers to a refresh that say nothing about whether the token was spent: a
// gateway that lost the upstream's answer, or a fault after the script ran.
// Retrying them with the same token inside the grace is always safe.
const LOST_STATUSES = new Set([500, 502, 504]);

// The Date header has one-second resolution; a difference below this is
// noise, not a wrong clock.
const CLOCK_STEP_MS = 2000;

const LOGIN_PATH = '/v1/auth/login';
const LOGIN_MFA_PATH = '/v1/auth/login/mfa';
const REFRESH_PATH = '/v1/auth/refresh';

export class SessiondClient {
  readonly #base: string;
  readonly #storage: TokenStorage;
  readonly #fetch: typeof fetch;
  readonly #dpop: boolean;
  readonly #skewMs: number;
  readonly #retryWindowMs: number;
  readonly #requestTimeoutMs: number;
  readonly #lock: (<T>(fn: () => Promise<T>) => Promise<T>) | undefined;
  readonly #onSessionEnded: ((reason: SessionEndReason) => void) | undefined;

  /** undefined until read from storage; null when signed out. */
  #cache: StoredSession | null | undefined;
  /** The one refresh in flight, shared by every caller. */
  #refreshing: Promise<StoredSession> | null = null;
  /** Bumped by every sign-in and session end, so a late refresh cannot bring back a session. */
  #epoch = 0;
  /** server clock − local clock, learned from the Date header of the server's answers. */
  #clockOffsetMs = 0;
  /** The first attempt to spend a refresh token: the grace is counted from it. */
  #firstTry: { token: string; at: number } | null = null;
  /** The session a logout is ending: a refresh refused meanwhile is that logout, not a revocation. */
  #signingOut: string | null = null;
  /** How the last session ended, for callers that still held it. */
  #lastEnd: { sessionId: string; reason: SessionEndReason } | null = null;

  constructor(options: ClientOptions) {
    this.#base = new URL(options.baseUrl).href.replace(/\/+$/, '');
    this.#storage = options.storage ?? new MemoryStorage();
    const f = options.fetch ?? globalThis.fetch;
    // Called unbound, a browser's fetch throws "Illegal invocation".
    this.#fetch = (input, init) => f(input, init);
    this.#dpop = options.dpop ?? true;
    this.#skewMs = options.refreshSkewMs ?? 30_000;
    this.#retryWindowMs = Math.floor(((options.refreshReuseGraceMs ?? 30_000) * 3) / 4);
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#lock = options.refreshLock;
    this.#onSessionEnded = options.onSessionEnded;
  }

  /** Now on the server's clock, as far as its answers have told. */
  serverNow(): number {
    return Date.now() + this.#clockOffsetMs;
  }

  /** The signed-in session as the server last described it, or null. */
  async session(): Promise<Session | null> {
    return (await this.#load())?.session ?? null;
  }

  /**
   * Signs in (POST /v1/auth/login), binding the session to a new
   * non-extractable DPoP key unless `dpop: false`. Replaces any session this
   * client held. For an account with a second factor, throws MfaRequiredError:
   * finish with `completeLogin()`. Otherwise throws SessiondError
   * (invalid_credentials, account_disabled, too_many_attempts with
   * retryAfterMs), UnavailableError, or fetch's own error when there was no
   * answer.
   */
  async login(credentials: Credentials): Promise<Session> {
    const { username, password, device } = credentials;
    return this.#signIn(LOGIN_PATH, device ? { username, password, device } : { username, password });
  }

  /**
   * Finishes a sign-in that threw MfaRequiredError (POST /v1/auth/login/mfa):
   * its `mfaToken` with a TOTP `code` or a `recoveryCode`. Signs in as
   * `login()` does (a new DPoP key, the session stored, any other one
   * replaced), at aal 2, with the device `login()` was given. Throws
   * SessiondError `invalid_credentials` for a wrong or used code (the same
   * `mfaToken` can be tried again: five wrong codes end it) and
   * `unauthorized` when the `mfaToken` is used, expired or ended (sign in
   * again from the password); too_many_attempts, UnavailableError, or
   * fetch's own error as `login()`.
   */
  async completeLogin(factor: SecondFactor): Promise<Session> {
    const body: Record<string, string> = { mfa_token: factor.mfaToken };
    if (factor.code !== undefined) body['code'] = factor.code;
    if (factor.recoveryCode !== undefined) body['recovery_code'] = factor.recoveryCode;
    return this.#signIn(LOGIN_MFA_PATH, body);
  }

  async #signIn(path: string, payload: object): Promise<Session> {
    const key = this.#dpop ? await generateDpopKey() : undefined;
    const url = this.#base + path;
    const body = JSON.stringify(payload);
    for (let clockRetried = false; ; clockRetried = true) {
      const offsetUsed = this.#clockOffsetMs;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (key) headers['dpop'] = await this.#proof(key, url);
      const res = await this.#fetch(url, { method: 'POST', headers, body });
      this.#learnClock(res);
      if (res.status === 201) {
        const next = this.#fromAnswer(await res.json(), key);
        this.#epoch++;
        this.#firstTry = null;
        this.#cache = next;
        await this.#storage.set(next);
        return next.session;
      }
      const { problem, retryAfterMs } = await readProblem(res);
      // A bad proof at sign-in is 400, checked before the password or the
      // code (so neither is spent); one made on a clock the server disagrees
      // with (its iat outside 60 s) is worth one more try on the server's
      // time. Wrong passwords and codes are 401 and never retried.
      if (key && res.status === 400 && !clockRetried && clockMoved(offsetUsed, this.#clockOffsetMs)) continue;
      throw errorOf(problem, retryAfterMs);
    }
  }

  /**
   * Re-authenticates on this session, in place (POST /v1/auth/reauthenticate):
   * `auth_time` becomes now and, with a `code` or `recoveryCode`, `aal`
   * becomes 2. The same session and tokens; the stored Session is updated and
   * returned. Use it on ReauthenticationRequiredError (with the password or a
   * code) and StepUpRequiredError (with a code), then make the call again.
   * Throws SessiondError `invalid_credentials` for a wrong password or code
   * (counted against the failed-login limits, then too_many_attempts), and
   * what `fetch()` throws.
   */
  async reauthenticate(proof: Reauthentication): Promise<Session> {
    const body: Record<string, string> = {};
    if (proof.password !== undefined) body['password'] = proof.password;
    if (proof.code !== undefined) body['code'] = proof.code;
    if (proof.recoveryCode !== undefined) body['recovery_code'] = proof.recoveryCode;
    const res = await this.#call('POST', '/v1/auth/reauthenticate', body, 200);
    const session = (await res.json()) as Session;
    await this.#updateSession(session);
    return session;
  }

  /** The account's second factors (GET /v1/me/mfa). Throws as `fetch()` does, and SessiondError for a refusal. */
  async mfaStatus(): Promise<MfaStatus> {
    return (await this.#call('GET', '/v1/me/mfa', undefined, 200)).json();
  }

  /**
   * Starts a TOTP enrollment (POST /v1/me/mfa/totp): the secret to show as a
   * QR code of `otpauth_url`. Not active until `confirmTotp()`; a new start
   * replaces an unconfirmed one. Needs a fresh session: throws
   * ReauthenticationRequiredError otherwise, and SessiondError `forbidden`
   * when the server has no MFA_ENCRYPTION_KEY.
   */
  async beginTotp(): Promise<TotpEnrollment> {
    return (await this.#call('POST', '/v1/me/mfa/totp', {}, 201)).json();
  }

  /**
   * Activates the enrollment with a code from the app (POST
   * /v1/me/mfa/totp/confirm) and returns the 10 recovery codes, shown this
   * once. A wrong code throws SessiondError `invalid_request` (400); no
   * session changes. Needs a fresh session.
   */
  async confirmTotp(code: string): Promise<string[]> {
    const res = await this.#call('POST', '/v1/me/mfa/totp/confirm', { code }, 200);
    return ((await res.json()) as { recovery_codes: string[] }).recovery_codes;
  }

  /** Removes TOTP and its recovery codes (DELETE /v1/me/mfa/totp); passkeys stay. Needs a fresh session. */
  async removeTotp(): Promise<void> {
    await this.#call('DELETE', '/v1/me/mfa/totp', undefined, 204);
  }

  /**
   * Replaces the recovery codes with 10 new ones, shown this once (POST
   * /v1/me/mfa/recovery-codes); the old ones stop working. Needs TOTP (else
   * SessiondError `not_found`) and a fresh session.
   */
  async regenerateRecoveryCodes(): Promise<string[]> {
    const res = await this.#call('POST', '/v1/me/mfa/recovery-codes', {}, 200);
    return ((await res.json()) as { recovery_codes: string[] }).recovery_codes;
  }

  /** An authenticated JSON call answered `okStatus`; any other answer is thrown as its typed error. */
  async #call(method: string, path: string, body: object | undefined, okStatus: number): Promise<Response> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.headers = { 'content-type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    const res = await this.fetch(path, init);
    if (res.status !== okStatus) throw await errorFromResponse(res);
    return res;
  }

  /** Keeps the stored Session as the server now describes it (a step-up changes it in place). */
  async #updateSession(session: Session): Promise<void> {
    const run = async () => {
      const stored = (await this.#storage.get()) ?? null;
      const held = this.#cache;
      // Only onto the tokens both this client and the storage hold: a
      // refresh that landed meanwhile (here, or in a client sharing the
      // storage) stored newer ones, and writing the old ones back would have
      // a spent refresh token sent again, after the grace a theft. Signed out
      // or in anew meanwhile: not this session's to update.
      if (!held || !stored || held.session.id !== session.id || stored.session.id !== session.id) return;
      if (stored.accessToken !== held.accessToken) return;
      const next: StoredSession = { ...held, session };
      this.#cache = next;
      await this.#storage.set(next);
    };
    // Under the refresh lock, so a refresh in another tab cannot land between the read and the write.
    await (this.#lock ? this.#lock(run) : run());
  }

  /**
   * An authenticated fetch: `input` is a path under the base URL (or a full URL
   * under it; the token is never sent anywhere else). Refreshes first when the
   * access token is due; on a 401 unauthorized refreshes once and sends the
   * call once more, then returns whatever comes. Any other answer, 503
   * included, is returned as it is. Throws NotSignedInError, SessionEndedError,
   * and, when the access token has expired and cannot be renewed right now,
   * the retryable NetworkError or UnavailableError.
   */
  async fetch(input: string | URL, init: RequestInit = {}): Promise<Response> {
    const url = this.#resolve(input);
    if (typeof ReadableStream !== 'undefined' && init.body instanceof ReadableStream) {
      throw new TypeError('sessiond: a stream body cannot be sent again after a refresh; pass a string, Blob, ArrayBuffer, FormData or URLSearchParams');
    }
    let s = await this.#load();
    if (!s) throw new NotSignedInError();
    if (this.#due(s)) {
      try {
        s = await this.#refresh(s);
      } catch (err) {
        // Ahead of expiry a refresh that failed for now is not this call's
        // problem: the token it has still works.
        if (err instanceof SessionEndedError || this.serverNow() >= s.accessExpiresAt) throw err;
      }
    }
    const res = await this.#send(url, init, s.accessToken);
    if (res.status !== 401 || !(await isUnauthorized(res))) return res;
    if (!s.refreshToken) {
      // One token per sign-in: the server's 401 is the end of it.
      const reason = this.serverNow() >= s.accessExpiresAt ? 'expired' : 'revoked';
      await this.#end(reason, s);
      throw this.#endedError(s);
    }
    const fresh = await this.#refresh(s);
    // Once: a fresh token refused again is the caller's answer, and the next
    // call's refresh will say whether the session is gone.
    return this.#send(url, init, fresh.accessToken);
  }

  /**
   * Renews the tokens now (sharing a refresh already in flight). Throws
   * SessionEndedError when the server refused the refresh token, and the
   * retryable NetworkError or UnavailableError otherwise.
   */
  async refresh(): Promise<Session> {
    const s = await this.#load();
    if (!s) throw new NotSignedInError();
    if (!s.refreshToken) throw new TypeError('sessiond: this session has no refresh token (the server runs without ACCESS_TOKEN_TTL)');
    return (await this.#refresh(s)).session;
  }

  /**
   * Signs out (POST /v1/auth/logout). The tokens are cleared and
   * onSessionEnded('signed_out') is told whatever the server answered;
   * resolves true when the server confirmed the session is gone, false when
   * it could not be reached (the session then ends on the server by its idle
   * timeout, unusable without the refresh token cleared here).
   */
  logout(): Promise<boolean> {
    return this.#signOut('/v1/auth/logout', 204);
  }

  /** "Log out everywhere" (POST /v1/auth/logout-all): every session of the user, this one included. */
  logoutAll(): Promise<boolean> {
    return this.#signOut('/v1/auth/logout-all', 200);
  }

  async #signOut(path: string, okStatus: number): Promise<boolean> {
    const s = await this.#load();
    if (!s) return true;
    let confirmed = false;
    this.#signingOut = s.session.id;
    try {
      const res = await this.fetch(path, { method: 'POST' });
      confirmed = res.status === okStatus || res.status === 401;
    } catch (err) {
      // Already ended on the server (and reported as what it was); anything
      // else leaves the server unconfirmed but still signs out here.
      confirmed = err instanceof SessionEndedError;
    } finally {
      await this.#end('signed_out', s);
      this.#signingOut = null;
    }
    return confirmed;
  }

  #resolve(input: string | URL): string {
    // Parsed either way, so a `..` cannot climb out of the base path.
    const href = new URL(typeof input === 'string' && input.startsWith('/') ? this.#base + input : input).href;
    if (href !== this.#base && !href.startsWith(this.#base + '/')) {
      throw new TypeError(`sessiond: ${href} is not under ${this.#base}; the token is sent only there`);
    }
    return href;
  }

  async #load(): Promise<StoredSession | null> {
    // Signed out here, the storage is read again: another client sharing it
    // may have signed in since.
    if (this.#cache == null) {
      const epoch = this.#epoch;
      const stored = (await this.#storage.get()) ?? null;
      if (this.#cache == null && epoch === this.#epoch) this.#cache = stored;
    }
    return this.#cache ?? null;
  }

  #due(s: StoredSession): boolean {
    if (!s.refreshToken) return false;
    const lifetime = s.accessExpiresAt - s.accessIssuedAt;
    const skew = Math.min(this.#skewMs, Math.max(0, lifetime / 2));
    return this.serverNow() >= s.accessExpiresAt - skew;
  }

  async #send(url: string, init: RequestInit, token: string): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${token}`);
    const res = await this.#fetch(url, { ...init, headers });
    this.#learnClock(res);
    return res;
  }

  /** Joins the refresh in flight, or starts the one every caller will share. */
  #refresh(stale: StoredSession): Promise<StoredSession> {
    if (!this.#refreshing) {
      const run = () => this.#refreshOnce(stale);
      const p: Promise<StoredSession> = (this.#lock ? this.#lock(run) : run()).finally(() => {
        if (this.#refreshing === p) this.#refreshing = null;
      });
      this.#refreshing = p;
    }
    return this.#refreshing;
  }

  async #refreshOnce(stale: StoredSession): Promise<StoredSession> {
    const epoch = this.#epoch;
    // The storage, not this client's copy, says which token is live: another
    // client sharing it may have refreshed (spending the token held here,
    // which sent again after the grace would end the session) or signed out.
    const stored = (await this.#storage.get()) ?? null;
    if (epoch !== this.#epoch || this.#cache === null) return this.#afterEpochChange(stale);
    if (!stored) {
      await this.#end('signed_out', stale);
      throw this.#endedError(stale);
    }
    // Signed in anew (another account, perhaps) by a client sharing the
    // storage: a call made for the old session must not go out as the new one.
    if (stored.session.id !== stale.session.id) {
      this.#cache = stored;
      throw this.#endedError(stale);
    }
    if (stored.accessToken !== stale.accessToken) {
      this.#cache = stored;
      if (!this.#due(stored) || !stored.refreshToken) return stored;
    }
    const s = stored;
    const token = s.refreshToken!;
    if (this.#firstTry?.token !== token) this.#firstTry = { token, at: Date.now() };
    const deadline = this.#firstTry.at + this.#retryWindowMs;
    const url = this.#base + REFRESH_PATH;
    const body = JSON.stringify({ refresh_token: token });
    let clockRetried = false;
    for (let attempt = 1; ; attempt++) {
      const offsetUsed = this.#clockOffsetMs;
      let res: Response;
      try {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (s.dpopKey) headers['dpop'] = await this.#proof(s.dpopKey, url);
        const left = attempt === 1 ? this.#requestTimeoutMs : deadline - Date.now();
        const signal = AbortSignal.timeout(Math.max(1, Math.min(this.#requestTimeoutMs, left)));
        res = await this.#fetch(url, { method: 'POST', headers, body, signal });
      } catch (err) {
        // No answer: the server may have spent the token and lost the reply.
        // The same token again, within the grace, gets the same successor.
        if (await this.#backoff(attempt, deadline)) continue;
        throw new NetworkError('sessiond: the refresh got no response', { cause: err });
      }
      this.#learnClock(res);
      if (res.ok) return this.#adopt(await res.json(), s, epoch);
      const { problem, retryAfterMs } = await readProblem(res);
      if (LOST_STATUSES.has(res.status)) {
        if (await this.#backoff(attempt, deadline)) continue;
        throw new SessiondError(problem, retryAfterMs, true);
      }
      // The store is unreachable and the server failed closed. The token is
      // kept: if the script still ran after the server gave up (a Redis that
      // froze, then answered), the next refresh sends the same token and the
      // grace answers it with the same successor.
      if (res.status === 503) throw new UnavailableError(problem, retryAfterMs);
      if (problem.code === 'invalid_dpop_proof') {
        // Not spent: the proof is checked first. One refused because this
        // device's clock is off is made again once on the server's time.
        if (!clockRetried && clockMoved(offsetUsed, this.#clockOffsetMs)) {
          clockRetried = true;
          continue;
        }
        throw new InvalidDpopProofError(problem, retryAfterMs);
      }
      if (res.status === 401) {
        const end = Math.min(s.refreshExpiresAt ?? Infinity, Date.parse(s.session.expires_at) || Infinity);
        const reason = this.serverNow() >= end ? 'expired' : 'refresh_rejected';
        await this.#end(reason, s);
        throw this.#endedError(s);
      }
      throw new SessiondError(problem, retryAfterMs, res.status === 429);
    }
  }

  /** Waits before another attempt with the same token; false when that would leave the grace. */
  async #backoff(attempt: number, deadline: number): Promise<boolean> {
    const cap = Math.min(4000, 200 * 2 ** (attempt - 1));
    const delay = cap / 2 + (Math.random() * cap) / 2;
    if (Date.now() + delay >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, delay));
    return true;
  }

  async #adopt(answer: TokenAnswer, s: StoredSession, epoch: number): Promise<StoredSession> {
    const next = this.#fromAnswer(answer, s.dpopKey);
    // Signed out (or in again) while the refresh was in flight: its answer
    // must not bring the old session back.
    if (epoch !== this.#epoch) return this.#afterEpochChange(s);
    this.#cache = next;
    this.#firstTry = null;
    await this.#storage.set(next);
    return next;
  }

  #afterEpochChange(stale: StoredSession): StoredSession {
    if (this.#cache) return this.#cache;
    throw this.#endedError(stale);
  }

  /** The end of `s` as it was reported (a caller may learn of it late). */
  #endedError(s: StoredSession): SessionEndedError {
    const end = this.#lastEnd;
    return new SessionEndedError(end?.sessionId === s.session.id ? end.reason : 'signed_out');
  }

  #fromAnswer(a: TokenAnswer, dpopKey: CryptoKeyPair | undefined): StoredSession {
    const accessExpiresAt = Date.parse(a?.expires_at);
    if (typeof a?.token !== 'string' || !a.token || Number.isNaN(accessExpiresAt) || typeof a.session?.id !== 'string') {
      throw new Error('sessiond: the answer has no token, expires_at or session');
    }
    const s: StoredSession = { accessToken: a.token, accessExpiresAt, accessIssuedAt: this.serverNow(), session: a.session };
    if (a.refresh_token) s.refreshToken = a.refresh_token;
    if (a.refresh_expires_at) s.refreshExpiresAt = Date.parse(a.refresh_expires_at);
    if (dpopKey) s.dpopKey = dpopKey;
    return s;
  }

  async #end(reason: SessionEndReason, s: StoredSession): Promise<void> {
    if (this.#cache?.session.id !== s.session.id) return; // already ended, or another session since
    if (this.#signingOut === s.session.id) reason = 'signed_out';
    this.#epoch++;
    this.#cache = null;
    this.#firstTry = null;
    this.#lastEnd = { sessionId: s.session.id, reason };
    // A client sharing the storage may have signed in anew: clear only this session.
    const stored = await this.#storage.get();
    if (!stored || stored.session.id === s.session.id) await this.#storage.clear();
    const cb = this.#onSessionEnded;
    // Outside this call, so a throwing listener cannot break the client.
    if (cb) queueMicrotask(() => cb(reason));
  }

  #proof(key: CryptoKeyPair, url: string): Promise<string> {
    return createDpopProof(key, 'POST', url, Math.floor(this.serverNow() / 1000));
  }

  #learnClock(res: Response): void {
    const date = Date.parse(res.headers.get('date') ?? '');
    if (Number.isNaN(date)) return; // absent, or hidden from cross-origin script
    // Date is truncated to the second: its middle is the best guess.
    const offset = date + 500 - Date.now();
    this.#clockOffsetMs = Math.abs(offset) < CLOCK_STEP_MS ? 0 : offset;
  }
}

function clockMoved(before: number, after: number): boolean {
  return Math.abs(after - before) >= CLOCK_STEP_MS;
}

/** A 401 that is about the token (not, say, a wrong current password). */
async function isUnauthorized(res: Response): Promise<boolean> {
  try {
    const body = (await res.clone().json()) as { code?: unknown };
    if (typeof body?.code === 'string') return body.code === 'unauthorized';
  } catch {
    // no JSON body: a gateway's own 401
  }
  return /invalid_token/i.test(res.headers.get('www-authenticate') ?? '');
}
