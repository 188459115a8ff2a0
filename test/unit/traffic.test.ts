import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TrafficControl } from '../../src/system/traffic.js';
import { CLASS_SOLD, MIN_RATE, neighborClasses, planTraffic, type TrafficInput, type TunnelInput } from '../../src/traffic/plan.js';
import { iptablesRestore, nftRuleset } from '../../src/traffic/rules.js';
import { FakeKernel, kernelRunner } from './fakekernel.js';

const KEYS = ['AAAA', 'BBBB', 'CCCC', 'DDDD', 'EEEE', 'FFFF'].map((k) => `${k}${'x'.repeat(39)}=`);
/** A tunnel over eth0 (100 Mbit/s) is shaped to 95 % of its payload part: 1420 of every 1514 bytes. */
const TUNNEL_RATE = (0.95 * 100e6 * 1420) / 1514;
const IF = (i: number) => `sc${'0123456789abc'.slice(0, 12)}${i}`;

function tunnel(i: number, priority = 1, cap?: number): TunnelInput {
  return { ifname: IF(i), neighbor: KEYS[i]!, meshIface: 'eth0', priority, cap };
}

function base(tunnels: TunnelInput[], share = 0.5): Omit<TrafficInput, 'leaf'> {
  return { share, meshInterfaces: [{ name: 'eth0', rate: 100e6 }], uplinks: [{ name: 'eth1', rate: 20e6 }], tunnels };
}

async function newControl(kernel: FakeKernel, opts: { fqCodel?: boolean } = {}) {
  const run = kernelRunner(kernel, opts);
  const tc = new TrafficControl({ run, deviceIndex: async (d) => kernel.ifindex(d) }, { backend: 'auto' });
  await tc.start();
  return { tc, run };
}

function kernelFor(n: number): FakeKernel {
  return new FakeKernel(new Set(['eth0', 'eth1', ...Array.from({ length: n }, (_, i) => IF(i))]));
}

