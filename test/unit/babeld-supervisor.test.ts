// The routing supervisor against a stateful fake babeld (a real unix-socket server speaking
// babeld's protocol) and a fake host: the state reached is checked, not the calls made.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { BabeldClient } from '../../src/routing/client.js';
import type { BabeldEvent } from '../../src/routing/protocol.js';
import { ROUTING_DEFAULTS, RoutingSupervisor, type InterfaceState, type RoutingOptions } from '../../src/routing/supervisor.js';
import type { Clock } from '../../src/system/clock.js';
import { FakeHost } from './fakebabeld.js';

class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.t;
  }
  wall(): number {
    return 1_763_769_600_000 + this.t;
  }
  setTimeout(fn: () => void, ms: number): () => void {
    const id = this.seq++;
    this.timers.set(id, { at: this.t + ms, fn });
    return () => this.timers.delete(id);
  }
  /** Fires due timers in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.timers].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
  pending(): number[] {
    return [...this.timers.values()].map((v) => v.at - this.t).sort((a, b) => a - b);
  }
}

/** Polls (real time) until `check` is truthy: the fake babeld answers over a real socket, which a loaded machine can delay for seconds. */
async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const MESH6 = 'fdb5:c7c7:82e9:0:311f:cc68:caa8:8b9b';
const dirs: string[] = [];
const supervisors: RoutingSupervisor[] = [];

