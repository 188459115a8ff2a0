/**
 * Datagrams an attacker on the segment can send (for the netns tests and the flood benchmark):
 * hellos and tunnel messages that are well signed, signed by the wrong key, replayed, cut short,
 * too long, or not protocol text at all. Built with the project's own encoder (src/protocol), so
 * everything but the property under test is exactly what a real agent sends.
 * Pure: no I/O, no side effects on import.
 */
import { randomBytes } from 'node:crypto';
import {
  type Endpoint,
  type Identity,
  HELLO,
  HELLO_CONFIRM,
  MAX_DATAGRAM_BYTES,
  TUNNEL,
  encodeMessage,
  identityFromSeed,
  x25519PublicKey,
} from '../../src/protocol/index.js';

export function randomIdentity(): Identity {
  return identityFromSeed(new Uint8Array(randomBytes(32)));
}

/** A fresh WireGuard public key (what an offer carries). */
export function randomTunnelKey(): Uint8Array {
  return x25519PublicKey(new Uint8Array(randomBytes(32)));
}

/** Signs with `signer` whatever key the message claims: a bad signature unless they match. */
function signedBy(signer: Identity): (data: Uint8Array) => Uint8Array {
  return (data) => signer.sign(data);
}

/** A hello claiming `claimedKey`, signed by `signer` (valid only if it is the claimed key's owner). */
export function hello(claimedKey: Uint8Array, signer: Identity, control: Endpoint, seq: bigint): Uint8Array {
  return encodeMessage({ type: HELLO, publicKey: claimedKey, control, seq }, signedBy(signer)).bytes;
}

export function helloConfirm(claimedKey: Uint8Array, signer: Identity, recipient: Uint8Array, control: Endpoint, seq: bigint): Uint8Array {
  return encodeMessage({ type: HELLO_CONFIRM, publicKey: claimedKey, recipient, control, seq }, signedBy(signer)).bytes;
}

/** A `scrooge_tunnel` offer claiming `claimedKey`, for `recipient`, signed by `signer`. */
export function tunnelOffer(claimedKey: Uint8Array, signer: Identity, recipient: Uint8Array, endpoint: Endpoint, seq: bigint, tunnelKey = randomTunnelKey()): Uint8Array {
  return encodeMessage({ type: TUNNEL, publicKey: claimedKey, recipient, tunnelKey, endpoint, seq }, signedBy(signer)).bytes;
}

/** The first `n` bytes. */
export function truncate(bytes: Uint8Array, n: number): Uint8Array {
  return bytes.slice(0, n);
}

/** Cut after the third space-separated token: `scrooge_hello <key> <control>` (a field missing). */
export function cutFields(bytes: Uint8Array, keep: number): Uint8Array {
  let spaces = 0;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x20 && ++spaces === keep) return bytes.slice(0, i);
  return bytes;
}

/** Printable protocol-looking text longer than any message may be. */
export function oversized(n = MAX_DATAGRAM_BYTES + 1): Uint8Array {
  const text = 'scrooge_hello ' + 'A'.repeat(Math.max(0, n - 14));
  return new TextEncoder().encode(text.slice(0, n));
}

/** Random bytes that are not text (the first byte is NUL, so the grammar check fails first). */
export function garbage(n: number): Uint8Array {
  const b = new Uint8Array(randomBytes(Math.max(1, n)));
  b[0] = 0;
  return b;
}

/** Largest u64: any forged seq this high passes the replay check and reaches the signature check. */
export const HIGH_SEQ = (1n << 64n) - 1n;
