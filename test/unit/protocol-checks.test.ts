// PROTOCOL.md §1 and §7 as the receiver applies them: which counter a datagram gets, and that
// the checks run in the documented order (a cheap check answers before an expensive one).
import { readFileSync } from 'node:fs';
import { x25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { Admission, DEFAULT_LIMITS, type AdmissionLimits } from '../../src/neighbors/admission.js';
import { DEFAULT_CORE_OPTIONS } from '../../src/neighbors/core.js';
import { ReplayMemory } from '../../src/neighbors/replay.js';
import { decodeMessage, encodeMessage, identityFromSeed, isStrictPublicKey, toBase64, Verifier, type Message } from '../../src/protocol/index.js';
import { lan, MeshSim } from './meshsim.js';

const A = identityFromSeed(new Uint8Array(32).fill(1)); // the receiver
const S = identityFromSeed(new Uint8Array(32).fill(5)); // a stranger with a real key

function le(n: bigint): Uint8Array {
  return Uint8Array.from(Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse());
}
const P = (1n << 255n) - 19n;
/** Keys that match base64-32 but are not strict ed25519 keys (RFC 8032 §5.1.7, PROTOCOL.md §4). */
const WEAK_KEYS: [string, Uint8Array][] = [
  ['the neutral point (order 1)', le(1n)],
  ['the point of order 2 (y = -1)', le(P - 1n)],
  ['a point of order 4 (y = 0)', le(0n)],
  ['y = p: a non-canonical encoding', le(P)],
  ['y = 2: not on the curve', le(2n)],
];

function helloFrom(publicKey: Uint8Array, seq: bigint, sign = S.sign): Uint8Array {
  return encodeMessage({ type: 'scrooge_hello', publicKey, control: { address: 'fe80::5', zone: 'eth0', port: 51819 }, seq }, sign).bytes;
}

function admission(limits?: Partial<AdmissionLimits>) {
  const replay = new ReplayMemory();
  const open = { rate: 1000, burst: 1000 };
  const gate = new Admission(
    { ownKey: A.publicKey, replay, verifier: new Verifier(), table: { knownSource: () => undefined, isFull: () => false } },
    { neighbor: open, source: open, strangers: open, ...limits },
  );
  return { gate, replay };
}

describe('§7: a sender key that is not a strict ed25519 key is bad-public-key, not bad-signature', () => {
  it.each(WEAK_KEYS)('%s', (_what, weak) => {
    expect(isStrictPublicKey(weak)).toBe(false);
    const { gate, replay } = admission();
    // A "signature" with R = the neutral point and S = 0 verifies under small-order keys with
    // the permissive (ZIP-215) rules; it must not matter which signature comes with the key.
    const zero = new Uint8Array(64);
    zero[0] = 1;
    for (const sign of [() => zero, S.sign]) {
      const r = gate.admit(helloFrom(weak, 1n, sign), { address: 'fe80::5', iface: 'eth0' }, 0);
      expect(r.ok ? 'ok' : r.reason).toBe('bad-public-key');
    }
    expect(replay.size, 'nothing recorded').toBe(0);
  });

  it('a strict key with a wrong signature is still bad-signature', () => {
    const { gate } = admission();
    const r = gate.admit(helloFrom(S.publicKey, 1n, A.sign), { address: 'fe80::5', iface: 'eth0' }, 0);
    expect(r.ok ? 'ok' : r.reason).toBe('bad-signature');
  });

  it('the key check comes after the budgets (it costs a point decompression)', () => {
    const { gate } = admission({ strangers: { rate: 1, burst: 1 } });
    const weak = WEAK_KEYS[0]![1];
    const reasons = [1n, 2n, 3n].map((seq) => {
      const r = gate.admit(helloFrom(weak, seq), { address: 'fe80::5', iface: `eth${seq}` }, 0);
      return r.ok ? 'ok' : r.reason;
    });
    expect(reasons).toEqual(['bad-public-key', 'rate-limited', 'rate-limited']);
  });

  it('and after replay: a stale seq from a known sender is stale-seq, whatever its key', () => {
    const { gate, replay } = admission();
    replay.accept(toBase64(S.publicKey), 10n);
    const r = gate.admit(helloFrom(S.publicKey, 10n), { address: 'fe80::5', iface: 'eth0' }, 0);
    expect(r.ok ? 'ok' : r.reason).toBe('stale-seq');
  });
});

function snapshot(n: { core: { neighborList(): unknown; desiredTunnels(now: number): unknown } }): string {
  return JSON.stringify({ n: n.core.neighborList(), t: n.core.desiredTunnels(0) }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

describe('§1: the source comes first', () => {
  function setup() {
    const sim = new MeshSim(3);
    const [a, b] = lan(sim, 2);
    a!.start();
    b!.start();
    sim.run(2000);
    expect(sim.tunneled(a!, b!)).toBe(true);
    const hello = sim.wire.filter((w) => w.from === b && w.to.startsWith('ff02')).at(-1)!.bytes;
    return { sim, a: a!, b: b!, hello };
  }

  it.each([
    ['a global source', '2001:db8::2', 'eth0' as string | undefined, 'not-link-local'],
    ['a ULA source', 'fd00::2', 'eth0', 'not-link-local'],
    ['a source the kernel gave no interface', 'fe80::2', undefined, 'not-link-local'],
    ['a link-local source on a non-mesh interface', 'fe80::2', 'uplink0', 'wrong-interface'],
  ])('%s: %s', (_what, address, iface, reason) => {
    const { sim, a, hello } = setup();
    const before = snapshot(a);
    // Even a datagram that fails every later check is counted by its source.
    for (const bytes of [hello, new Uint8Array(5000), new Uint8Array([0])]) a.core.receive(bytes, { address, iface }, sim.now);
    expect(a.core.counters.dropped[reason as 'not-link-local']).toBe(3);
    expect(a.core.counters.dropped.oversized ?? 0).toBe(0);
    expect(snapshot(a)).toBe(before);
  });

  it('fe80::/10 is link-local all through (febf::), and such a datagram goes on to the later checks', () => {
    const { sim, a, b } = setup();
    // b's latest hello no newer than the last message of b's that a verified (a skips the
    // hellos that bring nothing new, §6, so the very latest may be unseen and still fresh).
    const lastSeq = a.core.neighborList().find((n) => n.key === b.key)!.lastSeq!;
    const hello = sim.wire.filter((w) => w.from === b && w.to.startsWith('ff02')).map((w) => w.bytes).findLast((bytes) => {
      const d = decodeMessage(bytes);
      return d.ok && d.message.seq <= lastSeq;
    })!;
    a.core.receive(hello, { address: 'febf::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.dropped['not-link-local'] ?? 0).toBe(0);
    // The next check it meets: the hello names fe80::2, not the febf::2 it came from.
    expect(a.core.counters.dropped['address-mismatch']).toBe(1);
    a.core.receive(hello, { address: 'fe80::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.dropped['stale-seq']).toBe(1); // no newer than what a accepted from b
  });

  it('§6/§7: a signed, fresh confirm with no offer outstanding is unexpected-confirm, counted after the signature', () => {
    const { sim, a, b } = setup();
    const lastSeq = a.core.neighborList().find((n) => n.key === b.key)!.lastSeq!;
    const tunnelsBefore = JSON.stringify(a.core.desiredTunnels(sim.now));
    const confirm = (seq: bigint, sign: (d: Uint8Array) => Uint8Array): Uint8Array => encodeMessage({
      type: 'scrooge_tunnel_confirm', publicKey: b.identity.publicKey, recipient: a.identity.publicKey,
      tunnelKey: x25519.getPublicKey(new Uint8Array(32).fill(9)), endpoint: { address: 'fe80::2', port: 51999 }, seq,
    } satisfies Message, sign).bytes;
    // Forged (signed by someone else): the signature check answers first.
    a.core.receive(confirm(lastSeq + 100n, S.sign), { address: 'fe80::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.dropped['bad-signature']).toBe(1);
    expect(a.core.counters.dropped['unexpected-confirm'] ?? 0).toBe(0);
    // Signed by b: passes §7, is recorded, and only then found unexpected.
    a.core.receive(confirm(lastSeq + 100n, b.identity.sign), { address: 'fe80::2', iface: 'eth0' }, sim.now);
    expect(a.core.counters.dropped['unexpected-confirm']).toBe(1);
    expect(a.core.neighborList().find((n) => n.key === b.key)!.lastSeq).toBe(lastSeq + 100n);
    expect(JSON.stringify(a.core.desiredTunnels(sim.now))).toBe(tunnelsBefore);
  });
});

describe("PROTOCOL.md's numbers are the code's defaults", () => {
  const doc = readFileSync(new URL('../../PROTOCOL.md', import.meta.url), 'utf8');
  const row = (first: string) => {
    const line = doc.split('\n').find((l) => l.startsWith(`| ${first} |`));
    if (!line) throw new Error(`PROTOCOL.md has no "| ${first} |" row`);
    return line.split('|').slice(2, -1).map((c) => c.trim());
  };
  const bucket = (cells: string[]) => ({ rate: Number(cells[0]!.replace('/s', '')), burst: Number(cells[1]) });

  it('§7 budgets and the neighbor table bound', () => {
    expect(bucket(row('known neighbor'))).toEqual(DEFAULT_LIMITS.neighbor);
    expect(bucket(row('stranger, per source'))).toEqual(DEFAULT_LIMITS.source);
    expect(bucket(row('strangers, all together'))).toEqual(DEFAULT_LIMITS.strangers);
    expect(row('neighbor table')[0]).toBe(`${DEFAULT_CORE_OPTIONS.maxNeighbors} (\`discovery.maxNeighbors\`)`);
  });

  it('§6 tunnel parameters', () => {
    const t = DEFAULT_CORE_OPTIONS.tunnels;
    expect(row('persistent keepalive')[0]).toBe(`**${t.keepaliveSeconds} s**`);
    expect(row('tunnel dead interval')[0]).toBe(`**${t.deadAfterMs / 1000} s** (3 × keepalive + 1 s)`);
    expect(t.deadAfterMs).toBe(3 * t.keepaliveSeconds * 1000 + 1000);
    expect(row('MTU')[0]).toBe(`**${t.mtu}**`);
  });
});
