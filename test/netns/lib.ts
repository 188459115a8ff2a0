/**
 * Shared helpers for the netns tests, in the style of WireGuard's tests/netns.sh: names carry a
 * unique id, cleanup always runs (even when a test fails), readiness is polled (never slept
 * for), and every step is logged with the namespace it runs in.
 *
 * Reachability is shown with real `ping` (iputils); a UDP echo server and probe remain for
 * tests that want to see a datagram go there and back.
 *
 * Runs with agents: `upWithAgents` starts `scrooge run` in every agent node; `scrooge`, `ctlJson`,
 * `agent` and `simWait` drive the CLI in-process, as a person would from a shell; `agentLog`
 * reads an agent's pino log, whose timestamps say when things happened inside the agent.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { main } from '../../src/cli/cli.js';
import type { CliIO } from '../../src/cli/command.js';
import { mergeJson } from '../../src/sim/agents.js';
import { type UpResult, downRun, listNamespaces, upRun } from '../../src/sim/build.js';
import { type SimRun, loadRun, logsDir } from '../../src/sim/run.js';
import { createRunner } from '../../src/system/runner.js';
import { running } from './proc.js';
import { Station } from './station.js';

export const SCENARIOS = fileURLToPath(new URL('../../core-scenarios/', import.meta.url));
export const runner = createRunner();
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

// Runs of this test process live in a temporary base directory, not in /run/scrooge/sim.
const ownBaseDir = process.env['SCROOGE_SIM_DIR'] ? undefined : mkdtempSync(join(tmpdir(), 'scrooge-sim-'));
if (ownBaseDir) {
  process.env['SCROOGE_SIM_DIR'] = ownBaseDir;
  // Also when a test file never calls cleanupAll (its runs are down by then; the folder is ours).
  process.once('exit', () => rmSync(ownBaseDir, { recursive: true, force: true }));
}

/**
 * The WireGuard backend every test agent is told to use: SCROOGE_TEST_BACKEND=kernel|userspace
 * (test/vm sets kernel, to run these tests where the module exists); unset, the agents pick
 * (`auto`). Forced, an agent that cannot have it fails to start instead of taking the other.
 */
export const TEST_BACKEND = ((b) => {
  if (b === undefined || b === '') return undefined;
  if (b !== 'kernel' && b !== 'userspace') throw new Error(`SCROOGE_TEST_BACKEND must be kernel or userspace, not ${JSON.stringify(b)}`);
  return b;
})(process.env['SCROOGE_TEST_BACKEND']);

/** A test's config overlay with TEST_BACKEND merged in (the test's own tunnels settings kept). */
export function testOverlay(overlay: Record<string, unknown> | null): Record<string, unknown> | null {
  if (!TEST_BACKEND) return overlay;
  return mergeJson({ tunnels: { backend: TEST_BACKEND } }, overlay ?? {});
}

/**
 * How much slower than a plain machine these tests may run: SCROOGE_TEST_SLOWDOWN (default 1).
 * Under emulation (test/vm: qemu without KVM runs node ~30x slower) every time budget here
 * (polls, waits, command timeouts, agents' start) is multiplied by it; what the tests measure
 * and assert stays the same.
 */
export const SLOWDOWN = ((s) => {
  const n = Number(s ?? 1);
  if (!(n >= 1)) throw new Error(`SCROOGE_TEST_SLOWDOWN must be a number >= 1, not ${JSON.stringify(s)}`);
  return n;
})(process.env['SCROOGE_TEST_SLOWDOWN'] || undefined);
if (SLOWDOWN > 1) process.env['SCROOGE_SIM_READY_TIMEOUT_MS'] ??= String(20_000 * SLOWDOWN);

/** A time budget of `ms` on a plain machine, scaled by SLOWDOWN. */
export function slow(ms: number): number {
  return ms * SLOWDOWN;
}

