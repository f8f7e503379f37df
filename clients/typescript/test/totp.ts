// RFC 6238 TOTP for the integration tests, with node:crypto (no dependency):
// HMAC-SHA1 over the base32 secret, 6 digits, 30 s steps, as sessiond takes.

import { createHmac } from 'node:crypto';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function base32Decode(s: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const ch of s.toUpperCase().replace(/=+$/, '')) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** The code of time step `step` (unix seconds / 30), RFC 4226 dynamic truncation. */
export function totpAt(secret: string, step: number, digits = 6): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const n = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(n).padStart(digits, '0');
}

/**
 * Codes for one account, each of a later step than the last: the server
 * takes a step once per account and one step of drift either way, so up to
 * three codes fit in one step without waiting. Near a step's end the earliest
 * step is skipped, in case the step turns before the code arrives.
 */
export class Authenticator {
  #last = -Infinity;
  constructor(readonly secret: string) {}

  async next(): Promise<string> {
    const deadline = Date.now() + 40_000;
    for (;;) {
      const t = Date.now() / 1000;
      const now = Math.floor(t / 30);
      const late = t - now * 30 > 27;
      const step = Math.max(this.#last + 1, late ? now : now - 1);
      if (step <= now + 1) {
        this.#last = step;
        return totpAt(this.secret, step);
      }
      if (Date.now() > deadline) throw new Error('no TOTP step left');
      await sleep(200);
    }
  }

  /** A 6-digit string that is no code the server would take now. */
  wrong(): string {
    const now = Math.floor(Date.now() / 30_000);
    const taken = new Set([-2, -1, 0, 1, 2].map((d) => totpAt(this.secret, now + d)));
    for (let n = 0; ; n++) {
      const c = String(n).padStart(6, '0');
      if (!taken.has(c)) return c;
    }
  }
}