describe('traffic planner', () => {
  it('neighbor classes depend on the set of keys, not their order', () => {
    const a = neighborClasses(KEYS);
    const b = neighborClasses([...KEYS].reverse());
    expect([...a].sort()).toEqual([...b].sort());
    expect(new Set(a.values()).size).toBe(KEYS.length);
  });

  it('rates follow priority, ceilings follow caps and the share', () => {
    const plan = planTraffic({ ...base([tunnel(0, 3), tunnel(1, 1), tunnel(2, 1, 2e6)]), leaf: 'none' });
    const up = plan.trees.find((t) => t.dev === 'eth1')!;
    const byKey = (i: number) => up.classes.find((c) => c.classid === plan.classOf.get(KEYS[i]!))!;
    const sold = up.classes.find((c) => c.classid === CLASS_SOLD)!;
    expect(sold.rate).toBe(10e6);
    expect(sold.ceil).toBe(10e6);
    expect(byKey(0).rate / byKey(1).rate).toBeCloseTo(3, 5);
    expect(byKey(0).ceil).toBe(10e6);
    expect(byKey(2).ceil).toBe(2e6);
    expect(byKey(2).rate).toBeLessThanOrEqual(2e6);
    const children = up.classes.filter((c) => c.parent === CLASS_SOLD);
    expect(children.reduce((s, c) => s + c.rate, 0)).toBeLessThanOrEqual(sold.rate + MIN_RATE);
    // Own traffic may use the whole uplink.
    expect(up.classes.find((c) => c.classid === '5c:10')!.ceil).toBe(20e6);
    // Traffic sold to a capped neighbor over its tunnel is capped too: its class there.
    const t2 = plan.trees.find((t) => t.dev === IF(2))!;
    expect(t2.classes.find((c) => c.classid === plan.classOf.get(KEYS[2]!))).toMatchObject({ ceil: 2e6 });
    expect(t2.classes.find((c) => c.classid === CLASS_SOLD)).toMatchObject({ rate: Math.round(TUNNEL_RATE / 2), ceil: Math.round(TUNNEL_RATE / 2) });
    expect(t2.classes.find((c) => c.classid === '5c:1')).toMatchObject({ rate: Math.round(TUNNEL_RATE) });
    // Routing off: a tunnel's tree holds only its own neighbor's class (nothing is relayed).
    for (const i of [0, 1, 2]) {
      const sold = plan.trees.find((t) => t.dev === IF(i))!.classes.filter((c) => c.parent === CLASS_SOLD && c.classid !== '5c:21');
      expect(sold.map((c) => c.classid)).toEqual([plan.classOf.get(KEYS[i]!)]);
    }
  });

  it('a relay: the tunnel to N shares its sold class among all neighbors by priority, caps hold there too', () => {
    const input = { ...base([tunnel(0, 3), tunnel(1, 1), tunnel(2, 1, 2e6)]), relay: true, leaf: 'none' as const };
    const plan = planTraffic(input);
    const t2 = plan.trees.find((t) => t.dev === IF(2))!;
    const cls = (i: number) => t2.classes.find((c) => c.classid === plan.classOf.get(KEYS[i]!))!;
    // What 0 and 1 send on through 2 splits 3:1 when both are busy; 2's own is capped.
    expect(cls(0).rate / cls(1).rate).toBeCloseTo(3, 5);
    expect(cls(0).ceil).toBe(Math.round(TUNNEL_RATE / 2));
    expect(cls(2).ceil).toBe(2e6);
    const children = t2.classes.filter((c) => c.parent === CLASS_SOLD);
    expect(children.reduce((s, c) => s + c.rate, 0)).toBeLessThanOrEqual(TUNNEL_RATE / 2 + MIN_RATE);
    // Classified by the tunnel a packet came in on (a later rule wins), in both backends.
    const nft = nftRuleset(input, plan);
    const sendTo = nft.indexOf('forward oifname @tunnels meta priority set oifname map @neighbor_class');
    const relayed = nft.indexOf('forward oifname @tunnels iifname @tunnels meta priority set iifname map @neighbor_class');
    expect(sendTo).toBeGreaterThan(0);
    expect(relayed).toBeGreaterThan(sendTo);
    expect(nftRuleset({ ...input, relay: false }, plan)).not.toContain('oifname @tunnels iifname @tunnels');
    const ipt = iptablesRestore(input, plan);
    const to2 = ipt.indexOf(`-A SCROOGE-CLASS -o ${IF(2)} -j CLASSIFY --set-class ${plan.classOf.get(KEYS[2]!)}`);
    const from0 = ipt.indexOf(`-A SCROOGE-CLASS -i ${IF(0)} -o sc+ -j CLASSIFY --set-class ${plan.classOf.get(KEYS[0]!)}`);
    expect(to2).toBeGreaterThan(0);
    expect(from0).toBeGreaterThan(to2);
    expect(iptablesRestore({ ...input, relay: false }, plan)).not.toContain('-o sc+');
  });

  it('the filter drops untunneled forwarding and classifies by input tunnel (nft and iptables)', () => {
    const input = { ...base([tunnel(0, 3), tunnel(1)]), leaf: 'none' as const };
    const plan = planTraffic(input);
    const nft = nftRuleset(input, plan);
    expect(nft).toContain('iifname @mesh counter name "untunneled" drop');
    expect(nft).toContain(`"${IF(0)}" : ${plan.classOf.get(KEYS[0]!)}`);
    expect(nft).toContain('add element inet scrooge mesh { "eth0" }');
    // After the first apply the table is kept (flushed and refilled), so its counter keeps counting.
    const later = nftRuleset(input, plan, false);
    expect(later).not.toContain('delete table');
    expect(later).toContain('flush chain inet scrooge forward');
    const ipt = iptablesRestore(input, plan);
    expect(ipt).toContain('-A SCROOGE-FWD -i eth0 -j DROP');
    expect(ipt).toContain(`-A SCROOGE-CLASS -i ${IF(1)} -o eth1 -j CLASSIFY --set-class ${plan.classOf.get(KEYS[1]!)}`);
    // Forwarding from other interfaces (the owner's LAN) to an uplink is left in the default
    // (own) class: no rule for it in either backend.
    expect(ipt).not.toContain('5c:21');
    expect(nft).not.toContain('5c:21');
  });
});