/** `t` + 8 hex digits: unique per call, a valid run id (<= 10 chars, no dash). */
export function newRunId(): string {
  return 't' + randomBytes(4).toString('hex');
}

export function step(where: string, what: string): void {
  // One line per step, so a failing test's output shows how far it got and where.
  console.log(`[${where}] ${what}`);
}

/** Every run this process started, so `downAll` can clean up whatever a failure left. */
const started = new Set<string>();
const children = new Set<ChildProcess>();

export async function up(scenario: string, id = newRunId()): Promise<UpResult> {
  started.add(id);
  step(id, `sim up ${scenario}`);
  const result = await upRun({ scenarioPath: join(SCENARIOS, scenario), id, agents: false });
  step(id, `built ${result.run.namespaces.length} namespaces in ${result.ms} ms`);
  return result;
}

/**
 * `sim up` with agents: every agent node runs `scrooge run` (all started at the same moment);
 * `overlay` is merged into every agent's config (`{"nodes": {"n1": {...}}}` for one node).
 */
export async function upWithAgents(scenario: string, overlay: Record<string, unknown> | null = null, id = newRunId()): Promise<UpResult> {
  started.add(id);
  step(id, `sim up ${scenario} with agents${overlay ? ` (overlay ${JSON.stringify(overlay)})` : ''}`);
  const result = await upRun({ scenarioPath: join(SCENARIOS, scenario), id, agents: true, configOverlay: testOverlay(overlay) });
  step(id, `built ${result.run.namespaces.length} namespaces in ${result.ms} ms; agents answer ${Date.now() - result.run.agents.startedAtMs!} ms after their start`);
  return result;
}

export async function down(id: string) {
  step(id, 'sim down');
  const report = await downRun(id);
  started.delete(id);
  return report;
}

/** Removes every run this process started and kills helper processes; for afterEach/afterAll. */
export async function downAll(): Promise<void> {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  for (const id of [...started]) await down(id).catch((err) => step(id, `down failed: ${String(err)}`));
}

/** downAll, then removes the temporary base directory; for afterAll. */
export async function cleanupAll(): Promise<void> {
  await downAll();
  if (ownBaseDir) rmSync(ownBaseDir, { recursive: true, force: true });
}

// Every test file that imports these helpers cleans up at its end, whether or not it asks to
// (cleanupAll is idempotent): runs it started, helper processes, its temporary sim folder.
afterAll(cleanupAll);

/** Builds `scenario`, runs `fn`, and always removes the run again. */
export async function withSim<T>(scenario: string, fn: (sim: UpResult) => Promise<T>): Promise<T> {
  const sim = await up(scenario);
  try {
    return await fn(sim);
  } finally {
    await down(sim.run.id);
  }
}

/** Polls `check` every 50 ms (x SLOWDOWN) until it returns a value other than undefined/false. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000): Promise<T> {
  timeoutMs = slow(timeoutMs);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    // Polled less often when slow: under emulation a poll costs the CPU the agents need.
    await new Promise((r) => setTimeout(r, slow(50)));
  }
}

/** Runs a command in a namespace through the project's runner; returns stdout. */
export async function inNs(ns: string, argv: string[], timeoutMs = 10_000): Promise<string> {
  step(ns, argv.map((a) => (a.length > 40 ? '<script>' : a)).join(' '));
  return (await runner(argv, { netns: ns, timeoutMs: slow(timeoutMs) })).stdout;
}

/** The link-local address of `dev` in `ns`, from the kernel (polled: it appears on link up). */
export async function linkLocal(ns: string, dev: string): Promise<string> {
  return until(`${ns}: a link-local address on ${dev}`, async () => {
    const out = await runner(['ip', '-n', ns, '-j', '-6', 'address', 'show', 'dev', dev, 'scope', 'link']);
    // iproute2 6.1 prints an empty object first in addr_info.
    const info = JSON.parse(out.stdout) as Array<{ addr_info: Array<{ local?: string }> }>;
    return info[0]?.addr_info.find((a) => a.local?.startsWith('fe80:'))?.local;
  });
}

