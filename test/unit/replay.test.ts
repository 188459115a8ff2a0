// ReplayMemory (src/neighbors/replay.ts), the receiver's half of PROTOCOL.md §5, table-driven in
// the style of wireguard-go's replay_test.go: one table of (sender, seq, accept?) steps run in
// order against one memory, then the bound and the state file.
import { describe, expect, it } from 'vitest';
import { ReplayMemory } from '../../src/neighbors/replay.js';
import { U64_MAX } from '../../src/protocol/bytes.js';

describe('ReplayMemory: fresh, stale and equal seq', () => {
  // Each step: isFresh must say `fresh`; a fresh one is then accepted (as admission does after
  // the signature check), a stale one is not.
  const steps: [sender: string, seq: bigint, fresh: boolean, why: string][] = [
    ['a', 5n, true, 'first message from a never-heard sender: any seq'],
    ['a', 5n, false, 'the same seq again (a replay)'],
    ['a', 4n, false, 'a lower seq'],
    ['a', 0n, false, 'zero'],
    ['a', 6n, true, 'one more'],
    ['a', 1000n, true, 'a jump forward (gaps are fine: nothing else about seq is assumed)'],
    ['a', 999n, false, 'one below the jump (messages sent out of order are lost)'],
    ['b', 0n, true, "another sender's first message, even seq 0: records are per sender"],
    ['b', 0n, false, "b's zero again"],
    ['c', U64_MAX, true, 'a first message at the top of u64'],
    ['c', U64_MAX, false, 'nothing is fresh after 2^64-1'],
    ['a', 1001n, true, "a's record is untouched by b and c"],
  ];

  it('follows the table', () => {
    const mem = new ReplayMemory();
    for (const [sender, seq, fresh, why] of steps) {
      expect(mem.isFresh(sender, seq), `${sender} ${seq}: ${why}`).toBe(fresh);
      if (fresh) mem.accept(sender, seq);
    }
    expect([mem.lastSeq('a'), mem.lastSeq('b'), mem.lastSeq('c'), mem.lastSeq('d')]).toEqual([1001n, 0n, U64_MAX, undefined]);
  });

  it('isFresh records nothing: only accept does (a forgery that fails the signature leaves no mark)', () => {
    const mem = new ReplayMemory();
    expect(mem.isFresh('a', 10n)).toBe(true);
    expect(mem.isFresh('a', 3n)).toBe(true);
    expect(mem.size).toBe(0);
    mem.accept('a', 3n);
    expect([mem.isFresh('a', 3n), mem.isFresh('a', 10n), mem.size]).toEqual([false, true, 1]);
  });
});

describe('ReplayMemory: the bound', () => {
  /** Senders in the memory, oldest first (the state file's order). */
  const order = (mem: ReplayMemory) => mem.toJSON().map(([k]) => k);

  it.each([
    {
      what: 'the sender accepted least recently is forgotten first',
      accepts: [['a', 1n], ['b', 1n], ['c', 1n], ['d', 1n]],
      left: ['b', 'c', 'd'],
    },
    {
      what: 'accepting again moves a sender to the newest end',
      accepts: [['a', 1n], ['b', 1n], ['c', 1n], ['a', 2n], ['d', 1n]],
      left: ['c', 'a', 'd'],
    },
    {
      what: 'a run of new senders pushes out everyone not heard since',
      accepts: [['a', 1n], ['b', 1n], ['c', 1n], ['b', 2n], ['x', 1n], ['y', 1n], ['b', 3n], ['z', 1n]],
      left: ['y', 'b', 'z'],
    },
    {
      what: 'up to the capacity nothing is forgotten',
      accepts: [['a', 1n], ['b', 1n], ['c', 1n], ['c', 2n], ['a', 9n]],
      left: ['b', 'c', 'a'],
    },
  ] as { what: string; accepts: [string, bigint][]; left: string[] }[])('capacity 3: $what', ({ accepts, left }) => {
    const mem = new ReplayMemory(3);
    for (const [k, seq] of accepts) mem.accept(k, seq);
    expect(order(mem)).toEqual(left);
    expect(mem.size).toBe(left.length);
  });

  it('a forgotten sender is a never-heard one again: its old seqs are fresh (PROTOCOL.md §5)', () => {
    const mem = new ReplayMemory(2);
    mem.accept('a', 100n);
    mem.accept('b', 1n);
    mem.accept('c', 1n); // a is forgotten
    expect(mem.lastSeq('a')).toBeUndefined();
    expect(mem.isFresh('a', 50n)).toBe(true);
  });

  it('the default bound is 4096 senders', () => {
    const mem = new ReplayMemory();
    for (let i = 0; i <= 4096; i++) mem.accept(`k${i}`, 1n);
    expect(mem.size).toBe(4096);
    expect(mem.lastSeq('k0')).toBeUndefined();
    expect(mem.lastSeq('k1')).toBe(1n);
  });

  it.each([0, -1, 1.5, Number.NaN])('refuses capacity %s', (capacity) => {
    expect(() => new ReplayMemory(capacity)).toThrow(RangeError);
  });
});