describe('applying plans (stateful fake kernel)', () => {
  it('the same input twice changes nothing the second time', async () => {
    const kernel = kernelFor(3);
    const { tc, run } = await newControl(kernel);
    const input = base([tunnel(0, 3), tunnel(1), tunnel(2, 1, 1e6)]);
    const first = await tc.apply(input);
    expect(first.filterChanged).toBe(true);
    expect(first.tcCommands).toBeGreaterThan(0);
    const before = run.calls.length;
    const second = await tc.apply(input);
    expect(second).toMatchObject({ filterChanged: false, tcCommands: 0 });
    expect(run.calls.length).toBe(before);
  });

  it('falls back to pfifo leaves where fq_codel is missing, and uses fq_codel where it is there', async () => {
    const without = kernelFor(1);
    await (await newControl(without)).tc.apply(base([tunnel(0)]));
    expect(without.render()).not.toContain('fq_codel');
    expect(without.render()).toContain('5c:10 parent 5c:1');
    const withIt = kernelFor(1);
    await (await newControl(withIt, { fqCodel: true })).tc.apply(base([tunnel(0)]));
    expect(withIt.render()).toContain('leaf fq_codel');
  });

  it('a priority change touches only the neighbor classes whose numbers moved', async () => {
    const kernel = kernelFor(3);
    const { tc } = await newControl(kernel);
    await tc.apply(base([tunnel(0), tunnel(1), tunnel(2, 1, 1e6)]));
    const mark = kernel.tcLog.length;
    await tc.apply(base([tunnel(0, 3), tunnel(1), tunnel(2, 1, 1e6)]));
    const lines = kernel.tcLog.slice(mark);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => l.startsWith('class change dev eth1 '))).toBe(true);
    // Neighbor 2 is held at its cap: its class does not move.
    const plan = planTraffic({ ...base([tunnel(0, 3), tunnel(1), tunnel(2, 1, 1e6)]), leaf: 'none' });
    expect(lines.some((l) => l.includes(`classid ${plan.classOf.get(KEYS[2]!)} `))).toBe(false);
  });

  it('any order of changes reaches the same kernel state as building the final input directly', async () => {
    type Change = { kind: 'add' | 'remove' | 'priority' | 'cap'; i: number; value: number } | { kind: 'share'; value: number };
    const change: fc.Arbitrary<Change> = fc.oneof(
      fc.record({ kind: fc.constantFrom('add' as const, 'remove' as const, 'priority' as const, 'cap' as const), i: fc.integer({ min: 0, max: 5 }), value: fc.integer({ min: 1, max: 9 }) }),
      fc.record({ kind: fc.constant('share' as const), value: fc.integer({ min: 1, max: 10 }) }),
    );
    await fc.assert(fc.asyncProperty(fc.array(change, { minLength: 1, maxLength: 25 }), async (changes) => {
      const kernel = kernelFor(6);
      const { tc } = await newControl(kernel);
      const tunnels = new Map<number, TunnelInput>();
      let share = 0.5;
      for (const c of changes) {
        if (c.kind === 'share') share = c.value / 10;
        else if (c.kind === 'add') tunnels.set(c.i, tunnels.get(c.i) ?? tunnel(c.i));
        else if (c.kind === 'remove') {
          tunnels.delete(c.i);
          kernel.qdiscs.delete(IF(c.i)); // the interface (and its qdisc) goes with the tunnel
        } else if (tunnels.has(c.i)) {
          const t = tunnels.get(c.i)!;
          tunnels.set(c.i, c.kind === 'priority' ? { ...t, priority: c.value } : { ...t, cap: c.value % 3 === 0 ? undefined : c.value * 1e6 });
        }
        await tc.apply(base([...tunnels.values()], share));
      }
      const fresh = kernelFor(6);
      const direct = await newControl(fresh);
      await direct.tc.apply(base([...tunnels.values()], share));
      // Interfaces of removed tunnels are gone in the incremental kernel; compare what exists.
      for (const [i] of [0, 1, 2, 3, 4, 5].entries()) if (!tunnels.has(i)) fresh.qdiscs.delete(IF(i));
      expect(kernel.render()).toBe(fresh.render());
    }), { numRuns: 150 });
  });

  it('after the first apply the table is kept: its drop counter survives tunnel changes', async () => {
    const kernel = kernelFor(2);
    const { tc } = await newControl(kernel);
    await tc.apply(base([tunnel(0)]));
    kernel.nftTable!.counter = 42; // packets dropped meanwhile
    await tc.apply(base([tunnel(0), tunnel(1)]));
    expect(kernel.nftTable!.counter).toBe(42);
    expect(kernel.render()).toContain(`nft tunnels: "${IF(0)}", "${IF(1)}"`);
  });

  it('a tunnel interface that is re-created gets its tree again', async () => {
    const kernel = kernelFor(1);
    const { tc } = await newControl(kernel);
    const input = base([tunnel(0, 1, 2e6)]);
    await tc.apply(input);
    const before = kernel.render();
    kernel.recreate(IF(0));
    expect(kernel.render()).not.toBe(before);
    const r = await tc.apply(input); // same input: only the kernel changed
    expect(r.tcCommands).toBeGreaterThan(0);
    expect(kernel.render()).toBe(before);
  });

  it('an uplink that appears later with someone else\'s root qdisc is left alone', async () => {
    const kernel = kernelFor(1);
    kernel.devices.delete('eth1');
    const { tc } = await newControl(kernel);
    await tc.apply(base([tunnel(0)]));
    kernel.devices.add('eth1');
    kernel.recreate('eth1');
    kernel.qdiscs.set('eth1', { kind: 'htb', handle: '1:', classes: new Map(), leaves: new Map() });
    await tc.apply(base([tunnel(0)]));
    expect(kernel.qdiscs.get('eth1')!.handle).toBe('1:');
  });

  it('stop removes exactly its own: the table and its root qdiscs', async () => {
    const kernel = kernelFor(1);
    const { tc } = await newControl(kernel);
    await tc.apply(base([tunnel(0)]));
    expect(kernel.qdiscs.size).toBe(2);
    await tc.stop();
    expect(kernel.qdiscs.size).toBe(0);
    expect(kernel.nftTable).toBeUndefined();
  });

  it('leaves an uplink with someone else\'s root qdisc alone', async () => {
    const kernel = kernelFor(1);
    kernel.qdiscs.set('eth1', { kind: 'htb', handle: '1:', classes: new Map(), leaves: new Map() });
    const { tc } = await newControl(kernel);
    await tc.apply(base([tunnel(0)]));
    expect(kernel.qdiscs.get('eth1')!.handle).toBe('1:');
    await tc.stop();
    expect(kernel.qdiscs.get('eth1')!.handle).toBe('1:');
  });
});

