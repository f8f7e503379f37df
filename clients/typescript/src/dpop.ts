// DPoP proofs (RFC 9449) with WebCrypto: ES256 over a P-256 key whose private
// half is non-extractable, so script that can read the storage still cannot
// copy the key off the device.

const enc = new TextEncoder();

/** A fresh P-256 key pair for one session; the private key cannot be exported. */
export async function generateDpopKey(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

export function base64url(bytes: ArrayBuffer | Uint8Array): string {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The public key as a JWK with only the members RFC 7638 names for EC keys. */
export interface EcPublicJwk {
  kty: string;
  crv: string;
  x: string;
  y: string;
}

// A public key is always exportable in WebCrypto, whatever the private key's
// flag; exporting it once per key pair is enough.
const publicJwks = new WeakMap<CryptoKey, Promise<EcPublicJwk>>();

export function publicJwk(key: CryptoKeyPair): Promise<EcPublicJwk> {
  let jwk = publicJwks.get(key.publicKey);
  if (!jwk) {
    jwk = crypto.subtle.exportKey('jwk', key.publicKey).then(({ kty, crv, x, y }) => {
      if (!kty || !crv || !x || !y) throw new Error('dpop: the public key is not an EC key');
      return { kty, crv, x, y };
    });
    publicJwks.set(key.publicKey, jwk);
  }
  return jwk;
}

/** RFC 7638 thumbprint (SHA-256, base64url): what the server binds the session to. */
export async function jwkThumbprint(jwk: EcPublicJwk): Promise<string> {
  // Required members only, in lexicographic order, no whitespace.
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return base64url(await crypto.subtle.digest('SHA-256', enc.encode(canonical)));
}

/**
 * The target URI as RFC 9449 §4.2 wants it in `htu`: without query and
 * fragment. URL parsing also lowercases the scheme and host and drops a
 * default port, the normalisation the server compares after.
 */
export function htuOf(url: string | URL): string {
  const u = new URL(url);
  u.search = '';
  u.hash = '';
  return u.href;
}

/** A compact JWS `dpop+jwt` proof for one request. `iat` is in seconds. */
export async function createDpopProof(
  key: CryptoKeyPair,
  htm: string,
  url: string | URL,
  iat: number,
): Promise<string> {
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: await publicJwk(key) };
  const payload = {
    htm,
    htu: htuOf(url),
    iat,
    jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
  };
  const input = `${base64url(enc.encode(JSON.stringify(header)))}.${base64url(enc.encode(JSON.stringify(payload)))}`;
  // WebCrypto's ECDSA signature is r || s (IEEE P1363), which is what JWS ES256 uses.
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key.privateKey, enc.encode(input));
  return `${input}.${base64url(sig)}`;
}
