/**
 * Scrooge wire protocol v1: the four messages of the design note, one UDP datagram each,
 * as a single line of ASCII text (PROTOCOL.md is the specification; keep them in step).
 *
 * ```
 * scrooge_hello          <publicKey> <control>                                  <seq> <signature>
 * scrooge_hello_confirm  <publicKey> <recipient> <control>                      <seq> <signature>
 * scrooge_tunnel         <publicKey> <recipient> <tunnelKey> <tunnelEndpoint>   <seq> <signature>
 * scrooge_tunnel_confirm <publicKey> <recipient> <tunnelKey> <tunnelEndpoint>   <seq> <signature>
 * ```
 * Tokens are separated by one space; no leading/trailing space, no newline.
 * publicKey, recipient: base64 ed25519 public keys (32 bytes, 44 chars);
 * tunnelKey: base64 WireGuard (x25519) public key (32 bytes);
 * control, tunnelEndpoint: `[ipv6%zone]:port` (address.ts);
 * seq: decimal u64 without leading zeros; signature: base64 ed25519 signature (64 bytes, 88 chars).
 *
 * The signature is over a domain-separated, length-prefixed encoding (not the seed's plain
 * concatenation, which is ambiguous: "ab"+"c" = "a"+"bc"):
 * ```
 * signed = "scrooge signed message" 0x00 || u8 version(=1)
 *          || lp(type) || lp(publicKey) [|| lp(recipient)] [|| lp(tunnelKey)]
 *          || lp(address text as sent) || lp(u64be seq)
 * lp(x)  = u16be(len(x)) || x
 * ```
 * The unicast messages bind the recipient's public key, so a message meant for one neighbor
 * is worthless to another.
 *
 * Decoding never throws on untrusted bytes: it returns `{ ok: false, reason }`.
 */
import { type Endpoint, formatEndpoint, parseEndpoint } from './address.js';
import { concatBytes, fromBase64Strict, parseU64, toBase64, u16be, u64be, U64_MAX, abytes } from './bytes.js';

export const PROTOCOL_VERSION = 1;
/** Datagrams larger than this are dropped before parsing (IPv6 minimum MTU 1280 minus headers). */
export const MAX_DATAGRAM_BYTES = 1200;
export const SIGNATURE_DOMAIN = 'scrooge signed message';

export const HELLO = 'scrooge_hello';
export const HELLO_CONFIRM = 'scrooge_hello_confirm';
export const TUNNEL = 'scrooge_tunnel';
export const TUNNEL_CONFIRM = 'scrooge_tunnel_confirm';
export type MessageType = typeof HELLO | typeof HELLO_CONFIRM | typeof TUNNEL | typeof TUNNEL_CONFIRM;

interface Common {
  /** The sender's ed25519 identity key. */
  publicKey: Uint8Array;
  seq: bigint;
}
export interface Hello extends Common {
  type: typeof HELLO;
  control: Endpoint;
}
export interface HelloConfirm extends Common {
  type: typeof HELLO_CONFIRM;
  recipient: Uint8Array;
  control: Endpoint;
}
export interface TunnelOffer extends Common {
  type: typeof TUNNEL;
  recipient: Uint8Array;
  tunnelKey: Uint8Array;
  endpoint: Endpoint;
}
export interface TunnelConfirm extends Common {
  type: typeof TUNNEL_CONFIRM;
  recipient: Uint8Array;
  tunnelKey: Uint8Array;
  endpoint: Endpoint;
}
export type Message = Hello | HelloConfirm | TunnelOffer | TunnelConfirm;

/** Why a datagram was not accepted. Every reason is a counter in `scrooge status`. */
export type DecodeFailure =
  | 'oversized'
  | 'not-text'
  | 'unknown-type'
  | 'field-count'
  | 'bad-public-key'
  | 'bad-recipient'
  | 'bad-tunnel-key'
  | 'bad-address'
  | 'bad-port'
  | 'bad-seq'
  | 'bad-signature-encoding';

