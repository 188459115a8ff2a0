/**
 * Per-sender sequence high-water marks (PROTOCOL.md §5): a message is fresh only if its seq is
 * greater than the last one accepted from that sender. The WireGuard rule `!timestamp.After(last)`
 * with a u64 in place of the TAI64N timestamp.
 *
 * Bounded: when full, the sender heard least recently is forgotten (a Map keeps insertion order
 * and `accept` re-inserts, so the first key is the oldest). Neighbors in the table are heard every
 * second, so only departed or never-admitted senders age out.
 *
 * Unverified, not forgotten: a hello or confirm skipped as redundant over a working tunnel
 * (PROTOCOL.md §6) is never verified, so it cannot move the mark; but a copy of it is kept
 * (the newest per sender) and saved with the marks, and it is verified once when it matters:
 * when the neighbor is forgotten, and when a restarted agent loads the file. Otherwise what a
 * neighbor sent in its last half dead interval could be replayed once after it left.
 */
import { parseU64 } from '../protocol/bytes.js';

/** The datagram's seq if it is a genuine (verified) message of `sender`, else undefined. */
export type VerifyHeld = (sender: string, datagram: Uint8Array) => bigint | undefined;

export class ReplayMemory {
  private readonly last = new Map<string, bigint>();
  /** Per sender, the newest message seen fresh but not verified (a redundant one), if newer than the mark. */
  private readonly held = new Map<string, { seq: bigint; datagram: Uint8Array }>();
  constructor(private readonly capacity = 4096) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`"capacity" must be a positive integer`);
  }

  /** True if `seq` is newer than anything accepted from `sender`. Does not record it. */
  isFresh(sender: string, seq: bigint): boolean {
    const last = this.last.get(sender);
    return last === undefined || seq > last;
  }

  /** Records an accepted (verified) message. Call only after `isFresh` and verification. */
  accept(sender: string, seq: bigint): void {
    this.last.delete(sender);
    this.last.set(sender, seq);
    const held = this.held.get(sender);
    if (held && held.seq <= seq) this.held.delete(sender);
    if (this.last.size > this.capacity) {
      const oldest = this.last.keys().next().value!;
      this.last.delete(oldest);
      this.held.delete(oldest);
    }
  }

  /**
   * A fresh message of a sender with a mark, not verified (skipped as redundant): kept (a copy)
   * for `settle`, the newest only. It moves nothing: `isFresh` answers as before. Unverified, a
   * forged copy with a higher seq takes the genuine one's place and fails at `settle`: someone on
   * the link can keep one skipped hello replayable that way, as it was before anything was held.
   */
  hold(sender: string, seq: bigint, datagram: Uint8Array): void {
    if (!this.last.has(sender) || !this.isFresh(sender, seq)) return;
    const held = this.held.get(sender);
    if (!held || seq > held.seq) this.held.set(sender, { seq, datagram: datagram.slice() });
  }

  /**
   * Verifies what is held for `sender` (or for every sender) and moves the mark to it if it is
   * genuine; either way it is no longer held. Returns how many marks moved.
   */
  settle(verify: VerifyHeld, sender?: string): number {
    let moved = 0;
    for (const key of sender === undefined ? [...this.held.keys()] : [sender]) {
      const held = this.held.get(key);
      if (!held) continue;
      this.held.delete(key);
      const seq = verify(key, held.datagram);
      if (seq !== undefined && this.isFresh(key, seq)) {
        this.accept(key, seq);
        moved++;
      }
    }
    return moved;
  }

  get heldCount(): number {
    return this.held.size;
  }

  lastSeq(sender: string): bigint | undefined {
    return this.last.get(sender);
  }

  get size(): number {
    return this.last.size;
  }

  /**
   * For the state file: oldest first, seq as decimal strings (JSON has no u64); a held message
   * as a third element (base64), to be settled by whoever loads the file.
   */
  toJSON(): ([string, string] | [string, string, string])[] {
    return [...this.last].map(([k, v]) => {
      const held = this.held.get(k);
      return held ? [k, v.toString(), Buffer.from(held.datagram).toString('base64')] : [k, v.toString()];
    });
  }

  /** Reads `toJSON`'s output; malformed entries are skipped. Held messages stay held until `settle`. */
  static fromJSON(entries: unknown, capacity?: number): ReplayMemory {
    const mem = new ReplayMemory(capacity);
    if (Array.isArray(entries)) {
      for (const e of entries) {
        const seq = Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'string' ? parseU64(e[1]) : undefined;
        if (seq === undefined) continue;
        const sender = e[0] as string;
        mem.accept(sender, seq);
        const datagram = typeof e[2] === 'string' && e[2].length <= 4096 ? strictBase64(e[2]) : undefined;
        // Its seq is not in the file: settle takes it from the verified datagram.
        if (datagram?.length) mem.held.set(sender, { seq, datagram });
      }
    }
    return mem;
  }
}

function strictBase64(text: string): Uint8Array | undefined {
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? new Uint8Array(bytes) : undefined;
}
