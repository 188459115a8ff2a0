// RateLimiter (src/neighbors/ratelimit.ts), table-driven in the style of wireguard-go's
// ratelimiter_test.go: a script of (wait, expected answer) steps, replayed for several keys at
// once so one key's bucket never leaks into another's. Time is passed in: no clock, no sleeping.
import { describe, expect, it } from 'vitest';
import { RateLimiter, type BucketSpec } from '../../src/neighbors/ratelimit.js';

const SPEC: BucketSpec = { rate: 20, burst: 5 };
const TOKEN_MS = 1000 / SPEC.rate; // 50 ms per token

interface Step {
  /** Milliseconds to advance before this take (negative: the clock steps back). */
  wait: number;
  allowed: boolean;
  text: string;
}

const SCRIPT: Step[] = [
  ...Array.from({ length: SPEC.burst }, (_, i): Step => ({ wait: 0, allowed: true, text: `initial burst ${i + 1}` })),
  { wait: 0, allowed: false, text: 'after burst' },
  { wait: TOKEN_MS, allowed: true, text: 'one token refilled' },
  { wait: 0, allowed: false, text: 'not refilled again yet' },
  { wait: TOKEN_MS - 1, allowed: false, text: 'one millisecond short of a token' },
  { wait: 1, allowed: true, text: 'the token completes' },
  { wait: 2 * TOKEN_MS, allowed: true, text: 'two tokens refilled: first' },
  { wait: 0, allowed: true, text: 'two tokens refilled: second' },
  { wait: 0, allowed: false, text: 'after the two' },
  { wait: 3_600_000, allowed: true, text: 'after an hour: a full burst, 1' },
  ...Array.from({ length: SPEC.burst - 1 }, (_, i): Step => ({ wait: 0, allowed: true, text: `after an hour: ${i + 2}` })),
  { wait: 0, allowed: false, text: 'the bucket holds no more than the burst' },
  { wait: -10_000, allowed: false, text: 'clock steps back 10 s: no tokens given' },
  { wait: TOKEN_MS, allowed: true, text: 'one token after the step back: not locked out for 10 s' },
  { wait: 0, allowed: false, text: 'and only one' },
];

describe('RateLimiter', () => {
  it('follows the script for each of several keys, interleaved', () => {
    const keys = ['fe80::1%eth0', 'fe80::2%eth0', 'fe80::1%eth1', 'A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg='];
    const limiter = new RateLimiter(SPEC);
    let now = 1_000_000;
    for (const step of SCRIPT) {
      now += step.wait;
      for (const key of keys) expect(limiter.take(key, now), `${key}: ${step.text}`).toBe(step.allowed);
    }
  });

  // Polled at least every burst / rate (250 ms), a drained key gets rate × 10 s tokens in 10 s;
  // polled less often, what would overflow the bucket is lost: a burst per poll.
  it.each([
    [1, SPEC.rate * 10],
    [7, SPEC.rate * 10],
    [50, SPEC.rate * 10],
    [250, SPEC.rate * 10],
    [1000, SPEC.burst * 10],
  ])('refills at the rate, capped by the burst: polled every %i ms, %i tokens in 10 s', (pollMs, expected) => {
    const limiter = new RateLimiter(SPEC);
    let now = 0;
    while (limiter.take('k', now)); // drain the burst
    let granted = 0;
    do {
      now = Math.min(now + pollMs, 10_000);
      while (limiter.take('k', now)) granted++;
    } while (now < 10_000);
    expect(granted).toBe(expected);
  });

  it('a new key starts with a full burst, even when another key is drained', () => {
    const limiter = new RateLimiter(SPEC);
    while (limiter.take('old', 0));
    expect(Array.from({ length: SPEC.burst + 1 }, () => limiter.take('new', 0))).toEqual([...Array<boolean>(SPEC.burst).fill(true), false]);
  });

  it('key bound: the first key past the bound clears every bucket (drained keys start again)', () => {
    const limiter = new RateLimiter({ rate: 1, burst: 1 }, 3);
    for (const k of ['a', 'b', 'c']) expect(limiter.take(k, 0), k).toBe(true);
    for (const k of ['a', 'b', 'c']) expect(limiter.take(k, 0), `${k} drained`).toBe(false);
    expect(limiter.take('d', 0), 'd: the fourth key').toBe(true); // clears a, b, c
    for (const k of ['a', 'b', 'c']) expect(limiter.take(k, 0), `${k} forgotten: a full bucket`).toBe(true);
    // a, b, c and d were 4 keys again: adding c cleared the table once more, so d is fresh too.
    expect(limiter.take('d', 0), 'd forgotten when c was added back').toBe(true);
  });

  it('with a bound of one key (the strangers budget) a single key is never cleared', () => {
    const limiter = new RateLimiter({ rate: 1, burst: 2 }, 1);
    expect([limiter.take('', 0), limiter.take('', 0), limiter.take('', 0)]).toEqual([true, true, false]);
  });

  it.each([
    [{ rate: 0, burst: 1 }],
    [{ rate: -1, burst: 1 }],
    [{ rate: Number.NaN, burst: 1 }],
    [{ rate: 1, burst: 0.5 }],
    [{ rate: 1, burst: Number.NaN }],
  ])('refuses a bucket that could never give a token: %o', (spec) => {
    expect(() => new RateLimiter(spec)).toThrow(RangeError);
  });
});