describe('the discovery guard (issue 12 part 3)', () => {
  const guard = { port: 51819, known: [{ address: 'fe80::b', iface: 'eth0' }, { address: 'fe80::a', iface: 'eth0' }, { address: 'fe80::a', iface: 'eth0' }] };
  const input: TrafficInput = { ...base([tunnel(0)]), discovery: guard, leaf: 'none' };
  const plan = planTraffic(input);

  it('nft: proven sources pass, strangers get per-source and shared budgets, drops counted', () => {
    const text = nftRuleset(input, plan);
    expect(text).toContain('add element inet scrooge known_sources { fe80::a . "eth0", fe80::b . "eth0" }');
    expect(text).toContain('add rule inet scrooge input udp dport 51819 ip6 saddr . iifname @known_sources accept');
    expect(text).toMatch(/input udp dport 51819 update @stranger_sources \{ ip6 saddr limit rate over 20\/second burst 20 packets \} counter name "discovery_dropped" drop/);
    expect(text).toMatch(/input udp dport 51819 limit rate over 400\/second burst 400 packets counter name "discovery_dropped" drop/);
    // Incremental: the known set is flushed and refilled; the per-source buckets are kept.
    const later = nftRuleset(input, plan, false);
    expect(later).toContain('flush set inet scrooge known_sources');
    expect(later).not.toContain('flush set inet scrooge stranger_sources');
    const k = new FakeKernel(new Set(['eth0', 'eth1', IF(0)]));
    k.nft(text);
    k.nft(later);
    expect(k.render()).toContain('nft known_sources: fe80::a . "eth0", fe80::b . "eth0"');
  });

  it('without a guard in the input, nothing is said about the input chain', () => {
    expect(nftRuleset({ ...input, discovery: undefined }, plan)).not.toMatch(/add rule inet scrooge input/);
  });

  it('iptables: the guard is IPv6 only (discovery is), in its own chain', () => {
    const v6 = iptablesRestore(input, plan, 'ipv6');
    expect(v6).toContain(':SCROOGE-IN - [0:0]');
    expect(v6).toContain('-A SCROOGE-IN -i eth0 -s fe80::a/128 -j RETURN');
    expect(v6).toMatch(/hashlimit-above 20\/sec .* -j DROP/);
    expect(v6.trim().split('\n').filter((l) => l.startsWith('-A SCROOGE-IN')).at(-1)).toBe('-A SCROOGE-IN -j DROP');
    expect(iptablesRestore(input, plan, 'ipv4')).not.toContain('SCROOGE-IN');
  });
});
