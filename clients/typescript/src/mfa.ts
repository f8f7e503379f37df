// The shapes of the second-factor and step-up calls (API.md → Second factors
// and step-up); the calls themselves are SessiondClient's.

/**
 * The second factor that finishes a sign-in which threw MfaRequiredError:
 * its `mfaToken` with either a code from the authenticator app or one of the
 * recovery codes.
 */
export type SecondFactor =
  | { mfaToken: string; code: string; recoveryCode?: never }
  | { mfaToken: string; recoveryCode: string; code?: never };

/**
 * What `reauthenticate()` checks: a password (renews `auth_time`), a second
 * factor (also raises the session to aal 2), or a password and a code.
 */
export interface Reauthentication {
  password?: string;
  code?: string;
  recoveryCode?: string;
}

/** The account's second factors (GET /v1/me/mfa). */
export interface MfaStatus {
  /** An authenticator app (TOTP) is enrolled and confirmed. */
  totp: boolean;
  recovery_codes_left: number;
  /** How many passkeys the account has. */
  passkeys: number;
  [extra: string]: unknown;
}

/** A TOTP enrollment, not active until `confirmTotp()` (POST /v1/me/mfa/totp). */
export interface TotpEnrollment {
  /** Base32, for typing into an authenticator app. */
  secret: string;
  /** The `otpauth://totp/…` URL to show as a QR code. */
  otpauth_url: string;
  [extra: string]: unknown;
}
