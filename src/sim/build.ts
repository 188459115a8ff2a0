/**
 * `sim up` / `sim down`: applies a plan (plan.ts) to the kernel and removes it again.
 *
 * Every command goes through the one runner (src/system/runner.ts) as argv plus stdin batches,
 * so a scenario costs about two process spawns per namespace: one host `ip -batch` for all
 * namespaces, sysctls and veth pairs, one `ip -n NS -batch` per namespace (a few at a time),
 * `tc -batch` / `nft -f` only where the scenario shapes or drops something, and one readiness
 * check per namespace (`waitOperational`). lan-20 comes up in about 0.3 s.
 *
 * `down` is idempotent and also cleans a crashed or half-built run: every namespace named
 * `ID-...` in `ip netns list` belongs to the run (run ids have no dash), recorded in run.json
 * or not. It kills every process inside them (SIGTERM, up to 2 s, then SIGKILL), deletes them
 * (which deletes their veths and bridges), removes WireGuard UAPI sockets that killed
 * wireguard-go daemons left behind, and finally the run directory.
 */
import { mkdir, readFile, readdir, rm, unlink } from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { ScroogeError } from '../errors.js';
import { exists, mapLimited } from '../system/helpers.js';
import { type Runner, createRunner } from '../system/runner.js';
import { USERSPACE_SOCKET_DIR } from '../system/wireguard/index.js';
import { startAgents } from './agents.js';
import { type SimPlan, namespaceName, planRun, validateRunId } from './plan.js';
import {
  type SimRun,
  UNIX_PATH_MAX,
  controlSocketPath,
  isAlive,
  loadRun,
  logsDir,
  nodeDir,
  runDir,
  saveRun,
} from './run.js';
import { parseScenario } from './scenario.js';

export interface SimDeps {
  runner?: Runner;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
}

/** How many per-namespace batches run at once: the machines we target have 2 cores. */
const PARALLEL = 4;
/** `down`: how long processes get between SIGTERM and SIGKILL. */
const TERM_GRACE_MS = 2000;
/** Batches for big scenarios take longer than the runner's 10 s default would allow. */
const BATCH_TIMEOUT_MS = 60_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new ScroogeError('EPERM', `scrooge sim ${what} needs root: it manages network namespaces`, 'run it with sudo');
  }
}

