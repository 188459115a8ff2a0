/**
 * Helpers for the routing netns tests (routing.test.ts) and the routing benchmark: what an
 * agent's babeld knows (`scrooge routes --json`, `status --json` routing), what the kernel has
 * (`ip route ... proto babel`), babeld processes, a ping that records when each reply came
 * (loss windows), iperf3 with the receiver's figures.
 *
 * No side effects on import beyond test/netns/lib.ts's.
 */
import { meshAddress6 } from '../../src/routing/address.js';
import { fromBase64Strict } from '../../src/protocol/bytes.js';
import { mergeJson } from '../../src/sim/agents.js';
import type { SimRun } from '../../src/sim/run.js';
import { runner, step } from './lib.js';

export interface RouteRowJson {
  prefix: string;
  via: string;
  tunnel: string;
  neighbor: string | null;
  alias: string | null;
  metric: number;
  installed: boolean;
  reachable: boolean;
  routerId: string;
}

export interface RoutingSummary {
  mode: string;
  running: boolean;
  pid: number | null;
  restarts: number;
  relaunches: number;
  interfaces: number;
  routes: number;
}

/** Every agent node's mesh addresses: IPv6 from its key, IPv4 as the test configured it. */
export interface MeshNode {
  name: string;
  key: string;
  mesh6: string;
  mesh4: string | undefined;
}

export function meshNodes(run: SimRun, mesh4: Record<string, string> = {}): MeshNode[] {
  return Object.entries(run.agents.keys ?? {}).map(([name, key]) => {
    const raw = fromBase64Strict(key, 32);
    if (!raw) throw new Error(`${name}: bad key ${key}`);
    return { name, key, mesh6: meshAddress6(raw), mesh4: mesh4[name] };
  });
}

/** The overlay that turns routing on, with `meshAddress4` per node ({n1: '10.99.0.1', ...}), `extra` merged on top. */
export function routingOverlay(mesh4: Record<string, string>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const nodes: Record<string, unknown> = {};
  for (const [n, a] of Object.entries(mesh4)) nodes[n] = { routing: { meshAddress4: a } };
  return mergeJson({ routing: { mode: 'babeld' }, nodes }, extra);
}

/** Prefixes (v6 /128 and v4 /32) of every node but `self`. */
export function otherPrefixes(nodes: MeshNode[], self: string): string[] {
  return nodes.filter((n) => n.name !== self).flatMap((n) => [`${n.mesh6}/128`, ...(n.mesh4 ? [`${n.mesh4}/32`] : [])]);
}

/**
 * The gateway's own default routes via its uplink host, as the uplink's DHCP/RA would give
 * them: `scrooge sim` gives a gateway none yet (and babeld announces only real defaults). No-op
 * where a default already exists (once the sim provides it).
 */
export async function uplinkDefaults(ns: string, via4: string, via6: string): Promise<void> {
  for (const [family, via] of [['-4', via4], ['-6', via6]] as const) {
    const has = (await runner(['ip', family, 'route', 'show', 'default'], { netns: ns })).stdout.trim() !== '';
    if (has) continue;
    step(ns, `uplink default ${family} via ${via} (stands for the uplink's DHCP/RA)`);
    await runner(['ip', family, 'route', 'add', 'default', 'via', via], { netns: ns });
  }
}

/** babeld-installed routes in the kernel: `ip route show proto babel`, both families. */
export async function kernelBabelRoutes(ns: string): Promise<string[]> {
  const out: string[] = [];
  for (const family of ['-4', '-6']) {
    const r = await runner(['ip', family, 'route', 'show', 'proto', 'babel'], { netns: ns });
    out.push(...r.stdout.split('\n').map((l) => l.trim()).filter(Boolean));
  }
  return out;
}

/** The kernel's route to `dst` (`ip route get`): device and gateway. */
export async function routeGet(ns: string, dst: string): Promise<string> {
  const r = await runner(['ip', 'route', 'get', dst], { netns: ns, okExitCodes: [0, 1, 2] });
  return r.stdout.trim() || r.stderr.trim();
}

/** PIDs of babeld processes whose config file lies under `dir` (a run's folder, a node's). */
export { babeldProcesses } from './babeldlab.js';

export interface PingReply {
  /** unix seconds (ping -D) */
  t: number;
  seq: number;
}

/** Replies in the lines of `ping -D -n`. */
export function pingReplies(lines: readonly string[]): PingReply[] {
  const out: PingReply[] = [];
  for (const l of lines) {
    const m = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/.exec(l);
    if (m) out.push({ t: Number(m[1]), seq: Number(m[2]) });
  }
  return out;
}

/** The longest silence between two replies after `since` (unix s), in ms, with the seqs lost. */
export function lossWindow(replies: readonly PingReply[], since = 0): { ms: number; lost: number; from: number } {
  let best = { ms: 0, lost: 0, from: 0 };
  const rs = replies.filter((r) => r.t >= since - 1).sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < rs.length; i++) {
    const gap = (rs[i]!.t - rs[i - 1]!.t) * 1000;
    if (gap > best.ms) best = { ms: Math.round(gap), lost: rs[i]!.seq - rs[i - 1]!.seq - 1, from: rs[i - 1]!.t };
  }
  return best;
}

export interface IperfInterval {
  start: number;
  end: number;
  bps: number;
}

export interface IperfResult {
  bps: number;
  intervals: IperfInterval[];
}

/** `iperf3 -c target -J --get-server-output` in `ns`: the receiver's per-interval figures. */
export async function iperf(ns: string, target: string, port: number, seconds: number, extra: string[] = []): Promise<IperfResult> {
  const r = await runner(['iperf3', '-c', target, '-p', String(port), '-t', String(seconds), '-i', '0.5', '-J', '--get-server-output', ...extra], { netns: ns, timeoutMs: (seconds + 20) * 1000 });
  type Intervals = { sum: { start: number; end: number; bits_per_second: number } }[];
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } }; intervals: Intervals; server_output_json?: { intervals: Intervals } };
  const received = j.server_output_json?.intervals ?? j.intervals;
  const res = { bps: j.end.sum_received.bits_per_second, intervals: received.map((i) => ({ start: i.sum.start, end: i.sum.end, bps: i.sum.bits_per_second })) };
  step(ns, `iperf3 -> ${target}:${port} ${(res.bps / 1e6).toFixed(2)} Mbit/s`);
  return res;
}

/** Mean of the intervals inside [from, to] seconds. */
export function meanBps(r: IperfResult, from: number, to: number): number {
  const xs = r.intervals.filter((i) => i.start >= from && i.end <= to + 1e-6).map((i) => i.bps);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
