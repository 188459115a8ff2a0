/**
 * Byte helpers for the wire format: guards that name the field (noble's `abytes` style),
 * strict canonical base64 and big-endian integers. Pure: no I/O.
 */

/** Throws if `value` is not a Uint8Array of exactly `length` bytes. For callers' bugs only. */
export function abytes(value: unknown, length: number, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`"${name}" expected Uint8Array, got ${typeof value}`);
  if (value.length !== length) throw new RangeError(`"${name}" expected ${length} bytes, got ${value.length}`);
  return value;
}

/** Standard base64 with padding (RFC 4648 §4), as WireGuard prints keys. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

const B64_BY_LENGTH = new Map<number, RegExp>();
function base64Pattern(byteLength: number): RegExp {
  let re = B64_BY_LENGTH.get(byteLength);
  if (!re) {
    const full = Math.floor(byteLength / 3) * 4;
    const rest = byteLength % 3;
    const tail = rest === 0 ? '' : rest === 1 ? '[A-Za-z0-9+/]{2}==' : '[A-Za-z0-9+/]{3}=';
    re = new RegExp(`^[A-Za-z0-9+/]{${full}}${tail}$`);
    B64_BY_LENGTH.set(byteLength, re);
  }
  return re;
}

/**
 * Decodes canonical base64 of exactly `byteLength` bytes, or returns undefined.
 * Canonical means: padded, no whitespace, and unused trailing bits zero (so every byte
 * string has exactly one accepted text form, and a signature covers one spelling).
 */
export function fromBase64Strict(text: string, byteLength: number): Uint8Array | undefined {
  if (!base64Pattern(byteLength).test(text)) return undefined;
  const buf = Buffer.from(text, 'base64');
  if (buf.length !== byteLength || buf.toString('base64') !== text) return undefined;
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function u16be(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new RangeError(`u16 out of range: ${n}`);
  return new Uint8Array([n >>> 8, n & 0xff]);
}

export const U64_MAX = (1n << 64n) - 1n;
const U64_TEXT = /^(?:0|[1-9][0-9]{0,19})$/;

/** A decimal u64 without leading zeros (the wire's `seq` grammar), or undefined. */
export function parseU64(text: string): bigint | undefined {
  if (!U64_TEXT.test(text)) return undefined;
  const n = BigInt(text);
  return n <= U64_MAX ? n : undefined;
}

export function u64be(n: bigint): Uint8Array {
  if (n < 0n || n > U64_MAX) throw new RangeError(`u64 out of range: ${n}`);
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n);
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Lexicographic byte comparison: <0, 0, >0. Used for the tunnel tie-break rule. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
