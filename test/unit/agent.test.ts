// Whole agents, no root: three `Agent`s on one fake clock, talking over an in-memory mesh,
// building tunnels in a fake WireGuard and traffic trees in a FakeKernel, driven through
// start, discovery, tunnels up, a priority change (and one the kernel refuses), a neighbor
// gone, a restart that adopts its tunnels, and stop. The real-packet proof of the same is in
// test/netns/; this one runs in a second and tells which component broke.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/daemon.js';
import { parseConfig } from '../../src/config/config.js';
import { FULL_GC_MS } from '../../src/config/tunables.js';
import { toBase64 } from '../../src/protocol/bytes.js';
import { createKeyFile } from '../../src/system/keystore.js';
import type { RunOptions, Runner } from '../../src/system/runner.js';
import { UserspaceBackend } from '../../src/system/wireguard/index.js';
import { CLASS_SOLD } from '../../src/traffic/plan.js';
import { FakeClock } from './fakeclock.js';
import { FakeKernel, kernelRunner } from './fakekernel.js';
import { FakeWireGuardNet, type FakeWireGuard } from './fakewireguard.js';
import { MemoryNet } from './memorynet.js';

const dir = mkdtempSync(join(tmpdir(), 'scrooge-agent-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Node {
  name: string;
  host: FakeWireGuard;
  kernel: FakeKernel;
  refuse: RegExp | undefined;
  logs: Record<string, unknown>[];
  key: string;
  agent: Agent;
  /** Full collections the agent asked for. */
  gcs: number;
}

const clock = new FakeClock();
const net = new MemoryNet(clock, {
  a: [{ name: 'eth0', segment: 'lan', linkLocal: 'fe80::a' }],
  b: [{ name: 'eth0', segment: 'lan', linkLocal: 'fe80::b' }],
  r: [{ name: 'eth0', segment: 'lan', linkLocal: 'fe80::c0' }],
});
const wg = new FakeWireGuardNet(() => clock.wall());
const nodes = new Map<string, Node>();

async function makeNode(name: string, extra: Record<string, unknown> = {}): Promise<Node> {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const existing = nodes.get(name);
  const keyFile = join(d, 'node.key');
  const key = existing?.key ?? toBase64(await createKeyFile(keyFile));
  const host = existing?.host ?? wg.host(name, ['lo', 'eth0', 'eth1']);
  const kernel = existing?.kernel ?? new FakeKernel(new Set(['eth0', 'eth1']));
  const node: Node = { name, host, kernel, refuse: undefined, logs: existing?.logs ?? [], key, agent: undefined as unknown as Agent, gcs: existing?.gcs ?? 0 };
  host.onLink = (event, ifname) => (event === 'add' ? kernel.addDevice(ifname) : kernel.removeDevice(ifname));
  const traffic = kernelRunner(kernel, { refuse: () => node.refuse });
  const run: Runner = (argv, opts?: RunOptions) => (argv[0] === 'ip' || argv[0] === 'wg' ? host.run(argv, opts) : traffic(argv, opts));
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk, _enc, cb) { node.logs.push(JSON.parse(String(chunk)) as Record<string, unknown>); cb(); } }));
  const config = parseConfig({ keyFile, stateDir: join(d, 'state'), controlSocket: join(d, 'control.sock'), interfaces: ['eth0'], ...extra }, d);
  node.agent = new Agent({
    run, logger, clock, ...net.agentDeps(name),
    wireguard: async () => new UserspaceBackend(host, undefined),
    deviceIndex: async (dev) => kernel.ifindex(dev),
    collectGarbage: () => void node.gcs++,
  }, config);
  nodes.set(name, node);
  return node;
}

const node = (name: string) => nodes.get(name)!;
type Row = { key: string; state: string; priority: number; tunnel: { ifname: string; state: string; latestHandshakeAgoMs: number | null } | null };
const neighbors = async (name: string) => ((await node(name).agent.command('neighbors')) as { neighbors: Row[] }).neighbors;
const tunnelLinks = (name: string) => node(name).host.render().split('\n').filter((l) => l.startsWith('sc')).map((l) => l.split(' ')[0]!);