/** Names from `ip netns list` ("name (id: 3)" or "name" per line). */
export async function listNamespaces(runner: Runner): Promise<string[]> {
  const { stdout } = await runner(['ip', 'netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

/** Creates everything in `plan`. The caller removes a partial build with `downRun`. */
export async function applyPlan(plan: SimPlan, deps: { runner: Runner; logger?: Logger }): Promise<void> {
  const { runner, logger } = deps;
  const log = logger?.child({ component: 'sim', run: plan.runId });
  log?.debug({ namespaces: plan.namespaces.length, veths: plan.veths.length }, 'host batch');
  await runner(['ip', '-batch', '-'], { input: plan.hostBatch.join('\n') + '\n', timeoutMs: BATCH_TIMEOUT_MS });
  await mapLimited(plan.ipBatches, PARALLEL, async ({ namespace, lines }) => {
    log?.debug({ namespace }, 'ip batch');
    await runner(['ip', '-n', namespace, '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: BATCH_TIMEOUT_MS });
  });
  await mapLimited(plan.tcBatches, PARALLEL, async ({ namespace, lines }) => {
    log?.debug({ namespace }, 'tc batch');
    await runner(['tc', '-n', namespace, '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: BATCH_TIMEOUT_MS });
  });
  await mapLimited(plan.nftRulesets, PARALLEL, async ({ namespace, ruleset }) => {
    log?.debug({ namespace }, 'nft ruleset');
    await runner(['nft', '-f', '-'], { netns: namespace, input: ruleset, timeoutMs: BATCH_TIMEOUT_MS });
  });
}

/** The nodes' set-up routes (plan.routeBatches): after waitOperational, so every nexthop is up. */
export async function applyRoutes(plan: SimPlan, runner: Runner): Promise<void> {
  await mapLimited(plan.routeBatches, PARALLEL, async ({ namespace, lines }) => {
    await runner(['ip', '-n', namespace, '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: BATCH_TIMEOUT_MS });
  });
}

interface LinkJson {
  ifname: string;
  operstate?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_slave_data?: { state?: string } };
}

/** Why an interface is not ready yet, or undefined when it is. */
function notReady(link: LinkJson): string | undefined {
  if (link.ifname === 'lo' || link.linkinfo?.info_kind === 'bridge') return undefined;
  if (link.operstate !== 'UP') return `operstate ${link.operstate ?? 'unknown'}`;
  const port = link.linkinfo?.info_slave_kind === 'bridge' ? link.linkinfo.info_slave_data?.state : undefined;
  if (port !== undefined && port !== 'forwarding') return `bridge port ${port}`;
  return undefined;
}

/**
 * Polls until every interface is operationally up and every bridge port forwards. Carrier
 * reaches operstate, the bridge and IPv6 addrconf through the kernel's linkwatch, which handles
 * a veth whose ifindex equals its peer's (common: each namespace numbers from 2) as
 * non-urgent, up to a second later; until then the bridge port is "disabled" and drops frames.
 */
export async function waitOperational(plan: SimPlan, runner: Runner, timeoutMs = 10_000): Promise<void> {
  let pending = plan.ipBatches.map((b) => b.namespace);
  const deadline = Date.now() + timeoutMs;
  const why = new Map<string, string>();
  for (;;) {
    const still: string[] = [];
    await mapLimited(pending, PARALLEL, async (ns) => {
      const { stdout } = await runner(['ip', '-n', ns, '-d', '-j', 'link', 'show']);
      const problems = (JSON.parse(stdout) as LinkJson[]).flatMap((l) => {
        const reason = notReady(l);
        return reason ? [`${l.ifname} (${reason})`] : [];
      });
      if (problems.length) {
        still.push(ns);
        why.set(ns, problems.join(', '));
      }
    });
    pending = still;
    if (pending.length === 0) return;
    if (Date.now() > deadline) {
      const detail = pending.map((ns) => `${ns}: ${why.get(ns)}`).join('; ');
      throw new ScroogeError('EBUILD', `interfaces did not come up within ${timeoutMs / 1000} s: ${detail}`);
    }
    await sleep(50);
  }
}

export interface UpOptions {
  scenarioPath: string;
  id: string;
  /** Start `scrooge run` in every agent node (false: --no-agents). */
  agents: boolean;
  configOverlay?: Record<string, unknown> | null;
}

export interface UpResult {
  run: SimRun;
  plan: SimPlan;
  /** Time to build the network (without agents). */
  ms: number;
}

async function readScenario(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ScroogeError('ESCENARIO', `scenario file ${file} not found`);
    if (code === 'EISDIR') throw new ScroogeError('ESCENARIO', `scenario file ${file} is a directory`);
    throw new ScroogeError('ESCENARIO', `cannot read scenario file ${file}: ${(err as Error).message}`);
  }
}

/** Builds a scenario; on a build failure removes what it made; then starts the agents. */
export async function upRun(opts: UpOptions, deps: SimDeps = {}): Promise<UpResult> {
  requireRoot('up');
  validateRunId(opts.id);
  const env = deps.env ?? process.env;
  const runner = deps.runner ?? createRunner(deps.logger ? { logger: deps.logger } : {});
  const scenarioPath = path.resolve(opts.scenarioPath);
  const topology = parseScenario(await readScenario(scenarioPath));
  const plan = planRun(topology, opts.id, opts.configOverlay ?? null);

  const longest = topology.devices.reduce((a, d) => (d.name.length > a.length ? d.name : a), '');
  if (longest && controlSocketPath(opts.id, longest, env).length > UNIX_PATH_MAX) {
    throw new ScroogeError(
      'ESCENARIO',
      `control socket path ${controlSocketPath(opts.id, longest, env)} is longer than ${UNIX_PATH_MAX} bytes`,
      'use shorter node names or a shorter SCROOGE_SIM_DIR',
    );
  }
  const prefix = `${opts.id}-`;
  const leftovers = (await listNamespaces(runner)).filter((n) => n.startsWith(prefix));
  if ((await exists(runDir(opts.id, env))) || leftovers.length > 0) {
    throw new ScroogeError('ERUNEXISTS', `sim run "${opts.id}" already exists`, `scrooge sim down ${opts.id} removes it`);
  }

  const run: SimRun = {
    version: 1,
    id: opts.id,
    scenarioPath,
    createdAt: new Date().toISOString(),
    state: 'building',
    topology,
    namespaces: plan.namespaces.map((n) => n.name),
    nodes: Object.fromEntries(topology.devices.map((d) => [d.name, namespaceName(opts.id, d.name)])),
    agents: { enabled: opts.agents, configOverlay: opts.configOverlay ?? null, pids: {} },
    unapplied: plan.unapplied,
    notes: plan.notes,
  };
  const started = performance.now();
  try {
    await mkdir(logsDir(opts.id, env), { recursive: true });
    for (const d of topology.devices) await mkdir(nodeDir(opts.id, d.name, env), { recursive: true, mode: 0o700 });
    await saveRun(run, env);
    await applyPlan(plan, { runner, ...(deps.logger ? { logger: deps.logger } : {}) });
    await waitOperational(plan, runner);
    await applyRoutes(plan, runner);
    run.state = 'up';
    await saveRun(run, env);
  } catch (err) {
    await downRun(opts.id, deps).catch(() => undefined);
    throw err;
  }
  const ms = Math.round(performance.now() - started);

  if (opts.agents) {
    try {
      await startAgents(run);
    } catch (err) {
      const e = err instanceof ScroogeError ? err : new ScroogeError('EAGENTS', (err as Error).message);
      // The network stays up, so the agent logs and namespaces can be inspected.
      throw new ScroogeError(e.code, e.message, `the network of run ${opts.id} is up without agents; scrooge sim down ${opts.id} removes it`, {
        cause: err,
      });
    }
  }
  return { run: await loadRun(opts.id, env), plan, ms };
}

export interface DownReport {
  id: string;
  namespaces: string[];
  /** Processes that exited on SIGTERM, and those that needed SIGKILL. */
  terminated: number;
  killed: number;
  staleSockets: string[];
  removedDir: boolean;
}

/** Polls until every pid is gone or `ms` passed; returns the survivors. */
async function waitGone(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let alive = pids.filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await sleep(50);
    alive = alive.filter(isAlive);
  }
  return alive;
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/** Every process in the given namespaces (one `ip -batch` of `netns pids`). */
async function pidsIn(runner: Runner, namespaces: string[]): Promise<number[]> {
  if (namespaces.length === 0) return [];
  const { stdout } = await runner(['ip', '-force', '-batch', '-'], {
    input: namespaces.map((ns) => `netns pids ${ns}`).join('\n') + '\n',
    okExitCodes: [0, 1],
    timeoutMs: BATCH_TIMEOUT_MS,
  });
  const own = process.pid;
  return [...new Set(stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number))].filter((p) => p !== own);
}

/** Unlinks `*.sock` files in `dir` that refuse connections (their daemon is dead). */
export async function removeStaleSockets(dir = USERSPACE_SOCKET_DIR): Promise<string[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.sock'));
  } catch {
    return [];
  }
  const removed: string[] = [];
  await Promise.all(
    names.map(async (name) => {
      const file = path.join(dir, name);
      if ((await probeSocket(file)) !== 'refused') return;
      await unlink(file).catch(() => undefined);
      removed.push(file);
    }),
  );
  return removed.sort();
}

function probeSocket(file: string): Promise<'listening' | 'refused' | 'unknown'> {
  return new Promise((resolve) => {
    const socket = net.createConnection(file);
    const done = (result: 'listening' | 'refused' | 'unknown') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('unknown'), 1000);
    socket.once('connect', () => done('listening'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unknown'));
  });
}

/** Removes every trace of run `id`; safe to call again, and on a crashed or partial run. */
export async function downRun(id: string, deps: SimDeps = {}): Promise<DownReport> {
  requireRoot('down');
  validateRunId(id);
  const env = deps.env ?? process.env;
  const runner = deps.runner ?? createRunner(deps.logger ? { logger: deps.logger } : {});
  const log = deps.logger?.child({ component: 'sim', run: id });

  // run.json names the namespaces, but a crash may have left some it never recorded: every
  // namespace named `ID-...` belongs to this run (run ids have no dash).
  const namespaces = (await listNamespaces(runner)).filter((n) => n.startsWith(`${id}-`));

  // Agents first: stopped cleanly they remove their own tunnels, and with them the
  // wireguard-go daemons, which otherwise all need SIGKILL at once on a big run.
  const agentPids = await loadRun(id, env).then(
    (run) => Object.values(run.agents.pids).map((a) => a.pid).filter(isAlive),
    () => [] as number[],
  );
  if (agentPids.length > 0) {
    signal(agentPids, 'SIGTERM');
    await waitGone(agentPids, TERM_GRACE_MS + 1000);
  }
  const pids = await pidsIn(runner, namespaces);
  let killed = 0;
  if (pids.length > 0) {
    log?.debug({ pids }, 'SIGTERM');
    signal(pids, 'SIGTERM');
    const stubborn = await waitGone(pids, TERM_GRACE_MS);
    if (stubborn.length > 0) {
      log?.debug({ pids: stubborn }, 'SIGKILL');
      signal(stubborn, 'SIGKILL');
      killed = stubborn.length;
      const undead = await waitGone(stubborn, 2000);
      if (undead.length) log?.warn({ pids: undead }, 'processes survived SIGKILL');
    }
  }
  if (namespaces.length > 0) {
    await runner(['ip', '-force', '-batch', '-'], {
      input: namespaces.map((ns) => `netns del ${ns}`).join('\n') + '\n',
      okExitCodes: [0, 1],
      timeoutMs: BATCH_TIMEOUT_MS,
    });
    const left = (await listNamespaces(runner)).filter((n) => namespaces.includes(n));
    if (left.length > 0) throw new ScroogeError('EDOWN', `could not delete namespaces ${left.join(', ')}`);
  }
  const staleSockets = await removeStaleSockets();
  const dir = runDir(id, env);
  const removedDir = await exists(dir);
  await rm(dir, { recursive: true, force: true });
  return { id, namespaces, terminated: agentPids.length + pids.length - killed, killed, staleSockets, removedDir };
}
