// The errors the client throws. Each says whether trying again later can
// help (`retryable`) so an app never has to guess from a status code, and
// none of them means "signed out" except SessionEndedError.

/** An RFC 9457 problem body as sessiond sends it. */
export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  code: string;
  [extra: string]: unknown;
}

/** Why a session ended, as passed to `onSessionEnded`. */
export type SessionEndReason =
  /** logout() or logoutAll() on this client, or another context sharing the storage signed out. */
  | 'signed_out'
  /**
   * The server refused the refresh token (401 unauthorized): the session was
   * revoked (a device screen, an admin, a password change elsewhere, a disabled
   * account) or the token was reused after the grace, which the server takes
   * as theft and answers the same way. The client cannot tell these apart; the
   * server records `session.reuse_detected` in the user's events for the latter.
   */
  | 'refresh_rejected'
  /** The refresh token (or, without one, the access token) outlived its expiry. */
  | 'expired'
  /** Without a refresh token: the server refused the session's only token (401 unauthorized). */
  | 'revoked';

/** A response from sessiond that is an error and not a sign-out. */
export class SessiondError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem: Problem;
  /** From Retry-After, in milliseconds, when the server sent one. */
  readonly retryAfterMs: number | undefined;
  readonly retryable: boolean;

  constructor(problem: Problem, retryAfterMs?: number, retryable = false) {
    super(`sessiond: ${problem.status} ${problem.code}${problem.detail ? `: ${problem.detail}` : ''}`);
    this.name = new.target.name;
    this.status = problem.status;
    this.code = problem.code;
    this.problem = problem;
    this.retryAfterMs = retryAfterMs;
    this.retryable = retryable;
  }
}

/**
 * 503 unavailable: the session store is briefly unreachable. Never a sign-out:
 * the tokens are kept and the same call can be made again after retryAfterMs.
 */
export class UnavailableError extends SessiondError {
  constructor(problem: Problem, retryAfterMs?: number) {
    super(problem, retryAfterMs, true);
  }
}

/**
 * 401 invalid_dpop_proof: the refresh was refused because the proof did not
 * check out (a wrong `htu` from a base URL that is not the server's public URL,
 * a key that is not the one the session was bound to). The refresh token was
 * not spent and the session is not ended: this is a configuration or storage
 * fault to fix, not something to sign the user out over.
 */
export class InvalidDpopProofError extends SessiondError {}

/** No response at all (connection refused, reset, timed out). Tokens are kept. */
export class NetworkError extends Error {
  readonly retryable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NetworkError';
  }
}

/** The session has ended; `onSessionEnded` was told, with the same reason. */
export class SessionEndedError extends Error {
  readonly reason: SessionEndReason;
  constructor(reason: SessionEndReason) {
    super(`sessiond: the session has ended (${reason})`);
    this.name = 'SessionEndedError';
    this.reason = reason;
  }
}

/** An authenticated call was made with no session signed in. */
export class NotSignedInError extends Error {
  constructor() {
    super('sessiond: not signed in');
    this.name = 'NotSignedInError';
  }
}