export interface Background {
  child: ChildProcess;
  /** Lines printed so far. */
  lines: string[];
  /** Resolves with the first line matching `re`. */
  line(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): void;
}

/**
 * Starts a long-running process in `ns` (killed by `stop`, by downAll, and by sim down).
 * `session: true` starts it in a session of its own, as the agent starts its wireguard-go
 * daemons: with the kernel's autogroup scheduling (sched_autogroup_enabled), a session is a
 * CPU scheduling group, and on a loaded machine that alone moves throughput by ~10 %.
 */
export function background(ns: string, argv: string[], opts: { session?: boolean } = {}): Background {
  step(ns, `background: ${argv.map((a) => (a.length > 40 ? '<script>' : a)).join(' ')}`);
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.session ?? false });
  children.add(child);
  const lines: string[] = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr!.on('data', (chunk: Buffer) => step(ns, `stderr: ${chunk.toString().trim()}`));
  return {
    child,
    lines,
    line: (re, timeoutMs = 5000) => until(`${ns}: a line matching ${re}`, () => lines.find((l) => re.test(l)), timeoutMs),
    stop: () => {
      child.kill('SIGKILL');
      children.delete(child);
    },
  };
}

export const ECHO_PORT = 7777;

/** UDP echo server on [::]:7777 (dual-stack, so IPv4 too); prints "ready" once bound. */
const ECHO = `
const s = require('node:dgram').createSocket({ type: 'udp6', ipv6Only: false });
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(${ECHO_PORT}, '::', () => console.log('ready'));
`;

export async function startEcho(ns: string): Promise<Background> {
  const bg = background(ns, ['node', '-e', ECHO]);
  await bg.line(/^ready$/);
  return bg;
}

/**
 * Sends a datagram to each target's echo port every 100 ms, 10 times at most, and reports which
 * answered. Targets are IPv4, IPv6 or `fe80::...%dev`.
 */
const PROBE = `
const targets = process.argv.slice(1);
const s = require('node:dgram').createSocket({ type: 'udp6', ipv6Only: false });
const got = new Set();
s.on('message', (m) => got.add(m.toString()));
s.bind(0, () => {
  let round = 0;
  const tick = () => {
    // Errors (no route yet, ...) just mean no answer from that target.
    for (const t of targets) if (!got.has(t)) s.send(t, ${ECHO_PORT}, t.includes(':') ? t : '::ffff:' + t, () => {});
    if (++round < 10 && got.size < targets.length) return setTimeout(tick, 100);
    console.log(JSON.stringify(Object.fromEntries(targets.map((t) => [t, got.has(t)]))));
    s.close();
  };
  tick();
});
`;

/** Which of `targets` answered a UDP probe sent from `ns` (needs `startEcho` there). */
export async function reachUdp(ns: string, targets: string[]): Promise<Record<string, boolean>> {
  const out = await inNs(ns, ['node', '-e', PROBE, ...targets]);
  const result = JSON.parse(out) as Record<string, boolean>;
  step(ns, `reachUdp: ${Object.entries(result).map(([t, ok]) => `${t} ${ok ? 'ok' : 'NO'}`).join(', ')}`);
  return result;
}

/** `ping -c1 -W1 target` from `ns`: true if the target answered. */
export async function ping(ns: string, target: string, count = 1): Promise<boolean> {
  const r = await runner(['ping', '-c', String(count), '-i', '0.2', '-W', '1', target], { netns: ns, okExitCodes: [0, 1, 2], timeoutMs: 5000 + count * 1000 });
  return r.exitCode === 0;
}

/**
 * Which of `targets` answer a real ping from `ns` (all at once; a target gets three tries, so
 * neighbor discovery right after `sim up` does not count as unreachable). Targets are IPv4,
 * IPv6 or `fe80::...%dev`.
 */
