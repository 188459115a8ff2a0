/**
 * Sequence numbers that survive restarts without writing to flash on every message.
 *
 * seq = epoch * 2^32 + counter (a u64). The epoch is chosen at start as
 * max(persisted epoch + 1, current unix time in seconds) and persisted *before* the first
 * message goes out; the counter counts messages within the epoch. So:
 * - after a restart every new seq is larger than every old one, and neighbors accept the node
 *   at once, while messages captured before the restart stay rejected (PROTOCOL.md §5);
 * - a router without a real-time clock (boots in 1970) still moves forward via the persisted
 *   epoch, and a router that lost its state directory still moves forward via the clock;
 * - one small write per start (and one per 2^32 messages), not one per hello.
 * Receivers need none of this: they only compare u64 values.
 */
const COUNTER_BITS = 32n;
const COUNTER_LIMIT = 1n << COUNTER_BITS;
/** Epochs are stored in the high 32 bits. */
export const MAX_EPOCH = (1n << 32n) - 1n;

/** The epoch to use (and persist) at start. */
export function nextEpoch(persisted: bigint | undefined, nowUnixSeconds: number): bigint {
  const fromClock = BigInt(Math.max(0, Math.floor(nowUnixSeconds)));
  const fromDisk = persisted === undefined ? 0n : persisted + 1n;
  const epoch = fromDisk > fromClock ? fromDisk : fromClock;
  if (epoch > MAX_EPOCH) throw new RangeError('sequence epoch exhausted');
  return epoch;
}

export class SequenceSource {
  private epoch: bigint;
  private counter = 0n;

  /**
   * @param epoch the epoch from `nextEpoch`, already persisted.
   * @param persistEpoch called synchronously with a new epoch when the counter wraps; it must
   *   make the epoch durable before returning.
   */
  constructor(epoch: bigint, private readonly persistEpoch: (epoch: bigint) => void) {
    if (epoch < 0n || epoch > MAX_EPOCH) throw new RangeError(`"epoch" out of range: ${epoch}`);
    this.epoch = epoch;
  }

  next(): bigint {
    if (this.counter >= COUNTER_LIMIT) {
      this.epoch += 1n;
      if (this.epoch > MAX_EPOCH) throw new RangeError('sequence epoch exhausted');
      this.persistEpoch(this.epoch);
      this.counter = 0n;
    }
    const seq = (this.epoch << COUNTER_BITS) | this.counter;
    this.counter += 1n;
    return seq;
  }

  /** For tests and status: the epoch in use. */
  get currentEpoch(): bigint {
    return this.epoch;
  }
}
