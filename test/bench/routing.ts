/**
 * Routing benchmark (issue 11, "Speed"): babeld over the agents' tunnels, through `scrooge sim`.
 *
 *   1. line-5 and lan-10: from the agents' start (run.json `agents.startedAtMs`, all spawned at
 *      once) to "every node has an installed, reachable route to every other node's mesh
 *      addresses" (each agent's `routes`, polled every 50 ms);
 *   2. tunnel up -> route installed, per tunnel end on line-5: the WireGuard handshake (the
 *      agent's `tunnels`: poll time - latestHandshakeAgoMs) to the first poll that shows the
 *      route to that neighbor's mesh address installed;
 *   3. failover on ring-5: n1 pings n3 every 50 ms; every process of the node on n1's path is
 *      killed -9; the longest gap between two replies, and when n1's route changed;
 *   4. iperf3 on line-5 from n1 over 1, 2 and 4 tunnel hops (to n2, n3, n5's mesh addresses),
 *      beside a hand-built wireguard-go pair n1 <-> n2 over the same link and the raw link, in
 *      the same run.
 *
 *   node dist/bench/routing.js [--json] [--seconds 5]                                  (root)
 *
 * Reports what it measures and does not judge (issue targets: a route over a new tunnel in
 * ~2 s, a dead one withdrawn in ~5 s, failover < 5 s).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { controlRequest } from '../../src/agent/control.js';
import { fromBase64Strict } from '../../src/protocol/bytes.js';
import { meshAddress6 } from '../../src/routing/address.js';
import { mergeJson } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { controlSocketPath, loadRun, runDir, type SimRun } from '../../src/sim/run.js';
import { createRunner } from '../../src/system/runner.js';
import { loadAverage, round2, scenarioFile, sleep } from './lib/mesh.js';

const { values } = parseArgs({ options: { json: { type: 'boolean' }, seconds: { type: 'string', default: '5' } } });
const SECONDS = Number(values.seconds);
const runner = createRunner();
const say = (line: string) => {
  if (!values.json) console.log(line);
};

interface Route { prefix: string; neighbor: string | null; installed: boolean; reachable: boolean }
interface Tunnel { neighbor: string; latestHandshakeAgoMs: number | null }

function routes(run: SimRun, node: string): Promise<Route[]> {
  return (controlRequest(controlSocketPath(run.id, node), 'routes', {}, 5000) as Promise<{ routes: Route[] }>).then((r) => r.routes);
}

function tunnels(run: SimRun, node: string): Promise<Tunnel[]> {
  return (controlRequest(controlSocketPath(run.id, node), 'tunnels', { stats: false }, 5000) as Promise<{ tunnels: Tunnel[] }>).then((r) => r.tunnels);
}

interface Mesh { name: string; key: string; mesh6: string; mesh4: string }

/** Runs that are up, taken down if the bench is stopped by a signal. */
const active = new Set<string>();

async function up(scenario: string, net: number): Promise<{ run: SimRun; mesh: Mesh[] }> {
  const id = 'br' + randomBytes(4).toString('hex');
  active.add(id);
  const names = agentNames(scenario);
  const nodes: Record<string, unknown> = {};
  names.forEach((n, i) => (nodes[n] = { routing: { meshAddress4: `10.99.${net}.${i + 1}` } }));
  await upRun({ scenarioPath: scenarioFile(scenario), id, agents: true, configOverlay: mergeJson({ routing: { mode: 'babeld' } }, { nodes }) });
  const run = await loadRun(id);
  const mesh = names.map((name, i) => {
    const key = run.agents.keys![name]!;
    return { name, key, mesh6: meshAddress6(fromBase64Strict(key, 32)!), mesh4: `10.99.${net}.${i + 1}` };
  });
  return { run, mesh };
}

/** Agent device names of a scenario, in file order (devices of type "host" run no agent). */
function agentNames(scenario: string): string[] {
  const xml = readFileSync(scenarioFile(scenario), 'utf8');
  return [...xml.matchAll(/<device [^>]*name="([^"]+)"[^>]*type="([^"]+)"/g)].filter((m) => m[2] !== 'host').map((m) => m[1]!);
}

const prefixesOf = (m: Mesh) => [`${m.mesh6}/128`, `${m.mesh4}/32`];

/** Polls every node's routes until each has every other node's mesh prefixes; ms since the agents' start. */
async function timeToFullRoutes(run: SimRun, mesh: Mesh[], timeoutMs = 60_000, onPoll?: (at: number) => Promise<void>): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  const done = new Set<string>();
  while (Date.now() < deadline) {
    const at = Date.now();
    await onPoll?.(at);
    await Promise.all(mesh.filter((m) => !done.has(m.name)).map(async (m) => {
      const have = new Set((await routes(run, m.name).catch(() => [])).filter((r) => r.installed && r.reachable).map((r) => r.prefix));
      if (mesh.filter((o) => o !== m).every((o) => prefixesOf(o).every((p) => have.has(p)))) done.add(m.name);
    }));
    if (done.size === mesh.length) return Date.now() - run.agents.startedAtMs!;
    await sleep(50);
  }
  return null;
}