/** The uplink classes of R's traffic status: neighbor key -> guaranteed rate. */
async function uplinkRates(): Promise<Map<string, number>> {
  const t = (await node('r').agent.command('traffic')) as { trees: { dev: string; classes: { neighbor: string | null; rate: number | null }[] }[] };
  const up = t.trees.find((x) => x.dev === 'eth1')!;
  return new Map(up.classes.filter((c) => c.neighbor).map((c) => [c.neighbor!, c.rate!]));
}

describe('three whole agents on fake time', () => {
  it('start: find each other, become two-way, and build exactly one handshaken tunnel per pair', async () => {
    await makeNode('a', { tunnels: { removeOnStop: false }, traffic: { removeOnStop: false } });
    await makeNode('b');
    await makeNode('r', { uplinks: [{ interface: 'eth1', rate: '20mbit' }] });
    await Promise.all([...nodes.values()].map((n) => n.agent.start()));
    await clock.advance(3000);
    for (const name of ['a', 'b', 'r']) {
      const rows = await neighbors(name);
      const others = [...nodes.values()].filter((n) => n.name !== name).map((n) => n.key).sort();
      expect(rows.map((r) => r.key).sort(), name).toEqual(others);
      expect(rows.map((r) => [r.state, r.tunnel?.state]), name).toEqual([['two-way', 'up'], ['two-way', 'up']]);
      expect(tunnelLinks(name), name).toHaveLength(2);
    }
    // The router shapes its uplink for both neighbors, and each tunnel it has.
    expect([...(await uplinkRates()).keys()].sort()).toEqual([node('a').key, node('b').key].sort());
    expect(node('r').kernel.render()).toContain(`nft tunnels: ${tunnelLinks('r').map((n) => `"${n}"`).sort().join(', ')}`);
  });

  it('a priority change reaches the kernel before the answer, and is kept in settings.json', async () => {
    const r = node('r');
    const answer = await r.agent.command('set', { neighbor: node('a').key, priority: 3 });
    expect(answer).toMatchObject({ neighbor: node('a').key, priority: 3, cap: null });
    const rates = await uplinkRates();
    expect(rates.get(node('a').key)! / rates.get(node('b').key)!).toBeCloseTo(3, 1);
    expect(JSON.parse(readFileSync(join(dir, 'r', 'state', 'settings.json'), 'utf8'))).toEqual({ neighbors: { [node('a').key]: { priority: 3 } } });
  });

  it('a change the kernel refuses is answered with an error, and neither the kernel nor settings.json changes', async () => {
    const r = node('r');
    const settings = readFileSync(join(dir, 'r', 'state', 'settings.json'), 'utf8');
    const kernel = r.kernel.render();
    r.refuse = /class change/;
    await expect(r.agent.command('set', { neighbor: node('b').key, priority: 5 })).rejects.toThrow(/^the kernel refused the change/);
    r.refuse = undefined;
    expect(readFileSync(join(dir, 'r', 'state', 'settings.json'), 'utf8')).toBe(settings);
    expect(r.kernel.render()).toBe(kernel);
    expect(((await neighbors('r')).find((n) => n.key === node('b').key))!.priority).toBe(1);
  });

  it('bad values are refused by the same schema as the config file, naming the field', async () => {
    const r = node('r');
    for (const [args, re] of [
      [{ neighbor: node('a').key, priority: 0 }, /^priority: /],
      [{ neighbor: node('a').key, cap: 'fast' }, /^cap: /],
      [{ share: 2 }, /^share: /],
      [{ neighbor: node('a').key, speed: 1 }, /unknown field "speed"/],
    ] as const) await expect(r.agent.command('set', args)).rejects.toThrow(re);
  });

  it('a mesh interface unplugged: no hello on it while it is gone, one within a poll of its return', async () => {
    const a = node('a');
    const hellos = async () => ((await a.agent.command('status', { stats: false })) as { counters: { sent: Record<string, number> } }).counters.sent['scrooge_hello']!;
    net.setCut('a', 'eth0', true);
    await clock.advance(1500);
    expect(a.logs.some((l) => l['level'] === 40 && /mesh interface eth0 is missing/.test(String(l['msg'])))).toBe(true);
    const gone = await hellos();
    await clock.advance(5000);
    expect(await hellos()).toBe(gone);
    net.setCut('a', 'eth0', false);
    await clock.advance(1000);
    expect(await hellos()).toBeGreaterThan(gone);
    expect(a.logs.some((l) => /mesh interface eth0 is up/.test(String(l['msg'])))).toBe(true);
    // Back to the steady state before the next test: every pair two-way over its tunnel.
    await clock.advance(4000);
    for (const name of ['a', 'b', 'r']) expect((await neighbors(name)).map((r) => [r.state, r.tunnel?.state]), name).toEqual([['two-way', 'up'], ['two-way', 'up']]);
  });

  it('a full garbage collection once a minute, nothing else changing', async () => {
    const gcs = () => [...nodes.values()].map((n) => n.gcs);
    const before = gcs();
    await clock.advance(FULL_GC_MS);
    expect(gcs()).toEqual(before.map((g) => g + 1));
    for (const name of ['a', 'b', 'r']) expect((await neighbors(name)).map((r) => [r.state, r.tunnel?.state]), name).toEqual([['two-way', 'up'], ['two-way', 'up']]);
  });

  it('a neighbor gone: its tunnels go on both sides, and nothing is left of it', async () => {
    await node('b').agent.stop();
    expect(tunnelLinks('b')).toEqual([]);
    expect(node('b').kernel.render()).toBe('(no nft table)');
    await clock.advance(25_000);
    for (const name of ['a', 'r']) {
      expect((await neighbors(name)).map((n) => n.key), name).not.toContain(node('b').key);
      expect(tunnelLinks(name), name).toHaveLength(1);
    }
    expect([...(await uplinkRates()).keys()]).toEqual([node('a').key]);
    expect(node('r').logs.some((l) => l['event'] === 'neighbor-removed' && l['neighbor'] === node('b').key)).toBe(true);
  });

  it('restart: the tunnels a stopped agent left are adopted, not rebuilt, and stay up', async () => {
    const before = tunnelLinks('a');
    const ifindex = before.map((n) => node('a').host.ifindex(n));
    const peerKeyAtR = node('r').host.render();
    await node('a').agent.stop(); // removeOnStop false: as if killed, the tunnel stays
    expect(tunnelLinks('a')).toEqual(before);
    await makeNode('a'); // same key, state and host; removes what it has on stop
    await node('a').agent.start();
    expect(node('a').logs.find((l) => l['msg'] === 'adopted tunnels from the previous run')?.['tunnels']).toEqual(before);
    await clock.advance(3000);
    expect(tunnelLinks('a')).toEqual(before);
    expect(before.map((n) => node('a').host.ifindex(n))).toEqual(ifindex);
    expect(node('r').host.render()).toBe(peerKeyAtR); // R did not renegotiate
    expect((await neighbors('a')).map((n) => n.tunnel?.state)).toEqual(['up']);
  });

  it('stop: no tunnel, no rule, no class, no socket, no timer is left', async () => {
    await Promise.all([node('a').agent.stop(), node('r').agent.stop()]);
    await node('a').agent.stop(); // twice is fine
    for (const name of ['a', 'b', 'r']) {
      expect(tunnelLinks(name), name).toEqual([]);
      expect(node(name).kernel.render(), name).toBe('(no nft table)');
      expect(existsSync(join(dir, name, 'control.sock')), name).toBe(false);
    }
    await clock.advance(10);
    expect(clock.pending).toBe(0);
    expect(CLASS_SOLD).toBe('5c:20');
  });
});
