import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage, identityFromSeed, toBase64 } from '../../src/protocol/index.js';
import { lan, MeshSim, type SimNode } from './meshsim.js';

function neighborsOf(n: { core: { neighborList(): { key: string }[] } }): string[] {
  return n.core.neighborList().map((x) => x.key).sort();
}

function allPairsTunneled(sim: MeshSim, nodes = sim.nodes): boolean {
  for (const a of nodes) for (const b of nodes) if (a !== b && !sim.tunneled(a, b)) return false;
  return true;
}

describe('discovery', () => {
  it('two nodes find each other, become two-way and negotiate one tunnel', () => {
    const sim = new MeshSim();
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(1500);
    expect(neighborsOf(a!)).toEqual([b!.key]);
    expect(neighborsOf(b!)).toEqual([a!.key]);
    expect(a!.core.neighborList()[0]).toMatchObject({ iface: 'eth0', linkLocal: 'fe80::2', state: 'two-way', control: { address: 'fe80::2', zone: 'eth0', port: 51819 } });
    expect(sim.tunneled(a!, b!)).toBe(true);
    expect(a!.tunnelCount()).toBe(1);
    expect(b!.tunnelCount()).toBe(1);
  });

  it('answers every hello until the tunnel works, then confirms only every three dead intervals, two-way all along', () => {
    const sim = new MeshSim(21);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(3000);
    expect(sim.tunneled(a!, b!)).toBe(true);
    // The first seconds: every hello of b's was answered until a saw the handshake.
    const hellosBefore = b!.core.counters.sent.scrooge_hello;
    const confirmsBefore = a!.core.counters.sent.scrooge_hello_confirm;
    for (let t = 0; t < 42_000; t += 100) {
      sim.run(100);
      expect(a!.core.neighborList()[0]!.state).toBe('two-way');
      expect(b!.core.neighborList()[0]!.state).toBe('two-way');
    }
    const hellos = b!.core.counters.sent.scrooge_hello - hellosBefore;
    const confirms = a!.core.counters.sent.scrooge_hello_confirm - confirmsBefore;
    expect(hellos).toBeGreaterThanOrEqual(34);
    // 42 s / 10.5 s (and up to one hello interval more each): about 4, never one per hello.
    expect(confirms).toBeGreaterThanOrEqual(3);
    expect(confirms).toBeLessThanOrEqual(5);
  });

  it('a neighbor that lost its tunnel confirms quickly, gets confirms every half dead interval, and is tunneled again within seconds', () => {
    const sim = new MeshSim(31);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(30_000); // long past the first exchange: a confirms b every 10.5 s
    expect(sim.tunneled(a!, b!)).toBe(true);
    // Right after one of a's confirms, so a's next one by the slow rule is 10.5 s away.
    const sent = a!.core.counters.sent.scrooge_hello_confirm;
    while (a!.core.counters.sent.scrooge_hello_confirm === sent) sim.run(10);
    b!.stop(false); // b restarts with nothing in memory: no tunnel, a still has its end
    sim.run(300);
    b!.start();
    const restartAt = sim.now;
    let back = -1;
    for (let t = 0; t < 15_000 && back < 0; t += 50) {
      sim.run(50);
      if (sim.tunneled(a!, b!)) back = sim.now - restartAt;
    }
    // b confirms a's hellos at once (about one a second); a answers b's next hello once it
    // has seen two of them; b offers. Waiting for a's slow confirm would take up to 10.5 s.
    expect(back).toBeGreaterThan(0);
    expect(back).toBeLessThanOrEqual(5000);
    expect(a!.tunnelCount()).toBe(1);
    // Tunneled again, both slow down: confirms back to one per three dead intervals.
    sim.run(10_000);
    const before = [a!.core.counters.sent.scrooge_hello_confirm, b!.core.counters.sent.scrooge_hello_confirm];
    sim.run(42_000);
    expect(a!.core.counters.sent.scrooge_hello_confirm - before[0]!).toBeLessThanOrEqual(5);
    expect(b!.core.counters.sent.scrooge_hello_confirm - before[1]!).toBeLessThanOrEqual(5);
  });

  it('a neighbor of the older rule (confirming every half dead interval over a working tunnel) is not mistaken for one that lost its tunnel', () => {
    const sim = new MeshSim(33);
    const a = sim.addNode('a', [{ name: 'eth0', segment: 'lan', linkLocal: 'fe80::a' }]);
    const old = sim.addNode('old', [{ name: 'eth0', segment: 'lan', linkLocal: 'fe80::b' }], { upConfirmIntervalMs: 1750 });
    a.start();
    old.start();
    sim.run(5000);
    expect(sim.tunneled(a, old)).toBe(true);
    const before = [a.core.counters.sent.scrooge_hello_confirm, old.core.counters.sent.scrooge_hello_confirm];
    const eventsBefore = a.events.length;
    sim.run(20_000);
    const fromA = a.core.counters.sent.scrooge_hello_confirm - before[0]!;
    const fromOld = old.core.counters.sent.scrooge_hello_confirm - before[1]!;
    // 20 s / 1.75 s (and up to one hello interval more each): 7 to 12 from the old node; its
    // confirms come 1.75 s or more apart, not at once, so a stays at one per 10.5 s.
    expect(fromOld).toBeGreaterThanOrEqual(7);
    expect(fromOld).toBeLessThanOrEqual(12);
    expect(fromA).toBeGreaterThanOrEqual(1);
    expect(fromA).toBeLessThanOrEqual(3);
    // Nothing re-negotiated, and a sees the old node two-way all along.
    expect(sim.tunneled(a, old)).toBe(true);
    expect(a.events.slice(eventsBefore).filter((e) => e.kind === 'event' && e.event !== 'tunnel-handshake')).toEqual([]);
    expect(a.core.neighborList()[0]!.state).toBe('two-way');
  });

  it('a chain: the ends see only the middle', () => {
    const sim = new MeshSim();
    const a = sim.addNode('a', [{ name: 'eth0', segment: 'ab', linkLocal: 'fe80::a' }]);
    const b = sim.addNode('b', [{ name: 'eth0', segment: 'ab', linkLocal: 'fe80::b' }, { name: 'eth1', segment: 'bc', linkLocal: 'fe80::b1' }]);
    const c = sim.addNode('c', [{ name: 'eth0', segment: 'bc', linkLocal: 'fe80::c' }]);
    for (const n of sim.nodes) n.start();
    sim.run(3000);
    expect(neighborsOf(a)).toEqual([b.key]);
    expect(neighborsOf(c)).toEqual([b.key]);
    expect(neighborsOf(b)).toEqual([a.key, c.key].sort());
    expect(b.tunnelCount()).toBe(2);
    expect([a.tunnelCount(), c.tunnelCount()]).toEqual([1, 1]);
  });

  it('an expired neighbor comes back within one hello interval after a restart', () => {
    const sim = new MeshSim();
    const [a, b] = lan(sim, 2, { tunnels: { enabled: false } as never });
    a!.start();
    b!.start();
    sim.run(2000);
    b!.stop(true);
    const lastHeard = a!.core.neighborList()[0]!.lastHeard;
    sim.run(lastHeard + 3400 - sim.now);
    expect(neighborsOf(a!)).toEqual([b!.key]); // not yet: the dead interval is 3.5 s
    sim.run(200);
    expect(neighborsOf(a!)).toEqual([]);
    const restartAt = sim.now;
    b!.start();
    let backAfter = -1;
    for (let t = 0; t <= 1000 && backAfter < 0; t += 10) {
      sim.run(10);
      if (neighborsOf(a!).length === 1) backAfter = sim.now - restartAt;
    }
    expect(backAfter).toBeGreaterThanOrEqual(0);
    expect(backAfter).toBeLessThanOrEqual(1000);
  });
});

