/**
 * The receive path's gate (PROTOCOL.md §7): every datagram goes through these checks, cheapest
 * first, the ed25519 verification last. A datagram that fails any check changes nothing but a
 * drop counter; one that passes has its seq recorded (so the same bytes never pass twice).
 */
import { bytesEqual } from '../protocol/bytes.js';
import type { Verifier } from '../protocol/crypto.js';
import { decodeMessage, HELLO, HELLO_CONFIRM, type DecodeFailure, type Decoded } from '../protocol/messages.js';
import { RateLimiter, type BucketSpec } from './ratelimit.js';
import type { ReplayMemory } from './replay.js';

export type DropReason =
  | DecodeFailure
  | 'own-message'
  | 'not-for-us'
  | 'address-mismatch'
  | 'stale-seq'
  | 'table-full'
  | 'unknown-neighbor'
  | 'rate-limited'
  | 'bad-signature';

export type AdmitResult = { ok: true; decoded: Decoded } | { ok: false; reason: DropReason };

/** What admission needs to know about the neighbor table. */
export interface TableView {
  /** The source (`addr%iface`) a known neighbor was last heard from, or undefined if unknown. */
  knownSource(sender: string): string | undefined;
  /** True if a new sender cannot get a place (not even a stranger's, by eviction). */
  isFull(): boolean;
}

/** Where a datagram came from, as the socket says: a link-local address and its interface. */
export interface DatagramSource {
  address: string;
  iface: string;
}

export interface AdmissionLimits {
  /** Per known neighbor, for messages from the address it was last heard from. */
  neighbor: BucketSpec;
  /** Per source address, for everything else. */
  source: BucketSpec;
  /** One bucket shared by all messages not from a known neighbor's known address. */
  strangers: BucketSpec;
}

/** Defaults: a neighbor sends ~2 messages/s per shared link; a verify costs ~70 µs. */
export const DEFAULT_LIMITS: AdmissionLimits = {
  neighbor: { rate: 50, burst: 100 },
  source: { rate: 20, burst: 40 },
  // 300 verifications/s at most for strangers: ~2 % of one core, and enough for 100 new
  // neighbors appearing at once (a hello and a confirm each).
  strangers: { rate: 300, burst: 300 },
};

export class Admission {
  private readonly neighborLimit: RateLimiter;
  private readonly sourceLimit: RateLimiter;
  private readonly strangerLimit: RateLimiter;

  constructor(
    private readonly deps: { ownKey: Uint8Array; replay: ReplayMemory; verifier: Verifier; table: TableView },
    limits: AdmissionLimits = DEFAULT_LIMITS,
  ) {
    this.neighborLimit = new RateLimiter(limits.neighbor);
    this.sourceLimit = new RateLimiter(limits.source);
    this.strangerLimit = new RateLimiter(limits.strangers, 1);
  }

  /** @param from where the socket says the datagram came from (rate limits, the address rule). */
  admit(datagram: Uint8Array, from: DatagramSource, now: number): AdmitResult {
    const decoded = decodeMessage(datagram);
    if (!decoded.ok) return decoded;
    const m = decoded.message;
    const sender = decoded.publicKeyText;
    if (bytesEqual(m.publicKey, this.deps.ownKey)) return { ok: false, reason: 'own-message' };
    if (m.type !== HELLO && !bytesEqual(m.recipient, this.deps.ownKey)) return { ok: false, reason: 'not-for-us' };
    // The address a message names (where to answer, where its tunnel listens) is the one it
    // came from (PROTOCOL.md §6): a node never makes others send to an address not its own.
    const named = m.type === HELLO || m.type === HELLO_CONFIRM ? m.control.address : m.endpoint.address;
    if (named !== from.address) return { ok: false, reason: 'address-mismatch' };
    if (!this.deps.replay.isFresh(sender, m.seq)) return { ok: false, reason: 'stale-seq' };
    const source = `${from.address}%${from.iface}`;

    const knownFrom = this.deps.table.knownSource(sender);
    if (knownFrom === undefined) {
      if (m.type !== HELLO && m.type !== HELLO_CONFIRM) return { ok: false, reason: 'unknown-neighbor' };
      if (this.deps.table.isFull()) return { ok: false, reason: 'table-full' };
    }
    const limited =
      knownFrom === source
        ? !this.neighborLimit.take(sender, now)
        : !this.sourceLimit.take(source, now) || !this.strangerLimit.take('', now);
    if (limited) return { ok: false, reason: 'rate-limited' };

    // The key check costs a point decompression, so it comes after the budgets, like the
    // signature; counted apart so a small-order key is not mistaken for a forgery.
    if (!this.deps.verifier.acceptsKey(sender, m.publicKey)) return { ok: false, reason: 'bad-public-key' };
    if (!this.deps.verifier.verify(sender, m.publicKey, decoded.signedBytes, decoded.signature))
      return { ok: false, reason: 'bad-signature' };
    this.deps.replay.accept(sender, m.seq);
    return { ok: true, decoded };
  }

  /**
   * For `ReplayMemory.settle`: the seq of a held (unverified) datagram if it is a genuine
   * message of `sender` that could have written its record (for us, signature good), else
   * undefined. No budgets: only what this node kept itself is asked about.
   */
  readonly verifyHeld = (sender: string, datagram: Uint8Array): bigint | undefined => {
    const decoded = decodeMessage(datagram);
    if (!decoded.ok || decoded.publicKeyText !== sender) return undefined;
    const m = decoded.message;
    if (m.type !== HELLO && !bytesEqual(m.recipient, this.deps.ownKey)) return undefined;
    if (!this.deps.verifier.verify(sender, m.publicKey, decoded.signedBytes, decoded.signature)) return undefined;
    return m.seq;
  };
}