interface TunnelToRoute { node: string; neighbor: string; ms: number }

async function lineFive(): Promise<{ convergeMs: number | null; tunnelToRoute: TunnelToRoute[]; iperf: Record<string, number> }> {
  const { run, mesh } = await up('line-5.xml', 10);
  try {
    const byKey = new Map(mesh.map((m) => [m.key, m.name]));
    const handshakeAt = new Map<string, number>(); // "node>neighbor" -> unix ms
    const routeAt = new Map<string, number>();
    const poll = async (at: number) => {
      await Promise.all(mesh.map(async (m) => {
        const [ts, rs] = await Promise.all([tunnels(run, m.name).catch(() => []), routes(run, m.name).catch(() => [])]);
        for (const t of ts) {
          const k = `${m.name}>${byKey.get(t.neighbor)}`;
          if (t.latestHandshakeAgoMs !== null && !handshakeAt.has(k)) handshakeAt.set(k, at - t.latestHandshakeAgoMs);
        }
        for (const o of mesh) {
          const k = `${m.name}>${o.name}`;
          if (!routeAt.has(k) && rs.some((r) => r.prefix === `${o.mesh6}/128` && r.installed && r.reachable && r.neighbor === o.key)) routeAt.set(k, at);
        }
      }));
    };
    const convergeMs = await timeToFullRoutes(run, mesh, 60_000, poll);
    await poll(Date.now());
    const tunnelToRoute = [...handshakeAt].flatMap(([k, t]) => {
      const r = routeAt.get(k);
      const [node, neighbor] = k.split('>') as [string, string];
      return r === undefined ? [] : [{ node, neighbor, ms: Math.max(0, r - t) }];
    });
    say(`line-5: every node routes to every other node's mesh addresses ${convergeMs} ms after the agents' start`);
    say(`line-5: tunnel handshake -> route to that neighbor installed (per end, ~50 ms polls): ${tunnelToRoute.map((t) => `${t.node}>${t.neighbor} ${t.ms}`).join(', ')} ms`);
    return { convergeMs, tunnelToRoute, iperf: await throughput(run, mesh) };
  } finally {
    await downRun(run.id);
  }
}

/** iperf3 from n1: over 1, 2, 4 agent tunnels, a hand-built wireguard-go hop, and the raw link. */
async function throughput(run: SimRun, mesh: Mesh[]): Promise<Record<string, number>> {
  const ns = (n: string) => run.nodes[n]!;
  const m = (n: string) => mesh.find((x) => x.name === n)!;
  // The hand-built pair: wireguard-go on both ends of the n1 - n2 link, 10.98.0.1 <-> 10.98.0.2.
  const suffix = randomBytes(3).toString('hex');
  // Names unique on the host: wireguard-go's UAPI sockets (/var/run/wireguard) are shared by every namespace.
  const ifOf = (node: string) => `wb${suffix}${node}`;
  const keys = [0, 1].map(() => {
    const priv = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
    return { priv, pub: execFileSync('wg', ['pubkey'], { input: priv, encoding: 'utf8' }).trim() };
  });
  const ends = [{ node: 'n1', me: keys[0]!, peer: keys[1]!, addr: '10.98.0.1', peerUnderlay: '10.0.1.3' }, { node: 'n2', me: keys[1]!, peer: keys[0]!, addr: '10.98.0.2', peerUnderlay: '10.0.1.2' }];
  for (const e of ends) {
    const ifname = ifOf(e.node);
    await runner(['wireguard-go', ifname], { netns: ns(e.node) });
    const keyFile = join(runDir(run.id), `${ifname}-${e.node}.key`);
    writeFileSync(keyFile, e.me.priv + '\n', { mode: 0o600 });
    try {
      await runner(['wg', 'set', ifname, 'listen-port', '41999', 'private-key', keyFile, 'peer', e.peer.pub, 'allowed-ips', '10.98.0.0/30', 'endpoint', `${e.peerUnderlay}:41999`], { netns: ns(e.node) });
    } finally {
      rmSync(keyFile, { force: true });
    }
    await runner(['ip', '-batch', '-'], { netns: ns(e.node), input: `address add ${e.addr}/30 dev ${ifname}\nlink set dev ${ifname} mtu 1420 up\n` });
  }
  const servers = ['n2', 'n3', 'n5'].map((n) => spawn('ip', ['netns', 'exec', ns(n), 'iperf3', '-s', '-p', '5201'], { stdio: 'ignore' }));
  try {
    await sleep(500);
    const out: Record<string, number> = {};
    const targets: [string, string][] = [['raw link (no tunnel)', '10.0.1.3'], ['hand-built wireguard-go hop', '10.98.0.2'], ['1 tunnel hop (n2)', m('n2').mesh4], ['2 tunnel hops (n3)', m('n3').mesh4], ['4 tunnel hops (n5)', m('n5').mesh4]];
    for (const [label, target] of targets) {
      const r = await runner(['iperf3', '-c', target, '-p', '5201', '-t', String(SECONDS), '-J'], { netns: ns('n1'), timeoutMs: (SECONDS + 20) * 1000 });
      const bps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      out[label] = Math.round(bps / 1e5) / 10;
      say(`line-5: iperf3 n1 -> ${label}: ${out[label]} Mbit/s`);
    }
    return out;
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    for (const e of ends) await runner(['ip', 'link', 'del', ifOf(e.node)], { netns: ns(e.node), okExitCodes: [0, 1] });
  }
}