export type Decoded = {
  ok: true;
  message: Message;
  signature: Uint8Array;
  /** The bytes the signature must cover (see module doc). */
  signedBytes: Uint8Array;
  /** The sender key as it appeared on the wire (base64), handy as a map key. */
  publicKeyText: string;
};
export type DecodeResult = Decoded | { ok: false; reason: DecodeFailure };

const FIELD_COUNT: Record<MessageType, number> = {
  [HELLO]: 5,
  [HELLO_CONFIRM]: 6,
  [TUNNEL]: 7,
  [TUNNEL_CONFIRM]: 7,
};

const encoder = new TextEncoder();
const DOMAIN_BYTES = concatBytes([encoder.encode(SIGNATURE_DOMAIN), new Uint8Array([0, PROTOCOL_VERSION])]);

function lp(bytes: Uint8Array): Uint8Array {
  return concatBytes([u16be(bytes.length), bytes]);
}

/** The exact bytes signed for a message (`addressText` as sent on the wire). */
export function signedBytesOf(m: Message, addressText = formatEndpoint(addressOf(m))): Uint8Array {
  const parts: Uint8Array[] = [DOMAIN_BYTES, lp(encoder.encode(m.type)), lp(m.publicKey)];
  if (m.type !== HELLO) parts.push(lp(m.recipient));
  if (m.type === TUNNEL || m.type === TUNNEL_CONFIRM) parts.push(lp(m.tunnelKey));
  parts.push(lp(encoder.encode(addressText)), lp(u64be(m.seq)));
  return concatBytes(parts);
}

/** The control address (hello, hello_confirm) or tunnel endpoint (tunnel, tunnel_confirm). */
export function addressOf(m: Message): Endpoint {
  return m.type === HELLO || m.type === HELLO_CONFIRM ? m.control : m.endpoint;
}

/** Wire text without the signature (the signature is appended after one space). */
function unsignedText(m: Message): string {
  const fields: string[] = [m.type, toBase64(m.publicKey)];
  if (m.type !== HELLO) fields.push(toBase64(m.recipient));
  if (m.type === TUNNEL || m.type === TUNNEL_CONFIRM) fields.push(toBase64(m.tunnelKey));
  fields.push(formatEndpoint(addressOf(m)), m.seq.toString());
  return fields.join(' ');
}

/** Checks a message built by our own code; throws TypeError/RangeError on a caller's bug. */
function assertWellFormed(m: Message): void {
  abytes(m.publicKey, 32, 'publicKey');
  if (m.type !== HELLO) abytes(m.recipient, 32, 'recipient');
  if (m.type === TUNNEL || m.type === TUNNEL_CONFIRM) abytes(m.tunnelKey, 32, 'tunnelKey');
  if (typeof m.seq !== 'bigint' || m.seq < 0n || m.seq > U64_MAX) throw new RangeError(`"seq" out of u64 range`);
}

export interface Encoded {
  text: string;
  bytes: Uint8Array;
  signature: Uint8Array;
}

/** Signs and encodes a message. `sign` returns a 64-byte ed25519 signature of its input. */
export function encodeMessage(m: Message, sign: (data: Uint8Array) => Uint8Array): Encoded {
  assertWellFormed(m);
  const signature = abytes(sign(signedBytesOf(m)), 64, 'signature');
  const text = `${unsignedText(m)} ${toBase64(signature)}`;
  const bytes = encoder.encode(text);
  if (bytes.length > MAX_DATAGRAM_BYTES) throw new RangeError(`message is ${bytes.length} bytes, max ${MAX_DATAGRAM_BYTES}`);
  return { text, bytes, signature };
}

function fail(reason: DecodeFailure): { ok: false; reason: DecodeFailure } {
  return { ok: false, reason };
}

/**
 * The lexical layer (PROTOCOL.md §2 `line`): tokens of visible ASCII (0x21..0x7e) separated by
 * single spaces, with no space first or last and no two in a row. Anything else (empty, tab,
 * CR, LF, NUL, non-ASCII, a stray space) is `not-text`, so an empty token never reaches the
 * field checks and each failure has one counter whatever the message type.
 */
