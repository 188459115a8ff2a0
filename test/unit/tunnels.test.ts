// The tunnel reconciler (src/agent/tunnels.ts) over both real backends, against a stateful fake
// of what they ask of the system (links, daemons, UAPI, wg, held ports): the state reached,
// whatever order desired sets come in; interfaces that vanish; ports that are busy; daemons
// that fail to start; leftovers of another run.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TunnelReconciler, type TunnelsReached } from '../../src/agent/tunnels.js';
import type { DesiredTunnel, TunnelIntent } from '../../src/neighbors/core.js';
import { tunnelInterfaceName } from '../../src/neighbors/names.js';
import { toBase64 } from '../../src/protocol/bytes.js';
import { KernelBackend, UserspaceBackend, type WireGuardBackend } from '../../src/system/wireguard/index.js';
import { settle } from './fakeclock.js';
import { FakeWireGuard, FakeWireGuardNet } from './fakewireguard.js';

const OWN = new Uint8Array(32).fill(7);
const key = (b: number) => new Uint8Array(32).fill(b);
const neighborKey = (i: number) => key(100 + i);
const ifname = (i: number) => tunnelInterfaceName(OWN, neighborKey(i));

function intent(i: number, generation = 1, opts: { port?: number; peer?: boolean } = {}): TunnelIntent {
  return {
    ifname: ifname(i), neighbor: toBase64(neighborKey(i)), generation, privateKey: key(10 + i + generation * 16), publicKey: key(0), listenPort: opts.port ?? 51820 + i,
    address: 'fe80::1:2:3:4', mtu: 1420,
    peer: opts.peer === false ? undefined : { tunnelKey: key(200 + i), endpoint: { address: `fe80::${i + 1}`, zone: 'eth0', port: 52000 + i }, keepaliveSeconds: 5 },
  };
}

const BACKENDS: [string, (h: FakeWireGuard) => WireGuardBackend][] = [
  ['userspace', (h) => new UserspaceBackend(h, undefined)],
  ['kernel', (h) => new KernelBackend(h, undefined)],
];

/**
 * Plays the core's part: remembers which generation each tunnel has applied (from the
 * outcomes, as MeshCore.tunnelApplied does) and hands the reconciler desired sets with the
 * flags the core would set.
 */
class Driver {
  readonly applied = new Map<string, number>();
  readonly reconciler: TunnelReconciler;
  changed = 0;
  constructor(readonly host: FakeWireGuard, make: (h: FakeWireGuard) => WireGuardBackend) {
    this.reconciler = new TunnelReconciler({ backend: make(host), changed: () => void this.changed++ });
  }

  desired(intents: TunnelIntent[], prepared: number[] = []): DesiredTunnel[] {
    return [
      ...intents.map((t) => ({ ifname: t.ifname, neighbor: t.neighbor, intent: t, configured: this.applied.has(t.ifname), applied: this.applied.get(t.ifname) === t.generation, due: true })),
      ...prepared.map((i) => ({ ifname: ifname(i), neighbor: toBase64(neighborKey(i)), intent: undefined, configured: false, applied: false, due: true })),
    ];
  }

  /**
   * One set of the core's wishes, as the agent plays it: a pass, then another each time work
   * the pass left in the background (an interface being made) has finished. What the passes
   * reached, together; outcomes sorted by interface.
   */
  async set(intents: TunnelIntent[], prepared: number[] = []): Promise<TunnelsReached> {
    const wanted = new Set([...intents.map((t) => t.ifname), ...prepared.map(ifname)]);
    for (const n of [...this.applied.keys()]) if (!wanted.has(n)) this.applied.delete(n);
    const all: TunnelsReached = { applied: [], rebuilt: [], removed: [] };
    for (let pass = 0; pass < 10; pass++) {
      const changedBefore = this.changed;
      const r = await this.reconciler.set(this.desired(intents, prepared));
      for (const o of r.applied) if (o.ok) this.applied.set(o.ifname, o.generation);
      all.applied.push(...r.applied);
      all.rebuilt.push(...r.rebuilt);
      all.removed.push(...r.removed);
      await settle();
      if (this.changed === changedBefore) break;
    }
    // A pass asked the same question again (the core here never moves a busy port) answers it again.
    all.applied = [...new Map(all.applied.map((o) => [JSON.stringify(o), o])).values()].sort((a, b) => (a.ifname < b.ifname ? -1 : 1));
    return all;
  }
}