async function lanTen(): Promise<number | null> {
  const { run, mesh } = await up('lan-10.xml', 11);
  try {
    const ms = await timeToFullRoutes(run, mesh, 90_000);
    say(`lan-10: every node routes to every other node's mesh addresses ${ms} ms after the agents' start`);
    return ms;
  } finally {
    await downRun(run.id);
  }
}

async function failover(): Promise<{ victim: string; rerouteMs: number | null; lossWindowMs: number; lost: number }> {
  const { run, mesh } = await up('ring-5.xml', 12);
  const ns = (n: string) => run.nodes[n]!;
  try {
    await timeToFullRoutes(run, mesh);
    const n3 = mesh.find((m) => m.name === 'n3')!;
    const keyOf = (n: string) => mesh.find((m) => m.name === n)!.key;
    const via = async () => (await routes(run, 'n1')).find((r) => r.prefix === `${n3.mesh6}/128` && r.installed && r.reachable)?.neighbor;
    const victim = (await via()) === keyOf('n2') ? 'n2' : 'n5';
    const other = victim === 'n2' ? 'n5' : 'n2';
    const ping = spawn('ip', ['netns', 'exec', ns('n1'), 'ping', '-D', '-n', '-i', '0.05', '-W', '1', n3.mesh6], { stdio: ['ignore', 'pipe', 'ignore'] });
    const replies: { t: number; seq: number }[] = [];
    let buf = '';
    ping.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const mm = /^\[(\d+\.\d+)\] .*icmp_seq=(\d+)/.exec(l);
        if (mm) replies.push({ t: Number(mm[1]) * 1000, seq: Number(mm[2]) });
      }
    });
    try {
      while (replies.length < 10) await sleep(50);
      const pids = (await runner(['ip', 'netns', 'pids', ns(victim)])).stdout.split(/\s+/).filter(Boolean).map(Number);
      const killedAt = Date.now();
      for (const p of pids) process.kill(p, 'SIGKILL');
      let rerouteMs: number | null = null;
      while (Date.now() - killedAt < 15_000) {
        if ((await via().catch(() => undefined)) === keyOf(other)) {
          rerouteMs = Date.now() - killedAt;
          break;
        }
        await sleep(20);
      }
      await sleep(1500);
      const rs = replies.filter((r) => r.t >= killedAt - 1000);
      let gap = 0;
      let lost = 0;
      for (let i = 1; i < rs.length; i++) {
        const g = rs[i]!.t - rs[i - 1]!.t;
        if (g > gap) [gap, lost] = [g, rs[i]!.seq - rs[i - 1]!.seq - 1];
      }
      say(`ring-5: ${victim} (on n1's path to n3) killed -9 -> n1's route via ${other} after ${rerouteMs} ms; ping loss window ${Math.round(gap)} ms (${lost} pings lost at 20/s)`);
      return { victim, rerouteMs, lossWindowMs: Math.round(gap), lost };
    } finally {
      ping.kill('SIGKILL');
    }
  } finally {
    await downRun(run.id);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root');
  const load = loadAverage();
  say(`routing benchmark (load average ${load.load1} ${load.load5} ${load.load15}; 2 cores shared)`);
  const line = await lineFive();
  const lan10 = await lanTen();
  const ring = await failover();
  const result = {
    loadAverage: load,
    line5: { fullRoutesMs: line.convergeMs, tunnelUpToRouteMs: line.tunnelToRoute, iperf3Mbps: line.iperf },
    lan10: { fullRoutesMs: lan10 },
    ring5: ring,
    tunnelUpToRouteMedianMs: round2([...line.tunnelToRoute.map((t) => t.ms)].sort((a, b) => a - b)[Math.floor(line.tunnelToRoute.length / 2)] ?? NaN),
  };
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else say(`tunnel up -> route installed: median ${result.tunnelUpToRouteMedianMs} ms over ${line.tunnelToRoute.length} tunnel ends`);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`routing benchmark: ${sig}: taking down ${[...active].join(', ') || 'nothing'}`);
    void Promise.allSettled([...active].map((id) => downRun(id))).then(() => process.exit(130));
  });
}

main().catch((err) => {
  console.error(`routing benchmark failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
