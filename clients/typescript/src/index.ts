export { SessiondClient, type ClientOptions, type Credentials } from './client.js';
export type { MfaStatus, Reauthentication, SecondFactor, TotpEnrollment } from './mfa.js';
export { MemoryStorage, type Session, type StoredSession, type TokenStorage } from './storage.js';
export {
  errorFromResponse,
  InvalidDpopProofError,
  MfaRequiredError,
  NetworkError,
  NotSignedInError,
  type Problem,
  ReauthenticationRequiredError,
  SessionEndedError,
  type SessionEndReason,
  SessiondError,
  StepUpRequiredError,
  UnavailableError,
} from './errors.js';
export { createDpopProof, generateDpopKey, htuOf, jwkThumbprint, publicJwk, type EcPublicJwk } from './dpop.js';
