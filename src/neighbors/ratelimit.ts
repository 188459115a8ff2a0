/**
 * Token buckets keyed by string, with time passed in (no clock here). Used to bound the CPU a
 * flood can make us spend on signature checks (PROTOCOL.md §7).
 */
export interface BucketSpec {
  /** Tokens added per second. */
  rate: number;
  /** Bucket size: the burst allowed after a quiet period. */
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  constructor(private readonly spec: BucketSpec, private readonly maxKeys = 4096) {
    if (!(spec.rate > 0) || !(spec.burst >= 1)) throw new RangeError('rate limiter needs rate > 0 and burst >= 1');
  }

  /** Takes one token for `key` at time `now` (ms). False when the bucket is empty. */
  take(key: string, now: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      // A full table of buckets is itself a flood symptom: forget them all rather than grow.
      if (this.buckets.size >= this.maxKeys) this.buckets.clear();
      b = { tokens: this.spec.burst, at: now };
      this.buckets.set(key, b);
    } else {
      // A clock that steps back counts as no time passed: no tokens taken back (which would
      // lock the key out until the clock caught up) and none given.
      b.tokens = Math.min(this.spec.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * this.spec.rate);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
