/**
 * Ed25519 for the protocol: noble for keys and strict point checks, node:crypto (OpenSSL) for
 * the hot signing and verification paths (about 14x faster than pure JS on these machines).
 *
 * Verification rule (PROTOCOL.md §4), strict RFC 8032 §5.1.7:
 * - the public key must be a canonical encoding of a point that is not of small order
 *   (checked once per key with noble's strict decoder, `zip215: false`, then cached);
 * - S must be < L and R must be canonical: OpenSSL recomputes R from S and k and compares the
 *   encoding byte for byte, so a non-canonical R or S never verifies;
 * - the equation is the cofactorless one ([S]B = R + [k]A), as OpenSSL and RFC 8032 do.
 * (noble's default, ZIP-215, is permissive on purpose for consensus systems: not what we want.)
 */
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { abytes, concatBytes } from './bytes.js';

const PKCS8_ED25519_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);
const SPKI_ED25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);

/** A node's long-term identity: its public key, and signing with the private key it keeps. */
export interface Identity {
  readonly publicKey: Uint8Array;
  sign(data: Uint8Array): Uint8Array;
}

const PKCS8_X25519_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

/** Raw public key of a raw private key, through OpenSSL (no table building in JS at start). */
function rawPublicKey(prefix: Uint8Array, secret: Uint8Array): Uint8Array {
  const key = createPrivateKey({ key: Buffer.from(concatBytes([prefix, secret])), format: 'der', type: 'pkcs8' });
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  return Uint8Array.from(Buffer.from(jwk.x!, 'base64url'));
}

export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  return rawPublicKey(PKCS8_ED25519_PREFIX, abytes(seed, 32, 'seed'));
}

/** WireGuard (x25519) public key of a private key; clamping as RFC 7748 (and `wg pubkey`). */
export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  return rawPublicKey(PKCS8_X25519_PREFIX, abytes(privateKey, 32, 'privateKey'));
}

export function generateSeed(): Uint8Array {
  return ed25519.utils.randomSecretKey();
}

/** An identity that signs with node:crypto; the seed stays inside an OpenSSL key object. */
export function identityFromSeed(seed: Uint8Array): Identity {
  abytes(seed, 32, 'seed');
  const key = createPrivateKey({ key: Buffer.from(concatBytes([PKCS8_ED25519_PREFIX, seed])), format: 'der', type: 'pkcs8' });
  const publicKey = Uint8Array.from(Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url'));
  return {
    publicKey,
    sign: (data) => new Uint8Array(nodeSign(null, data, key)),
  };
}

/** True if `publicKey` is a canonical encoding of a point of large order (RFC 8032 strict). */
export function isStrictPublicKey(publicKey: Uint8Array): boolean {
  if (publicKey.length !== 32) return false;
  try {
    const point = ed25519.Point.fromBytes(publicKey, false);
    return !point.isSmallOrder();
  } catch {
    return false;
  }
}

/**
 * Verifies ed25519 signatures, caching one OpenSSL key object per sender so the receive path
 * pays for key parsing and the strict point check once per neighbor, not once per message.
 * The cache is bounded; when full it starts over (cheap, and forged keys cannot pin entries).
 */
export class Verifier {
  private readonly cache = new Map<string, KeyObject | null>();
  constructor(private readonly maxCachedKeys = 4096) {}

  /**
   * True if `publicKey` is a strict key (canonical, not of small order). The answer is cached,
   * so a caller that asks first (to count a bad key apart from a bad signature, PROTOCOL.md §7)
   * pays for the point check once per key, not twice.
   */
  acceptsKey(keyId: string, publicKey: Uint8Array): boolean {
    return this.keyObject(keyId, publicKey) !== null;
  }

  /** `keyId` is any stable string for the key (the wire base64 is convenient). */
  verify(keyId: string, publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== 64) return false;
    const key = this.keyObject(keyId, publicKey);
    if (key === null) return false;
    try {
      return nodeVerify(null, data, key, signature);
    } catch {
      return false;
    }
  }

  private keyObject(keyId: string, publicKey: Uint8Array): KeyObject | null {
    let key = this.cache.get(keyId);
    if (key === undefined) {
      key = isStrictPublicKey(publicKey)
        ? createPublicKey({ key: Buffer.from(concatBytes([SPKI_ED25519_PREFIX, publicKey])), format: 'der', type: 'spki' })
        : null;
      if (this.cache.size >= this.maxCachedKeys) this.cache.clear();
      this.cache.set(keyId, key);
    }
    return key;
  }
}