afterEach(async () => {
  for (const s of supervisors.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(options: Partial<RoutingOptions> = {}, which: (c: string) => Promise<string | undefined> = async () => '/usr/sbin/babeld') {
  const stateDir = mkdtempSync(join(tmpdir(), 'scrooge-babeld-'));
  dirs.push(stateDir);
  const host = new FakeHost();
  const clock = new FakeClock();
  const sup = new RoutingSupervisor(
    { run: host.run, spawn: host.spawn, sysctl: host.sysctl, clock, which },
    { stateDir, mesh6: MESH6, mesh4: '10.55.0.1', ...options },
  );
  supervisors.push(sup);
  return { host, clock, sup, stateDir };
}

const brief = (states: InterfaceState[]) => states.map((s) => `${s.ifname}:${s.state}`).sort().join(' ');

describe('routing supervisor', () => {
  it('starts babeld with its addresses and forwarding, runs it on the wanted tunnels, and leaves nothing at stop', async () => {
    const { host, sup, stateDir } = setup();
    host.setLink('sca', 'fe80::a');
    host.setLink('scb', undefined); // no fe80 yet: babeld keeps it down
    await sup.start();
    await sup.start();
    expect(host.daemons).toHaveLength(1);
    expect(brief(await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }]))).toBe('sca:up scb:down');
    expect((await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }])).find((s) => s.ifname === 'sca')?.linkLocal).toBe('fe80::a');
    // Set twice: nothing new sent to babeld.
    expect(host.current!.requests.filter((r) => r.startsWith('interface'))).toEqual([
      'interface sca type tunnel hello-interval 0.5 update-interval 1 split-horizon true v4-via-v6 true',
      'interface scb type tunnel hello-interval 0.5 update-interval 1 split-horizon true v4-via-v6 true',
    ]);
    expect(host.render()).toBe([
      `lo up: 10.55.0.1/32 127.0.0.1/8 ::1/128 ${MESH6}/128`,
      'sysctl net/ipv4/conf/sca/rp_filter=2',
      'sysctl net/ipv4/conf/scb/rp_filter=2',
      'sysctl net/ipv4/ip_forward=1',
      'sysctl net/ipv6/conf/all/forwarding=1',
      'babeld: pid 4000, interfaces sca scb scrooge-idle',
    ].join('\n'));
    expect(readdirSync(stateDir).sort()).toEqual(['babeld.conf', 'babeld.log', 'babeld.pid', 'babeld.sock']);

    host.current!.addNeighbour('sca', 'fe80::b', ['fdb5:c7c7:82e9:0:1:2:3:4/128', '10.55.0.2/32']);
    expect(await sup.routes()).toEqual([
      { prefix: '10.55.0.2/32', via: 'fe80::b', ifname: 'sca', metric: 96, refmetric: 0, installed: true, reachable: true, routerId: '02:00:00:ff:fe:00:00:01' },
      { prefix: 'fdb5:c7c7:82e9:0:1:2:3:4/128', via: 'fe80::b', ifname: 'sca', metric: 96, refmetric: 0, installed: true, reachable: true, routerId: '02:00:00:ff:fe:00:00:01' },
    ]);
    expect([...host.babelRoutes].sort()).toEqual(['10.55.0.2/32 via fe80::b dev sca', 'fdb5:c7c7:82e9:0:1:2:3:4/128 via fe80::b dev sca']);

    await sup.stop();
    await sup.stop();
    expect(host.current).toBeUndefined();
    expect(host.render()).toBe([
      'lo up: 127.0.0.1/8 ::1/128',
      'sysctl net/ipv4/conf/sca/rp_filter=2',
      'sysctl net/ipv4/conf/scb/rp_filter=2',
      'sysctl net/ipv4/ip_forward=0',
      'sysctl net/ipv6/conf/all/forwarding=0',
      'babeld: none',
    ].join('\n'));
    expect(readdirSync(stateDir)).toEqual(['babeld.log']);
    expect(host.daemons.flatMap((d) => d.unknown)).toEqual([]);
  });

  it('babeld missing: one clear error, nothing touched', async () => {
    const { host, sup } = setup({}, async () => undefined);
    const err = (await sup.start().then(() => undefined, (e: unknown) => e)) as { code: string; message: string; hint: string };
    expect(err.code).toBe('ENOBABELD');
    expect(err.message).toBe('routing is "babeld" but babeld is not installed');
    expect(err.hint).toMatch(/apt-get install --no-install-recommends babeld/);
    expect(host.render()).toBe('lo down: 127.0.0.1/8 ::1/128\nsysctl net/ipv4/ip_forward=0\nsysctl net/ipv6/conf/all/forwarding=0\nbabeld: none');
    expect(host.ipLog).toEqual([]);
  });

  it('babeld failing at start: its log line in the error, and the host put back', async () => {
    const { host, sup } = setup();
    host.failNextSpawn = 'spawn /usr/sbin/babeld EACCES';
    await expect(sup.start()).rejects.toThrow(/babeld spawn \/usr\/sbin\/babeld EACCES at start/);
    expect(host.render()).toBe('lo up: 127.0.0.1/8 ::1/128\nsysctl net/ipv4/ip_forward=0\nsysctl net/ipv6/conf/all/forwarding=0\nbabeld: none');
    // It can be started again once the cause is gone.
    await sup.start();
    expect(host.current).toBeDefined();
  });

  it('clears what a killed agent left: a stale pid file, a stale socket, stale babel routes', async () => {
    const { host, sup, stateDir } = setup();
    writeFileSync(join(stateDir, 'babeld.pid'), '999999999\n');
    writeFileSync(join(stateDir, 'babeld.sock'), '');
    host.babelRoutes.add('fdb5:c7c7:82e9:0:9:9:9:9/128 via fe80::dead dev scgone');
    await sup.start();
    expect(host.current).toBeDefined();
    expect(host.babelRoutes.size).toBe(0);
  });

  it('restarts a babeld that dies and re-adds every wanted tunnel; stale routes are flushed first', async () => {
    const { host, clock, sup } = setup();
    for (const n of ['sca', 'scb', 'scc']) host.setLink(n, `fe80::${n.slice(2)}`);
    await sup.start();
    await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }, { ifname: 'scc' }]);
    const first = host.current!;
    first.addNeighbour('sca', 'fe80::1', ['10.55.0.9/32']);
    expect([...host.babelRoutes]).toEqual(['10.55.0.9/32 via fe80::1 dev sca']);

    first.kill('SIGKILL'); // leaves its route, pid file and socket file
    await until('babeld seen dead', () => sup.status().running === false);
    expect(await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }, { ifname: 'scc' }])).toEqual(
      ['sca', 'scb', 'scc'].map((ifname) => ({ ifname, state: 'waiting', neighbours: 0 })),
    );
    expect(clock.pending()).toEqual([ROUTING_DEFAULTS.restartMinMs]);
    clock.advance(ROUTING_DEFAULTS.restartMinMs - 1);
    expect(host.daemons).toHaveLength(1);
    clock.advance(1);
    const second = await until('a second babeld', () => host.daemons.length === 2 && host.current);
    await until('tunnels re-added', () => second.interfaces.size === 4);
    expect([...second.interfaces.keys()].sort()).toEqual(['sca', 'scb', 'scc', 'scrooge-idle']);
    // The killed one's route was flushed, so the new babeld installs its own next hop.
    expect(host.babelRoutes.size).toBe(0);
    second.addNeighbour('sca', 'fe80::2', ['10.55.0.9/32']);
    expect([...host.babelRoutes]).toEqual(['10.55.0.9/32 via fe80::2 dev sca']);
    expect(brief(await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }, { ifname: 'scc' }]))).toBe('sca:up scb:up scc:up');
    expect(sup.status().restarts).toBe(1);
  });

  it('backs off when babeld keeps dying, and starts over after a healthy run', async () => {
    const { host, clock, sup } = setup();
    await sup.start();
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const n = host.daemons.length;
      host.current!.kill('SIGKILL');
      await until('restart scheduled', () => clock.pending().length === 1);
      delays.push(clock.pending()[0]!);
      clock.advance(clock.pending()[0]!);
      await until('restarted', () => host.daemons.length === n + 1 && host.current && sup.status().running);
    }
    expect(delays).toEqual([100, 200, 400, 800, 1600]);
    clock.advance(ROUTING_DEFAULTS.stableAfterMs);
    host.current!.kill('SIGKILL');
    await until('restart scheduled', () => clock.pending().length === 1);
    expect(clock.pending()).toEqual([100]);
  });

  it('never flushes an interface babeld still has a neighbour on (the 1.12.1 use-after-free)', async () => {
    const { host, clock, sup } = setup();
    host.setLink('sca', 'fe80::a');
    host.setLink('scb', 'fe80::b');
    await sup.start();
    await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }]);
    const babeld = host.current!;
    babeld.addNeighbour('scb', 'fe80::2', ['10.55.0.2/32']);

    // The tunnel goes: its link first, then the agent stops wanting it.
    host.removeLink('scb');
    expect(brief(await sup.set([{ ifname: 'sca' }]))).toBe('sca:up scb:draining');
    expect(host.babelRoutes.size).toBe(0); // routes went with the link
    clock.advance(ROUTING_DEFAULTS.drainCheckMs);
    await until('drain check ran', () => babeld.requests.filter((r) => r === 'dump').length >= 3);
    expect(babeld.interfaces.has('scb')).toBe(true);

    babeld.expireNeighbours('scb'); // 16 hellos missed
    clock.advance(ROUTING_DEFAULTS.drainCheckMs);
    await until('flushed', () => !babeld.interfaces.has('scb'));
    expect(babeld.requests.filter((r) => r.startsWith('flush'))).toEqual(['flush interface scb']);
    expect(brief(await sup.set([{ ifname: 'sca' }]))).toBe('sca:up');
    expect(babeld.useAfterFree).toEqual([]);
    expect(clock.pending()).toEqual([]);
  });

  it('a wanted interface that comes back while draining is kept, not flushed', async () => {
    const { host, sup } = setup();
    host.setLink('sca', 'fe80::a');
    await sup.start();
    await sup.set([{ ifname: 'sca' }]);
    host.current!.addNeighbour('sca', 'fe80::2');
    expect(brief(await sup.set([]))).toBe('sca:draining');
    expect(brief(await sup.set([{ ifname: 'sca' }]))).toBe('sca:up');
    expect(host.current!.requests.filter((r) => r.startsWith('flush') || r.startsWith('interface'))).toHaveLength(1);
  });

  it('gives babeld the configured timers; a missing link is down, not an error', async () => {
    const { host, sup } = setup({ timers: { helloIntervalMs: 250, updateIntervalMs: 60_000 } });
    await sup.start();
    const states = await sup.set([{ ifname: 'sca' }]);
    expect(brief(states)).toBe('sca:down'); // link missing: babeld keeps it down, no error
    expect(host.current!.interfaces.get('sca')).toBe('type tunnel hello-interval 0.25 update-interval 60 split-horizon true v4-via-v6 true');
  });

  it('restarts babeld cleanly when it stops announcing a route (1.12.1 would never retract it)', async () => {
    const { host, clock, sup } = setup({ gateway: { ipv6: true, ipv4: true } });
    host.setLink('sca', 'fe80::a');
    await sup.start();
    await sup.set([{ ifname: 'sca' }]);
    const first = host.current!;
    first.announce('0.0.0.0/0');
    first.announce('::/0');
    await new Promise((r) => setTimeout(r, 20));
    expect(clock.pending()).toEqual([]);
    first.withdraw('0.0.0.0/0'); // the uplink lost its IPv4 default
    first.withdraw('::/0');
    await until('relaunch scheduled', () => clock.pending().length === 1);
    expect(clock.pending()).toEqual([ROUTING_DEFAULTS.relaunchDebounceMs]);
    clock.advance(ROUTING_DEFAULTS.relaunchDebounceMs);
    await until('relaunched', () => host.daemons.length === 2 && sup.status().relaunches === 1 && host.current?.interfaces.has('sca'));
    expect(await first.exited).toEqual({ code: 0, signal: null }); // SIGTERM: it retracted everything
    expect(sup.status().restarts).toBe(0);
    expect(brief(await sup.set([{ ifname: 'sca' }]))).toBe('sca:up');
  });

  it('babeld 1.12.2 and later retract by themselves: no monitor, no relaunch', async () => {
    const { host, sup } = setup({ gateway: { ipv6: true, ipv4: true } });
    host.version = 'babeld-1.14';
    await sup.start();
    expect(host.current!.connections).toBe(1);
    host.current!.announce('::/0');
    host.current!.withdraw('::/0');
    await new Promise((r) => setTimeout(r, 20));
    expect(host.daemons).toHaveLength(1);
  });

  it('reports an interface babeld refuses, and tries it again at the next set', async () => {
    const { host, sup } = setup();
    host.setLink('sca', 'fe80::a');
    host.setLink('scb', 'fe80::b');
    await sup.start();
    host.current!.refuse.add('scb');
    const states = await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }]);
    expect(states.find((s) => s.ifname === 'scb')).toEqual({ ifname: 'scb', state: 'error', neighbours: 0, error: 'babeld answered "bad" to the interface line' });
    expect(states.find((s) => s.ifname === 'sca')?.state).toBe('up');
    host.current!.refuse.clear();
    expect(brief(await sup.set([{ ifname: 'sca' }, { ifname: 'scb' }]))).toBe('sca:up scb:up');
  });

  it('reconnects when babeld drops the connection but keeps running', async () => {
    const { host, sup } = setup();
    host.setLink('sca', 'fe80::a');
    await sup.start();
    await sup.set([{ ifname: 'sca' }]);
    const babeld = host.current!;
    // babeld shuts a client down when a write to it fails (local.c).
    expect(babeld.connections).toBe(2); // control, and monitor (babeld 1.12.1: see relaunch)
    for (const c of babeld.clients) c.destroy();
    await until('reconnected', () => babeld.connections === 3 && sup.status().running);
    expect(brief(await sup.set([{ ifname: 'sca' }]))).toBe('sca:up');
    expect(babeld.clients.size).toBe(2); // the monitor came back with that set()
    expect(host.daemons).toHaveLength(1);
  });

  it('reaches the same babeld state whatever order the wanted sets come in', async () => {
    const names = ['sca', 'scb', 'scc', 'scd'];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.subarray(names), { minLength: 1, maxLength: 6 }), fc.boolean(), async (sets, withNeighbours) => {
        const { host, clock, sup } = setup();
        for (const n of names) host.setLink(n, `fe80::${n.slice(2)}`);
        await sup.start();
        for (const set of sets) {
          await sup.set(set.map((ifname) => ({ ifname })));
          if (withNeighbours) for (const n of set) if (!host.current!.neighbours.size || n < 'scc') host.current!.addNeighbour(n, `fe80::9${n.slice(2)}`);
        }
        const last = sets[sets.length - 1]!;
        // Tunnels no longer wanted go away; their neighbours time out.
        for (const n of names) if (!last.includes(n)) {
          host.removeLink(n);
          host.current!.expireNeighbours(n);
        }
        clock.advance(ROUTING_DEFAULTS.drainCheckMs);
        const states = await sup.set(last.map((ifname) => ({ ifname })));
        expect(brief(states)).toBe(last.map((n) => `${n}:up`).sort().join(' '));
        expect([...host.current!.interfaces.keys()].sort()).toEqual([...last, 'scrooge-idle'].sort());
        expect(host.current!.useAfterFree).toEqual([]);
        expect(host.current!.unknown).toEqual([]);
        await sup.stop();
        expect(host.render()).toMatch(/^lo up: 127\.0\.0\.1\/8 ::1\/128\n/);
      }),
      { numRuns: 25 },
    );
  });

  it('refuses a caller bug: a bad interface name, the placeholder, bad addresses', async () => {
    const { sup } = setup();
    await sup.start();
    expect(() => sup.set([{ ifname: 'bad name' }])).toThrow(TypeError);
    expect(() => sup.set([{ ifname: 'scrooge-idle' }])).toThrow(/reserved/);
    const bad = setup({ mesh6: 'fd00::1' });
    await expect(bad.sup.start()).rejects.toThrow(/"mesh6"/);
    expect(bad.host.ipLog).toEqual([]);
  });
});