function isWireText(bytes: Uint8Array): boolean {
  if (bytes.length === 0 || bytes[0] === 0x20 || bytes[bytes.length - 1] === 0x20) return false;
  let prev = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b < 0x20 || b > 0x7e || (b === 0x20 && prev === 0x20)) return false;
    prev = b;
  }
  return true;
}

/**
 * Parses a datagram. Checks grammar only (no signature, no replay): cheap enough to run on
 * every datagram before the expensive checks. Never throws.
 */
export function decodeMessage(datagram: Uint8Array): DecodeResult {
  if (datagram.length > MAX_DATAGRAM_BYTES) return fail('oversized');
  if (!isWireText(datagram)) return fail('not-text');
  const text = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength).toString('latin1');
  const f = text.split(' ');
  const type = f[0] as MessageType;
  const expected = FIELD_COUNT[type];
  if (!Object.hasOwn(FIELD_COUNT, type)) return fail('unknown-type');
  if (f.length !== expected) return fail('field-count');

  const publicKeyText = f[1]!;
  const publicKey = fromBase64Strict(publicKeyText, 32);
  if (!publicKey) return fail('bad-public-key');
  let i = 2;
  let recipient: Uint8Array | undefined;
  let tunnelKey: Uint8Array | undefined;
  if (type !== HELLO) {
    recipient = fromBase64Strict(f[i++]!, 32);
    if (!recipient) return fail('bad-recipient');
  }
  if (type === TUNNEL || type === TUNNEL_CONFIRM) {
    tunnelKey = fromBase64Strict(f[i++]!, 32);
    // WireGuard refuses the all-zero public key; so do we.
    if (!tunnelKey || tunnelKey.every((b) => b === 0)) return fail('bad-tunnel-key');
  }
  const addressText = f[i++]!;
  const parsed = parseEndpoint(addressText);
  if (!parsed.ok) return fail(parsed.reason);
  const seq = parseU64(f[i++]!);
  if (seq === undefined) return fail('bad-seq');
  const signature = fromBase64Strict(f[i]!, 64);
  if (!signature) return fail('bad-signature-encoding');

  let message: Message;
  const ep = parsed.endpoint;
  switch (type) {
    case HELLO:
      message = { type, publicKey, control: ep, seq };
      break;
    case HELLO_CONFIRM:
      message = { type, publicKey, recipient: recipient!, control: ep, seq };
      break;
    default:
      message = { type, publicKey, recipient: recipient!, tunnelKey: tunnelKey!, endpoint: ep, seq };
  }
  return { ok: true, message, signature, signedBytes: signedBytesOf(message, addressText), publicKeyText };
}

/**
 * A datagram's sender key (its second token), its head (every byte before `<seq> <signature>`:
 * the type, the keys and the address it names) and its seq. Two messages with the same head
 * differ only in their seq and signature. The seq is parsed; no other token is checked: the
 * caller compares the head with one it verified before. Undefined for what cannot be a message.
 */
export function messageHead(datagram: Uint8Array): { senderKey: string; head: Uint8Array; seq: bigint } | undefined {
  if (datagram.length > MAX_DATAGRAM_BYTES) return undefined;
  const first = datagram.indexOf(0x20);
  const second = first < 0 ? -1 : datagram.indexOf(0x20, first + 1);
  const last = datagram.lastIndexOf(0x20);
  const beforeSeq = last <= 0 ? -1 : datagram.lastIndexOf(0x20, last - 1);
  if (second < 0 || beforeSeq <= second) return undefined;
  const text = (from: number, to: number) => Buffer.from(datagram.buffer, datagram.byteOffset + from, to - from).toString('latin1');
  const seq = parseU64(text(beforeSeq + 1, last));
  if (seq === undefined) return undefined;
  return { senderKey: text(first + 1, second), head: datagram.subarray(0, beforeSeq + 1), seq };
}
