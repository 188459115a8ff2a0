/**
 * Shared helpers for the netns tests, in the style of WireGuard's tests/netns.sh: names carry a
 * unique id, cleanup always runs (even when a test fails), readiness is polled (never slept
 * for), and every step is logged with the namespace it runs in.
 *
 * There is no `ping` on these machines, so reachability is shown with UDP: a tiny node echo
 * server in the target namespace and a probe in the source namespace that retries a few times
 * and reports which addresses answered (same idea as ping: a request there and a reply back).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type UpResult, downRun, listNamespaces, upRun } from '../../src/sim/build.js';
import { createRunner } from '../../src/system/runner.js';

export const SCENARIOS = fileURLToPath(new URL('../../core-scenarios/', import.meta.url));
export const runner = createRunner();
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

// Runs of this test process live in a temporary base directory, not in /run/scrooge/sim.
const ownBaseDir = process.env['SCROOGE_SIM_DIR'] ? undefined : mkdtempSync(join(tmpdir(), 'scrooge-sim-'));
if (ownBaseDir) process.env['SCROOGE_SIM_DIR'] = ownBaseDir;

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

/** Builds `scenario`, runs `fn`, and always removes the run again. */
export async function withSim<T>(scenario: string, fn: (sim: UpResult) => Promise<T>): Promise<T> {
  const sim = await up(scenario);
  try {
    return await fn(sim);
  } finally {
    await down(sim.run.id);
  }
}

/** Polls `check` every 50 ms until it returns a value other than undefined/false. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a command in a namespace through the project's runner; returns stdout. */
export async function inNs(ns: string, argv: string[], timeoutMs = 10_000): Promise<string> {
  step(ns, argv.map((a) => (a.length > 40 ? '<script>' : a)).join(' '));
  return (await runner(argv, { netns: ns, timeoutMs })).stdout;
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

/** Starts a long-running process in `ns` (killed by `stop`, by downAll, and by sim down). */
export function background(ns: string, argv: string[]): Background {
  step(ns, `background: ${argv.map((a) => (a.length > 40 ? '<script>' : a)).join(' ')}`);
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
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

/** Which of `targets` answered a probe sent from `ns`. */
export async function reach(ns: string, targets: string[]): Promise<Record<string, boolean>> {
  const out = await inNs(ns, ['node', '-e', PROBE, ...targets]);
  const result = JSON.parse(out) as Record<string, boolean>;
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