describe('babeld control client (against the fake)', () => {
  it('reads the banner, answers ok/no/bad, and streams monitor events', async () => {
    const { host, sup, stateDir } = setup();
    host.setLink('sca', 'fe80::a');
    await sup.start();
    const c = await BabeldClient.connect(join(stateDir, 'babeld.sock'));
    expect(c.banner).toEqual({ protocol: '1.0', version: 'babeld-1.12.1', host: 'fake', myId: '02:00:00:ff:fe:00:00:a0' });
    expect((await c.request('flush interface nothere')).status).toBe('no');
    expect((await c.request('flush interface nothere')).message).toBe('No such interface');
    expect((await c.request('frobnicate')).status).toBe('bad');
    const events: BabeldEvent[] = [];
    await c.monitor((e) => events.push(e));
    expect(events.map((e) => `${e.kind} ${e.type}`)).toEqual(['add interface']);
    expect((await c.request('interface sca type tunnel')).status).toBe('ok');
    host.current!.addNeighbour('sca', 'fe80::2');
    await until('neighbour event', () => events.some((e) => e.type === 'neighbour'));
    expect(events.map((e) => `${e.kind} ${e.type}${e.type === 'interface' ? ' ' + e.entry.name + ' ' + e.entry.up : ''}`)).toEqual([
      'add interface scrooge-idle false', 'add interface sca true', 'add neighbour',
    ]);
    expect(host.current!.unknown).toEqual(['frobnicate']);
    expect(() => c.request('dump\ninterface x')).toThrow(TypeError);
    c.close();
    await c.closed;
    await expect(c.request('dump')).rejects.toThrow(/closed/);
    expect(existsSync(join(stateDir, 'babeld.sock'))).toBe(true);
  });
});
