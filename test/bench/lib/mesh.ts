/**
 * Pieces the mesh benchmarks share (converge.js, peers.js, scale.js): bring a scenario up with
 * agents and wait until it converges (`sim up` + `sim wait`), and read what every process of the
 * run costs right then: agents and wireguard-go daemons, CPU (utime+stime) and RSS from /proc.
 * No side effects on import. Lives in a folder so scripts/build.mjs does not make it an entry.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { agentTunnelStatus } from '../../../src/sim/agents.js';
import { type UpResult, upRun } from '../../../src/sim/build.js';
import { loadRun, type SimRun } from '../../../src/sim/run.js';
import { agentPairs } from '../../../src/sim/scenario.js';
import { type WaitResult, waitForTunnels } from '../../../src/sim/wait.js';
import type { Runner } from '../../../src/system/runner.js';
import { comm, cpuSeconds, rssMiB } from '../../netns/proc.js';

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
export const round2 = (x: number) => Math.round(x * 100) / 100;
export const round3 = (x: number) => Math.round(x * 1000) / 1000;
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * core-scenarios/NAME.xml (or NAME itself when it is a path), from the bundle (dist/bench/X.js, where import.meta.url is the output
 * file) or from the sources (test/bench/lib/mesh.ts, under vitest).
 */
export function scenarioFile(name: string): string {
  if (name.includes('/')) return name; // a path
  const file = `${name.replace(/\.xml$/, '')}.xml`;
  const candidates = ['../../core-scenarios/', '../../../core-scenarios/'].map((d) => fileURLToPath(new URL(d + file, import.meta.url)));
  return candidates.find((c) => existsSync(c)) ?? candidates[0]!;
}

/** Every process in the given namespaces (one `ip -batch` of `netns pids`). */
export async function namespacePids(runner: Runner, namespaces: readonly string[]): Promise<number[]> {
  if (namespaces.length === 0) return [];
  const { stdout } = await runner(['ip', '-force', '-batch', '-'], {
    input: namespaces.map((ns) => `netns pids ${ns}`).join('\n') + '\n',
    okExitCodes: [0, 1],
    timeoutMs: 60_000,
  });
  return [...new Set(stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number))];
}

/** The wireguard-go daemons of a run (one per tunnel end). */
export async function wireguardGoPids(runner: Runner, run: SimRun): Promise<number[]> {
  return (await namespacePids(runner, run.namespaces)).filter((p) => comm(p) === 'wireguard-go');
}

/** CPU seconds of a process, 0 when it is gone (a daemon that exited used nothing more). */
export function cpuOr0(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return 0;
  }
}

let clockTicks: number | undefined;

/**
 * cutime + cstime: CPU of the children a process has waited for (its `ip`, `nft`, `tc` runs; not
 * its wireguard-go daemons, which are still running), seconds; 0 when it is gone.
 */
export function childrenCpuSeconds(pid: number): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[13]) + Number(f[14])) / clockTicks; // fields 16 and 17; f[0] is field 3
  } catch {
    return 0;
  }
}

/** CPU seconds of each pid, keyed by pid: read twice, the difference is a window's use. */
export function cpuByPid(pids: readonly number[]): Map<number, number> {
  return new Map(pids.map((p) => [p, cpuOr0(p)]));
}

/** CPU used between two `cpuByPid` readings, by processes present in the first. */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, t0] of before) total += Math.max(0, (after.get(pid) ?? t0) - t0);
  return total;
}

/**
 * Proportional set size in MiB (smaps_rollup Pss): shared pages (the node or wireguard-go binary,
 * libraries) divided among the processes sharing them, so a sum over processes is what they
 * really hold, where a sum of RSS counts every shared page once per process. NaN if unknown.
 */
export function pssMiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
  } catch {
    return NaN;
  }
}

/** /proc/meminfo MemAvailable, MiB. */
export function memAvailableMiB(): number {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/** 1-minute load average and the `uptime`-style line, for the record of a noisy machine. */
export function loadAverage(): { load1: number; load5: number; load15: number } {
  const [a, b, c] = readFileSync('/proc/loadavg', 'utf8').split(' ').map(Number);
  return { load1: a!, load5: b!, load15: c! };
}

export interface AgentPid {
  node: string;
  pid: number;
}

export function agentPidsOf(run: SimRun): AgentPid[] {
  return Object.entries(run.agents.pids).map(([node, a]) => ({ node, pid: a.pid }));
}

/** What every process of a converged run costs at one moment. */
export interface MeshSnapshot {
  agents: AgentPid[];
  agentCpu: Map<number, number>;
  /** CPU of the short-lived processes each agent ran (cutime + cstime), not in agentCpu. */
  agentChildrenCpu: number;
  agentRssMiB: number[];
  wireguardGo: number[];
  wireguardGoCpu: Map<number, number>;
  wireguardGoRssMiB: number[];
}

/** Reads everything at once (agents first: they are what convergence is measured on). */
export async function snapshot(runner: Runner, run: SimRun): Promise<MeshSnapshot> {
  const agents = agentPidsOf(run);
  const agentCpu = cpuByPid(agents.map((a) => a.pid));
  const agentRssMiB = agents.map((a) => rssMiB(a.pid));
  const agentChildrenCpu = sum(agents.map((a) => childrenCpuSeconds(a.pid)));
  const wireguardGo = await wireguardGoPids(runner, run);
  const wireguardGoCpu = cpuByPid(wireguardGo);
  const wireguardGoRssMiB = wireguardGo.map((p) => rssMiB(p) || 0);
  return { agents, agentCpu, agentChildrenCpu, agentRssMiB, wireguardGo, wireguardGoCpu, wireguardGoRssMiB };
}

export interface Converged {
  run: SimRun;
  up: UpResult;
  wait: WaitResult;
  /** Agent pairs that must handshake (`sim wait`), and tunnel ends (2 per pair: one wireguard-go each). */
  pairs: number;
  /** Read right at convergence. */
  at: MeshSnapshot;
}

/**
 * `sim up` with agents, then `sim wait` (src/sim/wait.ts) and a snapshot right at convergence.
 * The caller takes the run down (`downRun(id)`), also when this throws.
 */
export async function upAndConverge(
  runner: Runner,
  scenario: string,
  id: string,
  opts: { overlay?: Record<string, unknown> | null; timeoutMs?: number } = {},
): Promise<Converged> {
  const up = await upRun({ scenarioPath: scenarioFile(scenario), id, agents: true, configOverlay: opts.overlay ?? null });
  const run = await loadRun(id);
  const wait = await waitForTunnels(run, opts.timeoutMs ?? 60_000, { status: agentTunnelStatus });
  const at = await snapshot(runner, run);
  return { run, up, wait, pairs: agentPairs(run.topology).length, at };
}
