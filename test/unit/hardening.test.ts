// Issue 12, parts 1 and 2, in the simulated mesh (the real-packet proofs are in
// test/netns/hardening.test.ts): a message that names an address it did not come from gets no
// answer (no reflection), and strangers that never prove themselves cannot lock real neighbors
// out of a full table.
import { describe, expect, it } from 'vitest';
import { MAX_STRANGERS } from '../../src/config/tunables.js';
import { encodeMessage, identityFromSeed, type Identity } from '../../src/protocol/index.js';
import { x25519PublicKey } from '../../src/protocol/crypto.js';
import { lan, MeshSim } from './meshsim.js';

const stranger = (n: number): Identity => identityFromSeed(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0x5a : i === 1 ? n >> 8 : i === 2 ? n & 255 : 3)));

function hello(id: Identity, address: string, seq: bigint, port = 51819): Uint8Array {
  return encodeMessage({ type: 'scrooge_hello', publicKey: id.publicKey, control: { address, port }, seq }, id.sign).bytes;
}

describe('reflection: a node answers only the address a message came from', () => {
  it("a stranger's hello naming another node's address (or ours, or one off the link) gets no confirm", () => {
    const sim = new MeshSim(11);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(2000);
    const evil = stranger(1);
    const sentBefore = sim.wire.length;
    let seq = 1n;
    for (const target of ['fe80::2', 'fe80::1', 'fe80::99']) {
      // Sent from fe80::66 (the stranger's own address), naming the target as its control address.
      sim.inject(a!, 'eth0', 'fe80::66', hello(evil, target, seq++));
    }
    sim.run(10);
    expect(a!.core.counters.dropped['address-mismatch']).toBe(3);
    const answers = sim.wire.slice(sentBefore).filter((w) => w.from === a && w.to !== 'ff02::114');
    expect(answers).toEqual([]);
    expect(a!.core.neighborList().map((n) => n.key)).toEqual([b!.key]);
  });

  it('a hello sent directly from a new port updates the control address (the seed\'s rule still works)', () => {
    const sim = new MeshSim(12);
    const [a] = lan(sim, 1);
    a!.start();
    sim.run(500);
    const other = stranger(2);
    sim.inject(a!, 'eth0', 'fe80::77', hello(other, 'fe80::77', 1n));
    sim.inject(a!, 'eth0', 'fe80::77', hello(other, 'fe80::77', 2n, 40000));
    sim.run(10);
    const confirms = sim.wire.filter((w) => w.from === a && w.to === 'fe80::77');
    expect(confirms).toHaveLength(2);
    expect(a!.core.neighborList().find((n) => n.linkLocal === 'fe80::77')!.control).toMatchObject({ address: 'fe80::77', port: 40000 });
  });

  it('an offer naming a tunnel endpoint that is not its source is dropped: no WireGuard peer aimed elsewhere', () => {
    const sim = new MeshSim(13);
    sim.applyDelayMs = 1e9; // nothing of ours gets configured: only the offer's fate matters
    const [a] = lan(sim, 1);
    a!.start();
    sim.run(500);
    const other = stranger(3);
    sim.inject(a!, 'eth0', 'fe80::88', encodeMessage({ type: 'scrooge_hello_confirm', publicKey: other.publicKey, recipient: a!.identity.publicKey, control: { address: 'fe80::88', port: 51819 }, seq: 1n }, other.sign).bytes);
    const offer = (address: string, seq: bigint) => encodeMessage({
      type: 'scrooge_tunnel', publicKey: other.publicKey, recipient: a!.identity.publicKey, tunnelKey: x25519PublicKey(new Uint8Array(32).fill(4)),
      endpoint: { address, port: 51900 }, seq,
    }, other.sign).bytes;
    sim.inject(a!, 'eth0', 'fe80::88', offer('fe80::2', 2n));
    expect(a!.core.counters.dropped['address-mismatch']).toBe(1);
    const responder = a!.core.desiredTunnels(sim.now).find((d) => d.intent?.peer);
    expect(responder).toBeUndefined();
    sim.inject(a!, 'eth0', 'fe80::88', offer('fe80::88', 3n));
    expect(a!.core.desiredTunnels(sim.now).find((d) => d.intent?.peer)?.intent?.peer?.endpoint).toMatchObject({ address: 'fe80::88', port: 51900 });
  });
});

describe('lock-out: strangers give their places up; proven neighbors keep theirs', () => {
  it('500 fresh keys hello at A while a new node arrives: it gets its tunnel, the table never exceeds its bound', () => {
    const sim = new MeshSim(14);
    const maxNeighbors = 40;
    const nodes = lan(sim, 4, { maxNeighbors });
    const [a, b, c, late] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0], typeof nodes[0]];
    for (const n of [a, b, c]) n!.start();
    sim.run(3000);
    const proven = [b!.key, c!.key];
    const pool = Array.from({ length: 500 }, (_, i) => ({ id: stranger(100 + i), address: `fe80::1:${(i + 1).toString(16)}` }));
    let maxSize = 0;
    let seq = 1n;
    let lateStarted = -1;
    for (let round = 0; round < 100; round++) {
      // 500 strangers, each one hello a second, spread over the second (5 every 10 ms).
      for (let i = 0; i < 5; i++) {
        const s = pool[(round * 5 + i) % pool.length]!;
        sim.inject(a!, 'eth0', s.address, hello(s.id, s.address, seq++));
      }
      if (round === 30) {
        late!.start();
        lateStarted = sim.now;
      }
      sim.run(10);
      const size = a!.core.neighborList().length;
      maxSize = Math.max(maxSize, size);
      for (const k of proven) expect(a!.core.neighborList().some((n) => n.key === k), `proven neighbor ${k.slice(0, 8)} kept`).toBe(true);
    }
    for (let i = 0; i < 400 && !sim.tunneled(a!, late!); i++) {
      const s = pool[i % pool.length]!;
      sim.inject(a!, 'eth0', s.address, hello(s.id, s.address, seq++));
      sim.run(10);
      maxSize = Math.max(maxSize, a!.core.neighborList().length);
    }
    expect(sim.tunneled(a!, late!)).toBe(true);
    expect(sim.now - lateStarted).toBeLessThan(5000);
    expect(maxSize).toBeLessThanOrEqual(maxNeighbors);
    expect(a!.core.neighborList().filter((n) => n.state === 'heard').length).toBeLessThanOrEqual(MAX_STRANGERS);
    expect(a!.core.counters.evicted).toBeGreaterThan(100);
    expect(a!.core.counters.dropped['table-full'] ?? 0).toBe(0);
  }, 60_000);

  it('a table full of proven neighbors refuses newcomers (table-full) and evicts none of them', () => {
    const sim = new MeshSim(15);
    const nodes = lan(sim, 4, { maxNeighbors: 2, tunnels: { enabled: false } as never });
    for (const n of nodes.slice(0, 3)) n.start();
    sim.run(3000);
    const known = nodes[0]!.core.neighborList().map((n) => n.key).sort();
    expect(known).toHaveLength(2);
    nodes[3]!.start();
    sim.run(3000);
    expect(nodes[0]!.core.neighborList().map((n) => n.key).sort()).toEqual(known);
    expect(nodes[0]!.core.counters.dropped['table-full']).toBeGreaterThan(0);
    expect(nodes[0]!.core.counters.evicted).toBe(0);
  });
});
