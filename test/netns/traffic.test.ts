/**
 * Traffic control with real packets (issue: traffic control, "Must show"), on uplink.xml:
 * agents A, B and R on a mesh switch with the untrusted host M; R's uplink eth1 leads to host U.
 * R's uplink capacity is 20 Mbit/s (config), so the CPU is never the limit.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/agent/control.js';
import { agentTunnelStatus } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { controlSocketPath, loadRun, type SimRun } from '../../src/sim/run.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { background, inNs, isRoot, newRunId, SCENARIOS, slow, step, testOverlay, until } from './lib.js';

const CAPACITY = 20e6;
const U = '10.0.1.3';

interface IperfInterval { start: number; end: number; bps: number }
interface IperfResult { bps: number; intervals: IperfInterval[] }

/**
 * One hop, routes set by the test itself (routing off): what is checked here is the filter and
 * the shaping of one router. Over babeld routes and several hops: routing.test.ts.
 */
async function startRun(overlay: Record<string, unknown>): Promise<SimRun> {
  const id = newRunId();
  step(id, 'sim up uplink.xml with agents, routing off');
  await upRun({ scenarioPath: join(SCENARIOS, 'uplink.xml'), id, agents: true, configOverlay: testOverlay({ routing: { mode: 'off' }, ...overlay }) });
  const run = await loadRun(id);
  const waited = await waitForTunnels(run, slow(30_000), { status: agentTunnelStatus });
  if (!waited.ok) throw new Error(`tunnels not up: ${JSON.stringify(waited.pairs.filter((p) => !p.ok))}`);
  return run;
}

function ctl(run: SimRun, node: string, cmd: string, args: Record<string, unknown> = {}) {
  return controlRequest(controlSocketPath(run.id, node), cmd, args, slow(10_000));
}

/** `from`'s tunnel interface towards `to`. */
async function tunnelTo(run: SimRun, from: string, to: string): Promise<string> {
  const { tunnels } = (await ctl(run, from, 'tunnels', { stats: false })) as { tunnels: { neighbor: string; ifname: string }[] };
  const t = tunnels.find((x) => x.neighbor === run.agents.keys![to]);
  if (!t) throw new Error(`${from} has no tunnel to ${to}`);
  return t.ifname;
}

const ns = (run: SimRun, node: string) => run.nodes[node]!;

async function drops(run: SimRun): Promise<number> {
  return ((await ctl(run, 'R', 'traffic')) as { untunneledDrops: number }).untunneledDrops;
}

/** Routes: A and B reach U's subnet through their tunnels to R; U answers via R; R reaches A and B through the tunnels. */
async function route(run: SimRun): Promise<void> {
  await inNs(ns(run, 'U'), ['ip', 'route', 'add', '10.0.0.0/24', 'via', '10.0.1.2']);
  await inNs(ns(run, 'M'), ['ip', 'route', 'add', '10.0.1.0/24', 'via', '10.0.0.4']);
  for (const [node, addr] of [['A', '10.0.0.2'], ['B', '10.0.0.3']] as const) {
    await inNs(ns(run, node), ['ip', 'route', 'add', '10.0.1.0/24', 'dev', await tunnelTo(run, node, 'R')]);
    await inNs(ns(run, 'R'), ['ip', 'route', 'add', `${addr}/32`, 'dev', await tunnelTo(run, 'R', node)]);
  }
}

/** An iperf3 client in `node` towards U:port; `reverse` measures U -> node. */
async function iperf(run: SimRun, node: string, port: number, seconds: number, reverse = false): Promise<IperfResult> {
  // --get-server-output: the receiving side's per-interval figures (what arrived), not what the
  // sender managed to write into its socket buffer, which comes in bursts for a slow flow.
  const out = await inNs(ns(run, node), ['iperf3', '-c', U, '-p', String(port), '-t', String(seconds), '-i', '0.5', '-J', '--get-server-output', ...(reverse ? ['-R'] : [])], (seconds + 15) * 1000);
  type Intervals = { sum: { start: number; end: number; bits_per_second: number } }[];
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } }; intervals: Intervals; server_output_json?: { intervals: Intervals } };
  const received = reverse ? j.intervals : (j.server_output_json?.intervals ?? j.intervals);
  const r = { bps: j.end.sum_received.bits_per_second, intervals: received.map((i) => ({ start: i.sum.start, end: i.sum.end, bps: i.sum.bits_per_second })) };
  step(node, `iperf3 ${reverse ? 'U->' : '->U'} ${(r.bps / 1e6).toFixed(2)} Mbit/s`);
  return r;
}

