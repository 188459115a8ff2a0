/**
 * Per-sender sequence high-water marks (PROTOCOL.md §5): a message is fresh only if its seq is
 * greater than the last one accepted from that sender. The WireGuard rule `!timestamp.After(last)`
 * with a u64 in place of the TAI64N timestamp.
 *
 * Bounded: when full, the sender heard least recently is forgotten (a Map keeps insertion order
 * and `accept` re-inserts, so the first key is the oldest). Neighbors in the table are heard every
 * second, so only departed or never-admitted senders age out.
 */
import { parseU64 } from '../protocol/bytes.js';

export class ReplayMemory {
  private readonly last = new Map<string, bigint>();
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
    if (this.last.size > this.capacity) this.last.delete(this.last.keys().next().value!);
  }

  lastSeq(sender: string): bigint | undefined {
    return this.last.get(sender);
  }

  get size(): number {
    return this.last.size;
  }

  /** For the state file: oldest first, seq as decimal strings (JSON has no u64). */
  toJSON(): [string, string][] {
    return [...this.last].map(([k, v]) => [k, v.toString()]);
  }

  static fromJSON(entries: unknown, capacity?: number): ReplayMemory {
    const mem = new ReplayMemory(capacity);
    if (Array.isArray(entries)) {
      for (const e of entries) {
        const seq = Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'string' ? parseU64(e[1]) : undefined;
        if (seq !== undefined) mem.accept(e[0] as string, seq);
      }
    }
    return mem;
  }
}