describe.each(BACKENDS)('tunnel reconciler (%s backend)', (kind, make) => {
  const newHost = () => new FakeWireGuardNet(() => 0).host('r');

  it('creates, configures, addresses and brings up every desired tunnel; a second pass changes nothing', async () => {
    const d = new Driver(newHost(), make);
    const r = await d.set([intent(0), intent(1), intent(2, 1, { peer: false })]);
    expect(r.applied.map((o) => o.ok)).toEqual([true, true, true]);
    const state = d.host.render();
    expect(state.split('\n').filter((l) => l.startsWith('sc'))).toHaveLength(3);
    expect(state).toMatch(new RegExp(`${ifname(0)} ${kind === 'kernel' ? 'kernel' : 'daemon'} up mtu 1420 addrgenmode none addr fe80::1:2:3:4/64 key \\S+ port 51820`));
    expect(state).toContain(`peer ${toBase64(key(200))} endpoint [fe80::1%eth0]:52000 keepalive 5 allowed 0.0.0.0/0,::/0`);
    const again = await d.set([intent(0), intent(1), intent(2, 1, { peer: false })]);
    expect(again).toEqual({ applied: [], rebuilt: [], removed: [] });
    expect(d.host.render()).toBe(state);
  });

  it('reaches the same state whatever order the desired sets come in', async () => {
    const universe = [intent(0), intent(0, 2), intent(1), intent(1, 2, { port: 51900 }), intent(2, 1, { peer: false }), intent(3), intent(4, 3)];
    const final = [intent(0, 2), intent(1, 2, { port: 51900 }), intent(4, 3)];
    const reference = new Driver(newHost(), make);
    await reference.set(final);
    const expected = reference.host.render();
    await fc.assert(fc.asyncProperty(
      fc.array(fc.subarray(universe.map((_, i) => i)), { maxLength: 6 }),
      async (sets) => {
        const d = new Driver(newHost(), make);
        for (const s of sets) {
          // One tunnel per neighbor in a set (as the core wants): the last generation named.
          const byName = new Map(s.map((i) => universe[i]!).map((t) => [t.ifname, t]));
          await d.set([...byName.values()]);
        }
        await d.set(final);
        expect(d.host.render()).toBe(expected);
      },
    ), { numRuns: 40 });
  });

  it('rebuilds an interface that vanished, and says so', async () => {
    const d = new Driver(newHost(), make);
    await d.set([intent(0), intent(1)]);
    const before = d.host.render();
    d.host.vanish(ifname(1));
    const r = await d.set([intent(0), intent(1)]);
    expect(r.rebuilt).toEqual([ifname(1)]);
    expect(r.applied).toEqual([{ ifname: ifname(1), generation: 1, ok: true }]);
    expect(d.host.render()).toBe(before);
  });

  it('a busy port is an outcome (portBusy), not an exception, and nothing is half-made', async () => {
    const d = new Driver(newHost(), make);
    d.host.heldPorts.add(51821);
    const r = await d.set([intent(0), intent(1)]);
    expect(r.applied).toEqual([
      { ifname: ifname(0), generation: 1, ok: true },
      { ifname: ifname(1), generation: 1, ok: false, portBusy: true, error: 'UDP port 51821 is in use' },
    ].sort((a, b) => (a.ifname < b.ifname ? -1 : 1)));
    expect(d.host.render()).not.toContain(ifname(1));
    // The core moves it to another port (a new generation): then it works.
    const r2 = await d.set([intent(0), intent(1, 2, { port: 51850 })]);
    expect(r2.applied).toEqual([{ ifname: ifname(1), generation: 2, ok: true }]);
    expect(d.host.render()).toMatch(new RegExp(`${ifname(1)} .* port 51850`));
  });

  it('removes interfaces nobody wants (leftovers, departed neighbors), after adding the new ones', async () => {
    const d = new Driver(newHost(), make);
    await d.set([intent(0), intent(1), intent(2)]);
    const r = await d.set([intent(1), intent(3)]);
    expect(r.removed.sort()).toEqual([ifname(0), ifname(2)].sort());
    expect(r.applied.map((o) => o.ifname)).toEqual([ifname(3)]);
    expect(d.host.render().split('\n').filter((l) => l.startsWith('sc')).map((l) => l.split(' ')[0]).sort()).toEqual([ifname(1), ifname(3)].sort());
    await d.set([]);
    expect(d.host.render()).toBe('');
  });

  it('adopts only what the state file vouches for, under our name for that neighbor', async () => {
    const host = newHost();
    const first = new Driver(host, make);
    await first.set([intent(0), intent(1), intent(2)]);
    const stored = {
      [ifname(0)]: { neighbor: toBase64(neighborKey(0)), role: 'initiator' as const, listenPort: 51820, iface: 'eth0' },
      // A record naming another neighbor than the interface's name says: not ours to adopt.
      [ifname(1)]: { neighbor: toBase64(neighborKey(9)), role: 'responder' as const, listenPort: 51821, iface: 'eth0' },
    };
    const second = new Driver(host, make);
    const adoptable = await second.reconciler.adoptable(stored, OWN);
    expect(adoptable.map((a) => a.ifname)).toEqual([ifname(0)]);
    expect(adoptable[0]).toMatchObject({ role: 'initiator', listenPort: 51820, iface: 'eth0', peer: { tunnelKey: key(200), endpoint: { address: 'fe80::1', zone: 'eth0', port: 52000 } } });
  });
});

