// Where a signed-in session is kept between calls and across restarts.

/** The Session object of the API (API.md → Objects). */
export interface Session {
  id: string;
  device_name: string;
  platform: string;
  user_agent: string;
  ip: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  current: boolean;
  dpop_bound?: boolean;
  /**
   * Authenticator assurance level: 1 for one factor, 2 for two (password and
   * a TOTP or recovery code, or a passkey). `reauthenticate()` raises it in
   * place. The three assurance fields are absent only from a server older
   * than second factors, or a session stored by such a client until its next
   * refresh.
   */
  aal?: 1 | 2;
  /** How the user authenticated, RFC 8176 values: `pwd`, `otp`, `hwk`, `mfa`. */
  amr?: string[];
  /** When the user last authenticated on this session (RFC 3339): the sign-in or the last re-authentication. */
  auth_time?: string;
  [extra: string]: unknown;
}

/**
 * Everything the client needs to go on with a session. Times are milliseconds
 * since the epoch on the server's clock (see SessiondClient on clock offset).
 */
export interface StoredSession {
  accessToken: string;
  /** The access token's `expires_at`. */
  accessExpiresAt: number;
  /** When the access token was received, so its lifetime is known. */
  accessIssuedAt: number;
  /** Absent when the server runs without ACCESS_TOKEN_TTL (one token per sign-in). */
  refreshToken?: string;
  refreshExpiresAt?: number;
  session: Session;
  /**
   * The DPoP key the session is bound to. Its private key is non-extractable:
   * it can sign but never be read, so storage must keep the CryptoKeyPair
   * object itself (IndexedDB does, by structured clone), never a serialization.
   */
  dpopKey?: CryptoKeyPair;
}

/**
 * Storage for one session. Implementations must apply operations in the order
 * they are called (a set() called before a clear() must not land after it),
 * and get() must return what the last set() stored, so that several clients
 * sharing one storage (tabs, workers) see each other's refreshes.
 */
export interface TokenStorage {
  get(): Promise<StoredSession | null> | StoredSession | null;
  set(session: StoredSession): Promise<void> | void;
  clear(): Promise<void> | void;
}

/** The default: kept in this process only, gone on restart. */
export class MemoryStorage implements TokenStorage {
  #value: StoredSession | null = null;
  get(): StoredSession | null {
    return this.#value;
  }
  set(session: StoredSession): void {
    this.#value = session;
  }
  clear(): void {
    this.#value = null;
  }
}