describe('nothing new over a working tunnel (PROTOCOL.md §6): not verified', () => {
  function pair(seed: number) {
    const sim = new MeshSim(seed);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(3000);
    expect(sim.tunneled(a!, b!)).toBe(true);
    return { sim, a: a!, b: b! };
  }

  it('verifies one hello per confirm interval (10.5 s) once the tunnel works, and the neighbor stays heard and two-way all along', () => {
    const { sim, a, b } = pair(5);
    const c = a.core.counters;
    const before = { hello: c.received.scrooge_hello, confirm: c.received.scrooge_hello_confirm, skipped: c.redundant.scrooge_hello, sent: b.core.counters.sent.scrooge_hello };
    const eventsBefore = a.events.length;
    let maxAgo = 0;
    for (let t = 0; t < 120_000; t += 100) {
      sim.run(100);
      const row = a.core.neighborList()[0]!;
      expect(row.state).toBe('two-way');
      maxAgo = Math.max(maxAgo, sim.now - row.lastHeard);
    }
    const sent = b.core.counters.sent.scrooge_hello - before.sent;
    const verified = c.received.scrooge_hello - before.hello;
    const skipped = c.redundant.scrooge_hello - before.skipped;
    // Every hello b sent reached a: verified or skipped, nothing else.
    expect(verified + skipped).toBe(sent);
    // One a confirm interval (10.5 s), the first hello after it: 10.5 to 11.75 s apart.
    expect(verified).toBeLessThanOrEqual(Math.ceil(120_000 / 10_500) + 1);
    expect(verified).toBeGreaterThanOrEqual(Math.floor(120_000 / 11_750) - 1);
    // Skipped hellos move lastHeard: never older than one jittered hello interval (1.25 s).
    expect(maxAgo).toBeLessThanOrEqual(1250 + 100);
    // No quiet spell, no re-negotiation.
    expect(a.events.slice(eventsBefore).filter((e) => e.kind === 'event' && e.event !== 'tunnel-handshake')).toEqual([]);
    expect(c.received.scrooge_hello_confirm - before.confirm).toBeGreaterThan(0);
  });

  it('without a working tunnel every hello is verified', () => {
    const sim = new MeshSim(6);
    const [a, b] = lan(sim, 2, { tunnels: { enabled: false } as never });
    a!.start();
    b!.start();
    sim.run(30_000);
    expect(a!.core.counters.redundant.scrooge_hello).toBe(0);
    expect(a!.core.counters.received.scrooge_hello).toBe(b!.core.counters.sent.scrooge_hello);
  });

  /**
   * Runs until a has just verified a hello of b's (a's count of verified hellos moved, and b's
   * newest hello is within a's record for b: a confirm of b's verified in the same step may
   * have moved the record past it); that hello.
   */
  function verifiedHello(sim: MeshSim, a: SimNode, b: SimNode) {
    for (let i = 0; i < 150; i++) {
      const verified = a.core.counters.received.scrooge_hello;
      sim.run(100);
      if (a.core.counters.received.scrooge_hello === verified) continue;
      const newest = sim.wire.filter((w) => w.from === b && w.to.startsWith('ff02')).at(-1);
      const d = newest && decodeMessage(newest.bytes);
      const row = a.core.neighborList()[0]!;
      if (d?.ok && d.message.seq <= row.lastSeq! && sim.now - row.lastHeard < 100) return d.message;
    }
    throw new Error('no verified hello of b in 15 s');
  }

  it('a forged copy changes nothing but lastHeard inside the confirm interval, fails verification after it, and the genuine hello after it is verified', () => {
    const { sim, a, b } = pair(7);
    const hello = verifiedHello(sim, a, b);
    // Same head, a fresh seq, a signature that is not b's.
    const forged = encodeMessage({ ...hello, seq: hello.seq + 1000n }, () => new Uint8Array(64).fill(7)).bytes;
    const snapshot = () => JSON.stringify(a.core.neighborList(), (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    const verifiedAt = a.core.neighborList()[0]!.lastHeard;
    const before = snapshot();
    const skipped = a.core.counters.redundant.scrooge_hello;
    a.core.receive(forged, { address: 'fe80::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.redundant.scrooge_hello).toBe(skipped + 1);
    // Nothing but lastHeard, and that no further than the verified hello + one confirm interval.
    const withoutHeard = (text: string) => text.replace(/"lastHeard":[\d.]+/g, '');
    expect(withoutHeard(snapshot())).toBe(withoutHeard(before));
    expect(a.core.neighborList()[0]!.lastHeard).toBe(sim.now);
    // After the confirm interval (10.5 s) the same bytes meet the signature check and move nothing.
    const lastHeard = a.core.neighborList()[0]!.lastHeard;
    const bad = a.core.counters.dropped['bad-signature'] ?? 0;
    a.core.receive(forged, { address: 'fe80::2', iface: 'eth0' }, verifiedAt + 10_500);
    expect(a.core.counters.dropped['bad-signature']).toBe(bad + 1);
    expect(a.core.neighborList()[0]!.lastHeard).toBe(lastHeard);
  });

  it('forged copies keep a departed neighbor from going quiet for one confirm interval at most, less than its tunnel takes to be found dead', () => {
    const { sim, a, b } = pair(9);
    // b's newest hello that a verified, then b stops for good; a forger repeats that hello
    // with fresh seqs (and a bad signature) every 100 ms.
    const hello = verifiedHello(sim, a, b);
    const verifiedAt = a.core.neighborList()[0]!.lastHeard;
    b.stop(false);
    let quietAt = -1;
    for (let i = 1; i <= 300 && quietAt < 0; i++) {
      const forged = encodeMessage({ ...hello, seq: hello.seq + BigInt(1000 + i) }, () => new Uint8Array(64).fill(7)).bytes;
      a.core.receive(forged, { address: 'fe80::2', iface: 'eth0' }, sim.now);
      sim.run(100);
      const row = a.core.neighborList()[0];
      if (!row || row.state === 'quiet') quietAt = sim.now;
    }
    expect(quietAt).toBeGreaterThan(0);
    // The dead interval (3.5 s) after the last skipped copy, that one within 10.5 s of the
    // verified hello; one 100 ms step of slack. Under the tunnel's own dead-after (16 s).
    expect(quietAt - verifiedAt).toBeLessThanOrEqual(10_500 + 3500 + 100);
    expect(quietAt - verifiedAt).toBeLessThan(3 * 5000 + 1000);
  });

  it('a replay of the verified hello is dropped as stale, not skipped', () => {
    const { sim, a, b } = pair(8);
    sim.run(200);
    const lastSeq = a.core.neighborList()[0]!.lastSeq!;
    const old = sim.wire.filter((w) => w.from === b && w.to.startsWith('ff02')).map((w) => w.bytes).findLast((bytes) => {
      const d = decodeMessage(bytes);
      return d.ok && d.message.seq <= lastSeq;
    })!;
    const stale = a.core.counters.dropped['stale-seq'] ?? 0;
    a.core.receive(old, { address: 'fe80::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.dropped['stale-seq']).toBe(stale + 1);
  });

  /** Runs until b's newest hello on the wire is one a skipped (counted redundant, its seq past a's record for b). */
  function skippedHello(sim: MeshSim, a: SimNode, b: SimNode): Uint8Array {
    for (let i = 0; i < 100; i++) {
      const redundant = a.core.counters.redundant.scrooge_hello;
      sim.run(100);
      if (a.core.counters.redundant.scrooge_hello === redundant) continue;
      const lastSeq = a.core.neighborList()[0]!.lastSeq!;
      const newest = sim.wire.filter((w) => w.from === b && w.to.startsWith('ff02')).at(-1)!.bytes;
      const d = decodeMessage(newest);
      if (d.ok && d.message.seq > lastSeq) return newest;
    }
    throw new Error('no skipped hello in 10 s');
  }

  it('a skipped hello replayed after the sender left and was forgotten is stale (held, verified when forgotten)', () => {
    const { sim, a, b } = pair(10);
    const skipped = skippedHello(sim, a, b);
    b.stop(true);
    sim.run(30_000);
    expect(a.core.neighborList()).toEqual([]);
    const stale = a.core.counters.dropped['stale-seq'] ?? 0;
    sim.inject(a, 'eth0', 'fe80::2', skipped);
    expect(a.core.counters.dropped['stale-seq']).toBe(stale + 1);
    expect(a.core.neighborList()).toEqual([]);
  });

  it('and after the receiver crashes (kill -9) with the hello still held: the restarted core settles what the state file held', () => {
    const { sim, a, b } = pair(11);
    const skipped = skippedHello(sim, a, b);
    b.stop(true);
    a.stop(false);
    a.start();
    const stale = a.core.counters.dropped['stale-seq'] ?? 0;
    sim.inject(a, 'eth0', 'fe80::2', skipped);
    expect(a.core.counters.dropped['stale-seq']).toBe(stale + 1);
    expect(a.core.neighborList()).toEqual([]);
  });

  it('a hello that names a new control port is verified at once', () => {
    const { sim, a, b } = pair(9);
    sim.run(100);
    const row = () => a.core.neighborList()[0]!;
    const seq = row().lastSeq! + 10n;
    const hello = (port: number, s: bigint) => encodeMessage({ type: 'scrooge_hello', publicKey: b.identity.publicKey, control: { address: 'fe80::2', port }, seq: s }, (m) => b.identity.sign(m)).bytes;
    const verified = a.core.counters.received.scrooge_hello;
    a.core.receive(hello(40000, seq), { address: 'fe80::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.received.scrooge_hello).toBe(verified + 1);
    expect(row().control).toMatchObject({ address: 'fe80::2', port: 40000 });
    // Back to the usual port: a change again, verified at once.
    a.core.receive(hello(51819, seq + 1n), { address: 'fe80::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.received.scrooge_hello).toBe(verified + 2);
    expect(row().control).toMatchObject({ port: 51819 });
  });
});

describe('bad input changes nothing', () => {
  function setup() {
    const sim = new MeshSim();
    const [a, b] = lan(sim, 2, { tunnels: { enabled: false } as never });
    a!.start();
    b!.start();
    sim.run(2500);
    return { sim, a: a!, b: b! };
  }
  const snapshot = (n: { core: { neighborList(): unknown[] } }) => JSON.stringify(n.core.neighborList(), (_k, v) => (typeof v === 'bigint' ? v.toString() : v));

  it('a replayed hello is dropped as stale, before and after the sender restarts', () => {
    const { sim, a, b } = setup();
    const captured = sim.wire.filter((w) => w.from === b && w.to.startsWith('ff02'))[0]!.bytes;
    const before = snapshot(a);
    sim.inject(a, 'eth0', 'fe80::2', captured);
    expect(a.core.counters.dropped['stale-seq']).toBe(1);
    b.stop(true);
    b.start();
    sim.run(1500);
    sim.inject(a, 'eth0', 'fe80::2', captured);
    expect(a.core.counters.dropped['stale-seq']).toBe(2);
    expect(snapshot(a)).not.toBe(before); // b really came back (lastSeq moved on) ...
    const after = snapshot(a);
    sim.inject(a, 'eth0', 'fe80::2', captured);
    expect(snapshot(a)).toBe(after); // ... but the replay changed nothing
  });

  it('forged, truncated, oversized and garbage datagrams are counted and change nothing', () => {
    const { sim, a, b } = setup();
    const real = sim.wire.filter((w) => w.from === b && w.to.startsWith('ff02')).at(-1)!.bytes;
    const text = new TextDecoder().decode(real);
    const mallory = identityFromSeed(new Uint8Array(32).fill(99));
    // b's key, a newer seq, signed by mallory
    const parts = text.split(' ');
    const forgedSeq = BigInt(parts[3]!) + 10n;
    const forged = encodeMessage({ type: 'scrooge_hello', publicKey: b.identity.publicKey, control: { address: 'fe80::66', zone: 'eth0', port: 51819 }, seq: forgedSeq }, mallory.sign);
    const strangerForged = encodeMessage({ type: 'scrooge_hello', publicKey: mallory.publicKey, control: { address: 'fe80::66', port: 51819 }, seq: 1n }, b.identity.sign);
    const before = snapshot(a);
    const enc = new TextEncoder();
    const inputs: [string, Uint8Array][] = [
      ['bad-signature', forged.bytes],
      ['bad-signature', strangerForged.bytes],
      ['field-count', enc.encode(text.split(' ').slice(0, 3).join(' '))],
      ['oversized', new Uint8Array(5000).fill(65)],
      ['not-text', Uint8Array.from([0, 1, 2, 255])],
      ['unknown-type', enc.encode('GET / HTTP/1.1')],
    ];
    for (const [reason, bytes] of inputs) {
      const was = a.core.counters.dropped[reason as 'oversized'] ?? 0;
      sim.inject(a, 'eth0', 'fe80::66', bytes);
      expect(a.core.counters.dropped[reason as 'oversized'], reason).toBe(was + 1);
    }
    expect(snapshot(a)).toBe(before);
  });

  it('datagrams arriving on a non-mesh interface are ignored', () => {
    const { sim, a, b } = setup();
    const real = sim.wire.filter((w) => w.from === b).at(-1)!.bytes;
    sim.inject(a, 'uplink0', 'fe80::2', real);
    expect(a.core.counters.dropped['wrong-interface']).toBe(1);
  });

  it('a flood of forgeries from random keys and addresses does not starve real neighbors', () => {
    const { sim, a, b } = setup();
    // 1000 distinct forged hellos (new key, new address each), replayed in a loop.
    const pool = Array.from({ length: 1000 }, (_, n) => {
      const k = identityFromSeed(Uint8Array.from([...new Uint8Array(29), 7, (n >> 8) & 255, n & 255]));
      const address = `fe80::${(n + 1).toString(16)}:1`;
      const bytes = encodeMessage({ type: 'scrooge_hello', publicKey: k.publicKey, control: { address, port: 51819 }, seq: 1n }, (d) => {
        const s = k.sign(d);
        s[0]! ^= 1;
        return s;
      }).bytes;
      return { address, bytes };
    });
    for (let round = 0; round < 100; round++) {
      // 2000 forged hellos per 100 ms = 20,000/s for 10 s.
      for (let i = 0; i < 2000; i++) {
        const f = pool[(round * 2000 + i) % pool.length]!;
        sim.inject(a, 'eth0', f.address, f.bytes);
      }
      sim.run(100);
      expect(neighborsOf(a)).toEqual([b.key]);
    }
    const d = a.core.counters.dropped;
    expect((d['rate-limited'] ?? 0) + (d['bad-signature'] ?? 0)).toBe(200_000);
    // The expensive check ran at most at the strangers' budget (300/s + a burst of 300).
    expect(d['bad-signature']!).toBeLessThanOrEqual(3300);
    // 200,000 datagrams decoded in one test: seconds of CPU, tens on a loaded 2-core machine.
  }, 90_000);

  it('the table has a bound; strangers cannot evict known neighbors', () => {
    const sim = new MeshSim();
    const nodes = lan(sim, 5, { maxNeighbors: 2, tunnels: { enabled: false } as never });
    nodes[0]!.start();
    nodes[1]!.start();
    nodes[2]!.start();
    sim.run(2000);
    const known = neighborsOf(nodes[0]!);
    expect(known).toHaveLength(2);
    nodes[3]!.start();
    nodes[4]!.start();
    sim.run(3000);
    expect(neighborsOf(nodes[0]!)).toEqual(known);
    expect(nodes[0]!.core.counters.dropped['table-full']).toBeGreaterThan(0);
  });
});

describe('tunnel negotiation', () => {
  it('lan-5 started at the same instant: exactly one tunnel per pair, stable for 60 s', () => {
    const sim = new MeshSim(42);
    const nodes = lan(sim, 5);
    for (const n of nodes) n.start();
    sim.run(3000);
    expect(allPairsTunneled(sim)).toBe(true);
    const keysBefore = nodes.map((n) => [...n.applied.values()].map((t) => toBase64(t.publicKey)).sort().join());
    sim.run(60_000);
    for (const n of nodes) expect(n.tunnelCount()).toBe(4);
    expect(allPairsTunneled(sim)).toBe(true);
    // No churn: nobody renegotiated once the tunnels were up.
    expect(nodes.map((n) => [...n.applied.values()].map((t) => toBase64(t.publicKey)).sort().join())).toEqual(keysBefore);
  });

  it('converges with 30 % datagram loss: every one of 20 seeds within 60 s, most within 20 s', () => {
    // One seed says little: any change to what is sent reshuffles which datagrams are lost.
    // Seeds 1-300: mean 11.6 s, median 7.5 s, 268 within 20 s (89 %), none past 60 s (offer
    // retries at 1, 3, 7, 15 s make the steps). With offers waiting for our end: 13.1 s, 10 s,
    // 250 (83 %). Before the crossing winner answered a late crossing offer (issue 13), seeds
    // 1-500: mean 15.0 s, median 10.5 s, 379 within 20 s (76 %).
    const took: number[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      const sim = new MeshSim(seed);
      sim.loss = 0.3;
      const nodes = lan(sim, 5);
      for (const n of nodes) n.start();
      let t = 0;
      while (t < 60_000 && !allPairsTunneled(sim)) {
        sim.run(500);
        t += 500;
      }
      took.push(allPairsTunneled(sim) ? t : Infinity);
    }
    expect(took.filter((t) => t === Infinity)).toEqual([]);
    // 19 of these 20 (15 with offers waiting for our end); 89 % over 300 seeds, so 15 leaves
    // room for a reshuffle.
    expect(took.filter((t) => t <= 20_000).length).toBeGreaterThanOrEqual(15);
  }, 30_000);

  it('crossing offers end in one tunnel: the lower key wins', () => {
    const sim = new MeshSim(3);
    sim.delayMs = 50; // both offers are in flight at once
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(3000);
    expect(sim.tunneled(a!, b!)).toBe(true);
    const crossed = [...a!.events, ...b!.events].filter((e) => e.kind === 'event' && e.event === 'offer-crossed');
    expect(crossed.length).toBeGreaterThan(0);
    // The lower key's offer won: the lower node is the initiator of the tunnel that stands.
    const bytes = (n: typeof a) => Buffer.from(n!.key, 'base64');
    const [low, high] = Buffer.compare(bytes(a), bytes(b)) < 0 ? [a!, b!] : [b!, a!];
    expect(low.core.neighborList()[0]!.tunnel!.role).toBe('initiator');
    expect(high.core.neighborList()[0]!.tunnel!.role).toBe('responder');
  });

  it('the winner of a crossing sends its offer again at once when the loser offers, not at its next retry', () => {
    // The higher node's first offers are lost; it answers the lower one's offer, but its confirm
    // is lost and so are the lower node's retries. After 15 s without a handshake the higher node
    // offers again; the lower node wins that crossing: its own offer goes again at once (at most
    // once a second), and the tunnel stands before the lower node's next retry (23 s).
    const sim = new MeshSim(7);
    const [x, y] = lan(sim, 2);
    const bytes = (n: typeof x) => Buffer.from(n!.key, 'base64');
    const [low, high] = Buffer.compare(bytes(x), bytes(y)) < 0 ? [x!, y!] : [y!, x!];
    const start = sim.now;
    let offersFromLow = 0;
    sim.dropIf = (from, _to, type) => {
      const at = sim.now - start;
      if (from === high && type === 'scrooge_tunnel') return at < 5000;
      if (at >= 15_500) return false;
      if (from === high && type === 'scrooge_tunnel_confirm') return true;
      return from === low && type === 'scrooge_tunnel' && ++offersFromLow > 1;
    };
    low.start();
    high.start();
    let t = 0;
    while (!sim.tunneled(low, high) && t < 30_000) {
      sim.run(100);
      t += 100;
    }
    const again = low.events.filter((e) => e.kind === 'event' && e.event === 'tunnel-offer' && 'again' in e);
    expect(again.length).toBeGreaterThan(0);
    // The lower node's own retries come at 1, 3, 7, 15 and 23 s: the one at 23 s is not waited for.
    expect(t).toBeLessThan(19_000);
    expect(high.core.neighborList()[0]!.tunnel!.role).toBe('responder');
  });

  it('kill -9 and restart: the tunnel is rebuilt, never duplicated', () => {
    const sim = new MeshSim(5);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(2000);
    expect(sim.tunneled(a!, b!)).toBe(true);
    b!.stop(false); // interfaces stay, state in memory is lost
    sim.run(500);
    b!.start(); // without adoption the agent renegotiates
    sim.run(5000);
    expect(sim.tunneled(a!, b!)).toBe(true);
    expect(a!.tunnelCount()).toBe(1);
    expect(b!.tunnelCount()).toBe(1);
  });

  it('a stopped node: neighbors remove the tunnel after the dead interval and a dead tunnel', () => {
    const sim = new MeshSim(9);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(2000);
    b!.stop(true);
    sim.run(5000);
    expect(a!.tunnelCount()).toBe(1); // quiet: hellos stopped, tunnel still being judged
    expect(a!.core.neighborList()[0]!.state).toBe('quiet');
    sim.run(20_000);
    expect(a!.tunnelCount()).toBe(0);
    expect(neighborsOf(a!)).toEqual([]);
  });

  it('hellos lost but the tunnel alive: the neighbor is kept (quiet)', () => {
    const sim = new MeshSim(11);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(2000);
    sim.loss = 1; // multicast and control traffic lost; the WireGuard model still flows
    sim.run(60_000);
    expect(a!.core.neighborList()[0]!.state).toBe('quiet');
    expect(sim.tunneled(a!, b!)).toBe(true);
    sim.loss = 0;
    sim.run(2000);
    expect(a!.core.neighborList()[0]!.state).toBe('two-way');
  });

  it('a resent offer from a neighbor we have no path to (quiet) is answered, not a crash', () => {
    const sim = new MeshSim(23);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(2000);
    const responder = [a!, b!].find((n) => n.core.neighborList()[0]!.tunnel!.role === 'responder')!;
    const initiator = responder === a ? b! : a!;
    sim.loss = 1; // hellos stop; the tunnel (WireGuard model) lives: the responder sees a quiet neighbor
    sim.run(6000);
    expect(responder.core.neighborList()[0]).toMatchObject({ state: 'quiet', linkLocal: undefined });
    sim.loss = 0;
    const t = [...initiator.applied.values()][0]!;
    const offer = encodeMessage({
      type: 'scrooge_tunnel', publicKey: initiator.identity.publicKey, recipient: responder.identity.publicKey,
      tunnelKey: t.publicKey, endpoint: { address: initiator.ifaces[0]!.linkLocal, zone: 'eth0', port: t.listenPort },
      seq: 1n << 63n, // newer than anything the initiator sent
    }, initiator.identity.sign);
    const sent = responder.core.counters.sent.scrooge_tunnel_confirm;
    expect(() => sim.inject(responder, 'eth0', initiator.ifaces[0]!.linkLocal, offer.bytes)).not.toThrow();
    expect(responder.core.counters.sent.scrooge_tunnel_confirm).toBe(sent + 1);
  });

  it('re-keys after the configured period with new keys on both ends', () => {
    const sim = new MeshSim(13);
    const [a, b] = lan(sim, 2, { tunnels: { rekeyAfterMs: 30_000 } as never });
    a!.start();
    b!.start();
    sim.run(2000);
    const before = [...a!.applied.values()][0]!.publicKey;
    let down = 0;
    for (let i = 0; i < 400; i++) {
      sim.run(100);
      if (!sim.tunneled(a!, b!)) down += 100;
    }
    expect([...a!.applied.values()][0]!.publicKey).not.toEqual(before);
    expect(sim.tunneled(a!, b!)).toBe(true);
    expect(down).toBeLessThanOrEqual(500);
  });

  it('a node that signs with the wrong key gets no tunnel', () => {
    const sim = new MeshSim(17);
    const [a] = lan(sim, 1);
    a!.start();
    sim.run(1000);
    const liar = identityFromSeed(new Uint8Array(32).fill(5));
    const victim = identityFromSeed(new Uint8Array(32).fill(6));
    for (let i = 1; i < 20; i++) {
      const hello = encodeMessage({ type: 'scrooge_hello', publicKey: victim.publicKey, control: { address: 'fe80::99', zone: 'eth0', port: 51819 }, seq: BigInt(i) }, liar.sign);
      sim.inject(a!, 'eth0', 'fe80::99', hello.bytes);
      sim.run(100);
    }
    expect(neighborsOf(a!)).toEqual([]);
    expect(a!.tunnelCount()).toBe(0);
  });
});

describe('tunnel setup failures (the core owns the retry policy)', () => {
  it('a failed setup is due again after 1, 2, 4, 8, 8 s; a success resets the backoff', () => {
    const sim = new MeshSim(5);
    sim.applyDelayMs = 1e9; // the "kernel" never answers by itself: the test does
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(1500);
    const mine = () => a!.core.desiredTunnels(sim.now).find((d) => d.intent)!;
    const d0 = mine();
    expect(d0).toMatchObject({ applied: false, configured: false, due: true });
    const gaps: number[] = [];
    for (let i = 0; i < 5; i++) {
      const failedAt = sim.now;
      const events = a!.core.tunnelFailed(d0.ifname, mine().intent!.generation, { error: 'wireguard-go exited 1' }, failedAt);
      expect(events).toMatchObject([{ kind: 'event', event: 'tunnel-setup-failed', ifname: d0.ifname, error: 'wireguard-go exited 1' }]);
      let t = failedAt;
      while (!a!.core.desiredTunnels(t).find((d) => d.ifname === d0.ifname)!.due) t += 100;
      gaps.push(t - failedAt);
      sim.now = t;
    }
    expect(gaps).toEqual([1000, 2000, 4000, 8000, 8000]);
    a!.core.tunnelApplied(d0.ifname, mine().intent!.generation, sim.now);
    expect(mine()).toMatchObject({ applied: true, configured: true });
  });

  it('a busy port moves the tunnel to another port at once (a new generation, due now)', () => {
    const sim = new MeshSim(6);
    sim.applyDelayMs = 1e9;
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(1500);
    const before = a!.core.desiredTunnels(sim.now).find((d) => d.intent)!;
    a!.core.tunnelFailed(before.ifname, before.intent!.generation, { portBusy: true }, sim.now);
    const after = a!.core.desiredTunnels(sim.now).find((d) => d.ifname === before.ifname)!;
    expect(after.intent!.listenPort).not.toBe(before.intent!.listenPort);
    expect(after.intent!.generation).toBe(before.intent!.generation + 1);
    expect(after.due).toBe(true);
  });

  it('a port found busy after the offer named it is offered again with fresh keys: the neighbor gets the new port', () => {
    // Offers leave before our end binds its port (issue 13); a retry with the same key changes
    // nothing at the responder (PROTOCOL.md §6), so a moved port must come with a new offer.
    for (const initiatorFirstPortBusy of [true, false]) {
      const sim = new MeshSim(9);
      sim.applyDelayMs = 300; // our end is made after the offer has gone out
      const [a, b] = lan(sim, 2);
      const busy = new Set<string>();
      sim.portBusy = (node, port) => busy.has(`${node.name}/${port}`);
      a!.start();
      b!.start();
      sim.run(100);
      // The initiator, once its offer is out (and a crossing settled): its first port turns
      // out to be held by someone else.
      const tunnelOf = (n: SimNode) => n.core.neighborList()[0]?.tunnel;
      let offerer: SimNode | undefined;
      for (let i = 0; i < 50 && !offerer; i++) {
        sim.run(20);
        offerer = [a!, b!].find((n) => tunnelOf(n)?.role === 'initiator' && tunnelOf(n)?.phase === 'offering' && n.events.some((e) => e.kind === 'event' && e.event === 'tunnel-offer'));
      }
      expect(offerer).toBeDefined();
      const first = offerer!.core.desiredTunnels(sim.now).find((d) => d.intent)!.intent!;
      expect(offerer!.applied.has(first.ifname)).toBe(false);
      if (initiatorFirstPortBusy) busy.add(`${offerer!.name}/${first.listenPort}`);
      sim.run(10_000);
      expect(sim.tunneled(a!, b!)).toBe(true);
      const other = offerer === a ? b! : a!;
      const mine = [...offerer!.applied.values()][0]!;
      const theirs = [...other.applied.values()][0]!;
      // The neighbor holds the port our end really listens on.
      expect(theirs.peer!.endpoint.port).toBe(mine.listenPort);
      expect(mine.peer!.endpoint.port).toBe(theirs.listenPort);
      const renegotiated = offerer!.events.filter((e) => e.kind === 'event' && e.event === 'tunnel-renegotiate');
      if (initiatorFirstPortBusy) {
        expect(mine.listenPort).not.toBe(first.listenPort);
        expect(renegotiated).toMatchObject([{ reason: 'port-moved' }]);
        expect(toBase64(mine.publicKey)).not.toBe(toBase64(first.publicKey));
      } else {
        expect(renegotiated).toEqual([]);
      }
    }
  });

  it('an answer that comes while our end is still being made moves no port (lan-5, slow setups)', () => {
    // The early offer's answer can arrive before our own end is set up: that setup binds our
    // port under an older generation, and the port is ours, not a busy one (the netns lan-5
    // test caught the move this made, and the renegotiation after it).
    const sim = new MeshSim(10);
    const nodes = lan(sim, 5);
    sim.applyDelayOf = (node) => 100 + 300 * nodes.indexOf(node); // 0.1 s to 1.3 s
    for (const n of nodes) n.start();
    sim.run(15_000);
    expect(allPairsTunneled(sim)).toBe(true);
    for (const n of nodes) {
      expect(n.events.filter((e) => e.kind === 'event' && e.event === 'tunnel-renegotiate')).toEqual([]);
      expect([...n.applied.values()].map((t) => t.listenPort).sort()).toEqual([51820, 51821, 51822, 51823]);
    }
  });

  it('a neighbor that leaves takes its failed tunnel, and its retry, with it', () => {
    const sim = new MeshSim(7);
    sim.applyDelayMs = 1e9;
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(1500);
    const d = a!.core.desiredTunnels(sim.now).find((x) => x.intent)!;
    a!.core.tunnelFailed(d.ifname, d.intent!.generation, { error: 'x' }, sim.now);
    b!.stop(true);
    sim.run(10_000);
    expect(neighborsOf(a!)).toEqual([]);
    expect(a!.core.desiredTunnels(sim.now)).toEqual([]);
  });

  it('neighbors proved two-way get an interface made ahead, at most MAX_PREPARED_TUNNELS', () => {
    const sim = new MeshSim(8);
    const nodes = lan(sim, 20, { tunnels: { enabled: true, portMin: 51820, portMax: 51820 } as never }); // one port: one tunnel
    for (const n of nodes) n.start();
    sim.run(3000);
    const desired = nodes[0]!.core.desiredTunnels(sim.now);
    const ahead = desired.filter((d) => !d.intent);
    expect(desired.filter((d) => d.intent)).toHaveLength(1);
    expect(ahead.length).toBe(16);
    expect(new Set(desired.map((d) => d.ifname)).size).toBe(desired.length);
  }, 30_000);
});