describe('tunnel reconciler: interfaces made ahead (wireguard-go)', () => {
  it('starts them in the background, configures them when their tunnel comes, removes them when their neighbor goes', async () => {
    const host = new FakeWireGuardNet(() => 0).host('r');
    const d = new Driver(host, (h) => new UserspaceBackend(h, undefined));
    const r = await d.set([], [0, 1]);
    expect(r.applied).toEqual([]);
    await settle();
    expect(d.changed).toBe(2); // each finished start asks for another look
    expect(host.render()).toContain(`${ifname(0)} daemon down`);
    // Neighbor 0's tunnel comes: the daemon is reused (no second start); neighbor 1 leaves.
    const r2 = await d.set([intent(0)]);
    expect(r2.applied).toEqual([{ ifname: ifname(0), generation: 1, ok: true }]);
    expect(r2.removed).toEqual([ifname(1)]);
    expect(host.render()).toMatch(new RegExp(`^${ifname(0)} daemon up`));
    expect(host.render()).not.toContain(ifname(1));
  });

  it('a daemon that fails to start is an outcome; the next try (after the core\'s backoff) works', async () => {
    const host = new FakeWireGuardNet(() => 0).host('r');
    host.failDaemonStarts = 1;
    const d = new Driver(host, (h) => new UserspaceBackend(h, undefined));
    const r = await d.set([intent(0)]);
    expect(r.applied).toEqual([{ ifname: ifname(0), generation: 1, ok: false, portBusy: false, error: `wireguard-go ${ifname(0)} exited 1 (fake)` }]);
    const r2 = await d.set([intent(0)]);
    expect(r2.applied).toEqual([{ ifname: ifname(0), generation: 1, ok: true }]);
  });

  it('removeAll waits for interfaces being made, then removes all but those kept', async () => {
    const host = new FakeWireGuardNet(() => 0).host('r');
    const d = new Driver(host, (h) => new UserspaceBackend(h, undefined));
    await d.set([intent(0)], [1, 2]);
    expect(await d.reconciler.removeAll(new Set([ifname(0)]))).toEqual(expect.arrayContaining([ifname(1), ifname(2)]));
    expect(host.render().split('\n').map((l) => l.split(' ')[0])).toEqual([ifname(0), '']);
  });
});