describe('ReplayMemory: the state file', () => {
  it('round-trips through JSON, oldest first, seq as decimal strings', () => {
    const mem = new ReplayMemory();
    mem.accept('a', 1n);
    mem.accept('b', U64_MAX);
    mem.accept('a', 7575332749679001600n);
    const json = JSON.parse(JSON.stringify(mem.toJSON())) as unknown;
    expect(json).toEqual([['b', '18446744073709551615'], ['a', '7575332749679001600']]);
    const back = ReplayMemory.fromJSON(json);
    expect(back.toJSON()).toEqual(mem.toJSON());
    expect([back.isFresh('a', 7575332749679001600n), back.isFresh('a', 7575332749679001601n)]).toEqual([false, true]);
  });

  it.each([
    ['not an array', { a: '1' }],
    ['null', null],
    ['a string', 'a,1'],
    ['a number', 5],
  ])('a file that is %s gives an empty memory', (_what, json) => {
    expect(ReplayMemory.fromJSON(json).size).toBe(0);
  });

  it('skips junk entries and keeps the good ones in order', () => {
    const json = [
      ['good1', '5'],
      ['num', 5],
      [7, '5'],
      ['lead', '05'],
      ['neg', '-1'],
      ['big', '18446744073709551616'],
      ['hex', '0x10'],
      ['space', ' 5'],
      ['empty', ''],
      ['short'],
      'just a string',
      null,
      { k: 'obj', v: '1' },
      ['good2', '0'],
      ['extra', '3', 'ignored'],
    ];
    const mem = ReplayMemory.fromJSON(json);
    expect(mem.toJSON()).toEqual([['good1', '5'], ['good2', '0'], ['extra', '3']]);
  });

  it('a file longer than the capacity keeps its newest entries (the end of the list)', () => {
    const json = Array.from({ length: 10 }, (_, i) => [`k${i}`, String(i)]);
    expect(ReplayMemory.fromJSON(json, 3).toJSON()).toEqual([['k7', '7'], ['k8', '8'], ['k9', '9']]);
  });
});

describe('ReplayMemory: held (unverified) messages', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  // Stands in for Admission.verifyHeld: "genuine" datagrams read "ok <sender> <seq>".
  const verify = (sender: string, d: Uint8Array): bigint | undefined => {
    const [ok, who, seq] = new TextDecoder().decode(d).split(' ');
    return ok === 'ok' && who === sender ? BigInt(seq!) : undefined;
  };

  it('a held message moves nothing until settled, then moves the mark if genuine', () => {
    const mem = new ReplayMemory();
    mem.accept('a', 5n);
    mem.hold('a', 9n, bytes('ok a 9'));
    expect([mem.isFresh('a', 6n), mem.heldCount]).toEqual([true, 1]);
    expect(mem.settle(verify, 'a')).toBe(1);
    expect([mem.isFresh('a', 9n), mem.isFresh('a', 10n), mem.heldCount]).toEqual([false, true, 0]);
  });

  it('keeps the newest only; a forgery (or one for another sender) moves nothing', () => {
    const mem = new ReplayMemory();
    mem.accept('a', 5n);
    mem.accept('b', 5n);
    mem.hold('a', 8n, bytes('ok a 8'));
    mem.hold('a', 7n, bytes('ok a 7'));
    mem.hold('b', 99n, bytes('forged b 99'));
    expect(mem.settle(verify)).toBe(1);
    expect([mem.lastSeq('a'), mem.lastSeq('b')]).toEqual([8n, 5n]);
  });

  it('is not held for a sender without a mark, nor when stale; a verified newer message drops it', () => {
    const mem = new ReplayMemory();
    mem.hold('x', 3n, bytes('ok x 3'));
    mem.accept('a', 5n);
    mem.hold('a', 5n, bytes('ok a 5'));
    expect(mem.heldCount).toBe(0);
    mem.hold('a', 6n, bytes('ok a 6'));
    mem.accept('a', 7n);
    expect(mem.heldCount).toBe(0);
  });

  it('goes to the state file and back (settled by whoever loads it), and copies the bytes it holds', () => {
    const mem = new ReplayMemory();
    mem.accept('a', 5n);
    const d = bytes('ok a 9');
    mem.hold('a', 9n, d);
    d.fill(0);
    const json = JSON.parse(JSON.stringify(mem.toJSON())) as unknown;
    expect(json).toEqual([['a', '5', Buffer.from('ok a 9').toString('base64')]]);
    const back = ReplayMemory.fromJSON(json);
    expect(back.isFresh('a', 6n)).toBe(true);
    expect(back.settle(verify)).toBe(1);
    expect(back.isFresh('a', 9n)).toBe(false);
  });

  it('a held message goes with its sender when the bound forgets it', () => {
    const mem = new ReplayMemory(2);
    mem.accept('a', 1n);
    mem.hold('a', 2n, bytes('ok a 2'));
    mem.accept('b', 1n);
    mem.accept('c', 1n);
    expect([mem.heldCount, mem.lastSeq('a')]).toEqual([0, undefined]);
  });
});
