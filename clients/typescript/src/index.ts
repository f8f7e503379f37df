export { SessiondClient, type ClientOptions, type Credentials } from './client.js';
export { MemoryStorage, type Session, type StoredSession, type TokenStorage } from './storage.js';
export {
  InvalidDpopProofError,
  NetworkError,
  NotSignedInError,
  type Problem,
  SessionEndedError,
  type SessionEndReason,
  SessiondError,
  UnavailableError,
} from './errors.js';
export { createDpopProof, generateDpopKey, htuOf, jwkThumbprint, publicJwk, type EcPublicJwk } from './dpop.js';