export async function reach(ns: string, targets: string[]): Promise<Record<string, boolean>> {
  step(ns, `ping ${targets.join(' ')}`);
  const answers = await Promise.all(
    targets.map(async (t) => {
      for (let i = 0; i < 3; i++) if (await ping(ns, t)) return true;
      return false;
    }),
  );
  const result = Object.fromEntries(targets.map((t, i) => [t, answers[i]!]));
  step(ns, `reach: ${Object.entries(result).map(([t, ok]) => `${t} ${ok ? 'ok' : 'NO'}`).join(', ')}`);
  return result;
}

/** Host state that a run must not change: namespace names and host interface names. */
export async function hostState(): Promise<{ namespaces: string[]; links: string[] }> {
  const links = (await runner(['ip', '-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '')
    .filter((n) => n !== '');
  return { namespaces: (await listNamespaces(runner)).sort(), links: links.sort() };
}

// ------------------------------------------------------------------ agents, through the CLI

/** Runs the CLI in-process (as `scrooge ARGV...`) and captures what it prints. */
export async function scrooge(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { out: (t) => void (out += t), err: (t) => void (err += t) };
  const code = await main(argv, io);
  return { code, out, err };
}

/** `scrooge sim ctl ID NODE -- ARGS... --json`, parsed; throws with the CLI's error otherwise. */
export async function ctlJson<T = unknown>(id: string, node: string, ...args: string[]): Promise<T> {
  const r = await scrooge('sim', 'ctl', id, node, '--', ...args, '--json');
  if (r.code !== 0) throw new Error(`scrooge sim ctl ${id} ${node} -- ${args.join(' ')}: exit ${r.code}: ${r.err.trim()}`);
  return JSON.parse(r.out) as T;
}

/** `scrooge sim ctl ID NODE -- ARGS...` for commands that change something; logged. */
export async function ctl(id: string, node: string, ...args: string[]): Promise<string> {
  step(`${id}-${node}`, `scrooge ${args.join(' ')}`);
  const r = await scrooge('sim', 'ctl', id, node, '--', ...args);
  if (r.code !== 0) throw new Error(`scrooge sim ctl ${id} ${node} -- ${args.join(' ')}: exit ${r.code}: ${r.err.trim()}`);
  return r.out;
}

/** `scrooge sim agent ID NODE start|stop|kill`. */
export async function agent(id: string, node: string, action: 'start' | 'stop' | 'kill'): Promise<void> {
  step(`${id}-${node}`, `sim agent ${action}`);
  const r = await scrooge('sim', 'agent', id, node, action);
  if (r.code !== 0) throw new Error(`scrooge sim agent ${id} ${node} ${action}: exit ${r.code}: ${r.err.trim()}`);
}

export interface WaitJson {
  ok: boolean;
  seconds: number;
  sinceAgentsStarted: number | null;
  pairs: { a: string; b: string; ok: boolean; missing?: string }[];
}

/** `scrooge sim wait ID --timeout S --json`; throws (naming what is missing) unless ok. */
export async function simWait(id: string, timeoutSeconds = 20): Promise<WaitJson> {
  const r = await scrooge('sim', 'wait', id, '--timeout', String(slow(timeoutSeconds)), '--json');
  const w = JSON.parse(r.out) as WaitJson;
  if (!w.ok) throw new Error(`sim wait ${id}: ${w.pairs.filter((p) => !p.ok).map((p) => `${p.a}-${p.b}: ${p.missing}`).join('; ')}`);
  step(id, `sim wait: every pair handshaken after ${w.seconds} s (${w.sinceAgentsStarted} s since the agents started)`);
  return w;
}

export function runInfo(id: string): Promise<SimRun> {
  return loadRun(id);
}

// ------------------------------------------------------------------ what agents report

export interface TunnelRow {
  ifname: string;
  state: string;
  role: string;
  listenPort: number;
  peerEndpoint: string | null;
  latestHandshakeAgoMs: number | null;
  rxBytes: number;
  txBytes: number;
}

export interface NeighborRow {
  key: string;
  alias: string | null;
  state: 'heard' | 'two-way' | 'quiet';
  iface: string | null;
  linkLocal: string | null;
  control: string | null;
  lastSeq: string | null;
  lastHeardAgoMs: number;
  priority: number;
  cap: string | null;
  tunnel: TunnelRow | null;
}

export interface StatusJson {
  publicKey: string;
  tunnelAddress: string;
  pid: number;
  neighbors: number;
  tunnels: number;
  counters: { sent: Record<string, number>; received: Record<string, number>; redundant: Record<string, number>; dropped: Record<string, number> };
}

export async function neighbors(id: string, node: string): Promise<NeighborRow[]> {
  return (await ctlJson<{ neighbors: NeighborRow[] }>(id, node, 'neighbors')).neighbors;
}

export async function status(id: string, node: string): Promise<StatusJson> {
  return ctlJson<StatusJson>(id, node, 'status');
}

/** `after - before` per drop reason, without the zeros. */
export function dropDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const d = (after[k] ?? 0) - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

export interface LogLine {
  time: number;
  msg: string;
  [field: string]: unknown;
}

/** The agent's log (pino JSON lines), oldest first. */
export function agentLog(id: string, node: string): LogLine[] {
  const file = join(logsDir(id), `${node}.log`);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** The WireGuard backend NODE's agent runs (its 'running' log line), e.g. to count daemons. */
export function agentBackend(id: string, node: string): 'kernel' | 'userspace' {
  const line = agentLog(id, node).findLast((l) => l.msg === 'running');
  const backend = line?.['backend'];
  if (backend !== 'kernel' && backend !== 'userspace') throw new Error(`${node}'s agent has logged no WireGuard backend`);
  return backend;
}

/** Events named `msg` in NODE's log, optionally about one neighbor, at or after `since` (unix ms). */
export function events(id: string, node: string, msg: string, opts: { neighbor?: string; since?: number } = {}): LogLine[] {
  return agentLog(id, node).filter(
    (l) => l.msg === msg && (opts.neighbor === undefined || l['neighbor'] === opts.neighbor) && (opts.since === undefined || l.time >= opts.since),
  );
}

// ------------------------------------------------------------------ kernel state

/** Names of the WireGuard tunnel interfaces (`sc...`) in `ns`, from `ip -br link`, sorted. */
export async function tunnelLinks(ns: string): Promise<string[]> {
  const out = (await runner(['ip', '-n', ns, '-br', 'link', 'show'])).stdout;
  return out
    .split('\n')
    .map((l) => l.split(/\s+/)[0]?.split('@')[0] ?? '')
    .filter((n) => /^sc[0-9a-f]{13}$/.test(n))
    .sort();
}

/** Live wireguard-go processes, with the interface each serves (from its command line). */
export function wireguardGoProcesses(): { pid: number; ifname: string }[] {
  const out: { pid: number; ifname: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (!argv[0]?.endsWith('wireguard-go') || !running(pid)) continue;
    out.push({ pid, ifname: argv[argv.length - 1]! });
  }
  return out;
}

/** Processes in the given namespaces (`ip netns pids`), running ones only. */
export async function pidsInNamespaces(namespaces: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const ns of namespaces) {
    const r = await runner(['ip', 'netns', 'pids', ns], { okExitCodes: [0, 1] });
    pids.push(...r.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number));
  }
  return pids.filter(running);
}

/** A station (station.ts) in `ns`, killed by downAll like every helper process. */
export async function startStation(ns: string, iface = 'eth0'): Promise<Station> {
  step(ns, `station on ${iface}: UDP 51819, joined ff02::114`);
  return Station.start(ns, { iface, onSpawn: (child) => children.add(child), log: (l) => console.log(l) });
}
