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

/**
 * 401 mfa_required from `login()`: the password is right and the account has
 * a second factor. Finish with `completeLogin({ mfaToken, code })` (or
 * `recoveryCode`) within 5 minutes; the token is single-use. Not retryable:
 * sending the password again only starts another sign-in that waits for a code.
 */
export class MfaRequiredError extends SessiondError {
  /**
   * Not enumerable, and left out of `problem`, so logging or serialising the
   * error does not write it out: it is half of a sign-in.
   */
  declare readonly mfaToken: string;
  /** The factors this sign-in can finish with, e.g. `['totp', 'recovery_code']`. */
  readonly methods: string[];

  constructor(problem: Problem, retryAfterMs?: number) {
    const { mfa_token: token, ...rest } = problem;
    super(rest as Problem, retryAfterMs, false);
    Object.defineProperty(this, 'mfaToken', { value: typeof token === 'string' ? token : '', enumerable: false });
    const methods = problem.methods;
    this.methods = Array.isArray(methods) ? methods.filter((m): m is string => typeof m === 'string') : [];
  }
}

/**
 * 403 reauthentication_required: the action (adding or removing a factor)
 * needs a session that authenticated within the server's STEP_UP_MAX_AGE.
 * `reauthenticate()`, then make the call again. Not a sign-out.
 */
export class ReauthenticationRequiredError extends SessiondError {}

/**
 * 403 step_up_required: the route needs a two-factor (aal 2) session, e.g.
 * the admin routes with ADMIN_REQUIRES_AAL2. `reauthenticate({ code })`,
 * then make the call again. Not a sign-out.
 */
export class StepUpRequiredError extends SessiondError {}

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

/** The problem body and Retry-After of an error answer. */
export async function readProblem(res: Response): Promise<{ problem: Problem; retryAfterMs: number | undefined }> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const p = (typeof body === 'object' && body !== null ? body : {}) as Partial<Problem>;
  const problem: Problem = { ...p, status: res.status, code: typeof p.code === 'string' ? p.code : '' };
  const ra = res.headers.get('retry-after');
  return { problem, retryAfterMs: ra && /^\d+$/.test(ra) ? Number(ra) * 1000 : undefined };
}

/** The error class for a problem: by its code where one has its own, else by status. */
export function errorOf(problem: Problem, retryAfterMs?: number): SessiondError {
  switch (problem.code) {
    case 'mfa_required':
      return new MfaRequiredError(problem, retryAfterMs);
    case 'reauthentication_required':
      return new ReauthenticationRequiredError(problem, retryAfterMs);
    case 'step_up_required':
      return new StepUpRequiredError(problem, retryAfterMs);
    case 'invalid_dpop_proof':
      return new InvalidDpopProofError(problem, retryAfterMs);
  }
  if (problem.status === 503) return new UnavailableError(problem, retryAfterMs);
  return new SessiondError(problem, retryAfterMs, problem.status === 429);
}

/**
 * The typed error for an error answer of `client.fetch()` (it reads the
 * body): e.g. a 403 from an admin route becomes StepUpRequiredError, whose
 * remedy is `reauthenticate({ code })`.
 */
export async function errorFromResponse(res: Response): Promise<SessiondError> {
  const { problem, retryAfterMs } = await readProblem(res);
  return errorOf(problem, retryAfterMs);
}