function mean(r: IperfResult, from: number, to: number): number {
  const xs = r.intervals.filter((i) => i.start >= from && i.end <= to).map((i) => i.bps);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** A UDP sink on U that prints the source of every datagram it gets. */
async function sink(run: SimRun) {
  const bg = background(ns(run, 'U'), ['node', '-e', `
const s = require('node:dgram').createSocket({ type: 'udp4' });
s.on('message', (m, r) => console.log('from ' + r.address));
s.bind(9999, () => console.log('ready'));`]);
  await bg.line(/^ready$/);
  return bg;
}

async function sendUdp(run: SimRun, node: string, count = 20): Promise<void> {
  await inNs(ns(run, node), ['node', '-e', `
const s = require('node:dgram').createSocket('udp4');
let n = 0;
const t = setInterval(() => { s.send('x', 9999, '${U}', () => {}); if (++n >= ${count}) { clearInterval(t); setTimeout(() => s.close(), 200); } }, 10);`]);
}

describe.skipIf(!isRoot)('traffic control (nftables)', () => {
  let run: SimRun;
  let servers: ReturnType<typeof background>[] = [];

  beforeAll(async () => {
    run = await startRun({ nodes: { R: { uplinks: [{ interface: 'eth1', rate: '20mbit' }] } } });
    await route(run);
    for (const port of [5201, 5202, 5203]) servers.push(background(ns(run, 'U'), ['iperf3', '-s', '-J', '-p', String(port)]));
    await until('iperf3 servers listening', async () => (await inNs(ns(run, 'U'), ['ss', '-ltn'])).includes(':5203'));
    await ctl(run, 'R', 'set', { neighbor: run.agents.keys!['A'], alias: 'alice' });
    await ctl(run, 'R', 'set', { neighbor: run.agents.keys!['B'], alias: 'bob' });
  }, slow(120_000));

  afterAll(async () => {
    for (const s of servers) s.stop();
    servers = [];
    if (run) await downRun(run.id);
  });

  it('forwards only tunneled traffic: M and A bypassing its tunnel do not reach U, A through its tunnel does', async () => {
    const u = await sink(run);
    try {
      const before = await drops(run);
      await sendUdp(run, 'M');
      // A, bypassing its tunnel: a host route to U via R's mesh address beats the tunnel route.
      await inNs(ns(run, 'A'), ['ip', 'route', 'add', `${U}/32`, 'via', '10.0.0.4', 'dev', 'eth0']);
      await sendUdp(run, 'A');
      await inNs(ns(run, 'A'), ['ip', 'route', 'del', `${U}/32`]);
      const after = await drops(run);
      step('R', `untunneled drops ${before} -> ${after}`);
      expect(after - before).toBeGreaterThanOrEqual(40);
      expect(u.lines.filter((l) => l.startsWith('from '))).toEqual([]);
      // The same traffic from A through its tunnel arrives.
      await sendUdp(run, 'A');
      await until('datagrams from A at U', () => u.lines.filter((l) => l === 'from 10.0.0.2').length >= 15, 5000);
      expect(await drops(run)).toBe(after);
    } finally {
      u.stop();
    }
  });

  it('share 0.5: A and B together get at most half the uplink while R\'s own traffic uses the rest', async () => {
    await ctl(run, 'R', 'set', { share: 0.5 });
    const [a, b, r] = await Promise.all([iperf(run, 'A', 5201, 6), iperf(run, 'B', 5202, 6), iperf(run, 'R', 5203, 6)]);
    const sold = a.bps + b.bps;
    step('R', `sold ${(sold / 1e6).toFixed(2)} Mbit/s, own ${(r.bps / 1e6).toFixed(2)} Mbit/s of ${CAPACITY / 1e6}`);
    expect(sold).toBeLessThanOrEqual(0.5 * CAPACITY * 1.1);
    expect(sold).toBeGreaterThanOrEqual(0.5 * CAPACITY * 0.8);
    expect(r.bps).toBeGreaterThanOrEqual(0.5 * CAPACITY * 0.8);
    expect(sold + r.bps).toBeLessThanOrEqual(CAPACITY * 1.1);
    await ctl(run, 'R', 'set', { share: 1 });
  }, slow(60_000));

  it('priority 3:1 splits 3:1; a change to 1:1 at run time shifts it within 2 s without interrupting either flow', async () => {
    await ctl(run, 'R', 'set', { neighbor: 'alice', priority: 3 });
    await ctl(run, 'R', 'set', { neighbor: 'bob', priority: 1 });
    const seconds = 14;
    const flows = Promise.all([iperf(run, 'A', 5201, seconds), iperf(run, 'B', 5202, seconds)]);
    await new Promise((r) => setTimeout(r, 7000));
    const changed = performance.now();
    await ctl(run, 'R', 'set', { neighbor: 'alice', priority: 1 });
    step('R', `priority alice 1 applied in ${Math.round(performance.now() - changed)} ms`);
    const [a, b] = await flows;
    const before = mean(a, 2, 6.5) / mean(b, 2, 6.5);
    const after = mean(a, 9, seconds) / mean(b, 9, seconds);
    step('R', `A/B ratio before ${before.toFixed(2)}, after ${after.toFixed(2)}`);
    expect(before).toBeGreaterThanOrEqual(3 * 0.8);
    expect(before).toBeLessThanOrEqual(3 * 1.2);
    expect(after).toBeGreaterThanOrEqual(0.8);
    expect(after).toBeLessThanOrEqual(1.2);
    // No interruption: every half-second of both flows carried data.
    for (const [name, f] of [['A', a], ['B', b]] as const) {
      const stalled = f.intervals.filter((i) => i.bps <= 0.1e6).map((i) => `${i.start.toFixed(1)}-${i.end.toFixed(1)} s: ${Math.round(i.bps)} bit/s`);
      expect(stalled, `${name}'s flow stalled`).toEqual([]);
    }
  }, slow(60_000));

  it('cap B = 2 Mbit/s holds in both directions while A is unaffected', async () => {
    await ctl(run, 'R', 'set', { neighbor: 'bob', cap: '2mbit' });
    const [aUp, bUp] = await Promise.all([iperf(run, 'A', 5201, 5), iperf(run, 'B', 5202, 5)]);
    const [aDown, bDown] = await Promise.all([iperf(run, 'A', 5201, 5, true), iperf(run, 'B', 5202, 5, true)]);
    expect(bUp.bps).toBeLessThanOrEqual(2.2e6);
    expect(bDown.bps).toBeLessThanOrEqual(2.2e6);
    expect(bUp.bps).toBeGreaterThan(1.2e6);
    // A gets what B cannot: the rest of the uplink up, and far more than B down.
    expect(aUp.bps).toBeGreaterThanOrEqual((CAPACITY - 2.2e6) * 0.8);
    expect(aDown.bps).toBeGreaterThan(5 * bDown.bps);
    await ctl(run, 'R', 'set', { neighbor: 'bob', cap: null });
  }, slow(60_000));
});

describe.skipIf(!isRoot)('traffic control (iptables backend)', () => {
  it('drops untunneled forwarding and lets tunneled traffic through', async () => {
    const run = await startRun({ traffic: { backend: 'iptables' } });
    try {
      const status = (await ctl(run, 'R', 'traffic')) as { backend: string };
      expect(status.backend).toBe('iptables');
      await route(run);
      const u = await sink(run);
      try {
        const before = await drops(run);
        await sendUdp(run, 'M');
        const after = await drops(run);
        expect(after - before).toBeGreaterThanOrEqual(20);
        expect(u.lines.filter((l) => l.startsWith('from '))).toEqual([]);
        await sendUdp(run, 'A');
        await until('datagrams from A at U', () => u.lines.filter((l) => l === 'from 10.0.0.2').length >= 15, 5000);
      } finally {
        u.stop();
      }
    } finally {
      await downRun(run.id);
    }
  }, slow(90_000));
});
