/**
 * Agents in a sim run. `startAgents` gives every agent node (scenario.ts `runsAgent`) a key and
 * a config in its node directory and starts `scrooge run` in its namespace, all at once, each
 * logging to logs/<node>.log; `agentTunnelStatus` asks one agent, over its control socket, which
 * nodes it has a handshaken tunnel with (for `sim wait`).
 *
 * The config comes from nodeconfig.ts (the same generator the CORE hooks use): routing with
 * babeld on, the node's mesh IPv4 address, the scenario's and `--config-overlay`'s settings.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest, socketAnswers } from '../agent/control.js';
import { ScroogeError } from '../errors.js';
import { toBase64 } from '../protocol/bytes.js';
import { createKeyFile } from '../system/keystore.js';
import { type AgentTunnelStatus, type SimRun, controlSocketPath, isAlive, logsDir, nodeDir, requireNode, updateRun } from './run.js';
import { type Json, mergeJson, nodeConfig } from './nodeconfig.js';
import { runsAgent, type Device, type Topology } from './scenario.js';

export { mergeJson };

/** The bundled CLI, wherever this module runs from (the bundle itself, or the TS sources in tests). */
export function scroogeEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const candidates = [here.endsWith('scrooge.js') ? here : '', resolve(dirname(here), '../../dist/scrooge.js'), resolve(dirname(here), '../dist/scrooge.js')];
  const found = candidates.find((c) => c && existsSync(c));
  if (!found) throw new ScroogeError('ENOBUILD', 'dist/scrooge.js not found', 'run `npm run build` first');
  return found;
}

/**
 * The agent config for one device (nodeconfig.ts `nodeConfig`, with the control socket at
 * `socket`): kept for callers that start an agent themselves (test/bench).
 */
export function agentConfig(topology: Topology, device: Device, dir: string, socket: string, overlay: Json | null): Json {
  return { ...nodeConfig(topology, device, dir, overlay), controlSocket: socket };
}

export async function startAgents(run: SimRun): Promise<void> {
  const entry = scroogeEntry();
  const devices = run.topology.devices.filter(runsAgent);
  const keys: Record<string, string> = {};
  await Promise.all(devices.map(async (d) => {
    const dir = nodeDir(run.id, d.name);
    keys[d.name] = toBase64(await createKeyFile(join(dir, 'node.key'), { force: true }));
    const config = agentConfig(run.topology, d, dir, controlSocketPath(run.id, d.name), run.agents.configOverlay);
    await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  }));

  // Start them all at the same moment: that is what `sim wait` and the benchmarks measure from.
  const startedAt = Date.now();
  const pids: Record<string, { pid: number; startedAt: string }> = {};
  for (const d of devices) pids[d.name] = { pid: spawnAgent(run, d.name, entry), startedAt: new Date(startedAt).toISOString() };
  await updateRun(run.id, (r) => {
    r.agents.pids = pids;
    r.agents.keys = keys;
    r.agents.startedAtMs = startedAt;
  });
  await waitReady(run, devices.map((d) => d.name), pids);
}

/**
 * The environment an agent runs with: ours, less what only costs it. NODE_EXTRA_CA_CERTS makes
 * every Node process parse that CA bundle before its first line of JS (a machine behind a
 * TLS-inspecting proxy sets it for everything): 62 ms of CPU for `node -e 0` here against 23 ms
 * without, and 1.8 MiB of RSS, while an agent makes no TLS connection at all. On grid-100 it was
 * 4.5 % of the agents' CPU up to convergence (perf). A router's service manager starts the agent
 * with a clean environment; the simulation does what it would.
 */
export function agentEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { NODE_EXTRA_CA_CERTS: _unused, ...rest } = env;
  return rest;
}

/** Starts `scrooge run` for one node in its namespace, detached, logging to logs/<node>.log. */
function spawnAgent(run: SimRun, node: string, entry = scroogeEntry()): number {
  const log = openSync(join(logsDir(run.id), `${node}.log`), 'a', 0o600);
  try {
    const child = spawn('ip', ['netns', 'exec', run.nodes[node]!, process.execPath, entry, 'run', '--config', join(nodeDir(run.id, node), 'config.json')], {
      detached: true,
      stdio: ['ignore', log, log],
      env: agentEnv(),
    });
    child.unref();
    return child.pid!;
  } finally {
    closeSync(log);
  }
}

/**
 * How long one of the harness's control requests may take: `base` ms, or a thirtieth of
 * SCROOGE_SIM_READY_TIMEOUT_MS where that is set (a slow machine: under TCG twenty agents
 * starting at once answer a status request in more than 2 s, and a probe that gives up each
 * time never sees them ready).
 */
export function probeTimeoutMs(base: number, readyTimeout = Number(process.env['SCROOGE_SIM_READY_TIMEOUT_MS'])): number {
  return readyTimeout > 0 ? Math.max(base, Math.round(readyTimeout / 30)) : base;
}

/** The agent with this pid answers on its control socket (not merely: something accepts). */
async function answersAs(socket: string, pid: number): Promise<boolean> {
  if (!(await socketAnswers(socket))) return false;
  try {
    return ((await controlRequest(socket, 'status', { stats: false }, probeTimeoutMs(2000))) as { pid?: number }).pid === pid;
  } catch {
    return false;
  }
}

/**
 * How long agents started at once get to answer: they share the cores, and each start costs
 * about half a CPU-second on a busy 2-core machine, so 100 (grid-100) need far more than 20 s.
 */
export function readyTimeoutMs(agents: number): number {
  return 20_000 + 1000 * agents;
}

/** Ready when every agent answers as itself; an agent that dies first is reported with its log. */
async function waitReady(run: SimRun, nodes: string[], pids: Record<string, { pid: number }>): Promise<void> {
  // More where the machine is slow (an emulated VM): SCROOGE_SIM_READY_TIMEOUT_MS.
  const timeoutMs = Number(process.env['SCROOGE_SIM_READY_TIMEOUT_MS']) || readyTimeoutMs(nodes.length);
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(nodes);
  while (pending.size) {
    // All pending agents at once: asked one after another, twenty busy agents under TCG took a
    // sweep of minutes, and most of sim up's budget went to waiting on the slowest in turn.
    await Promise.all([...pending].map(async (name) => {
      if (await answersAs(controlSocketPath(run.id, name), pids[name]!.pid)) pending.delete(name);
    }));
    if (!pending.size) break;
    for (const name of pending) {
      if (!isAlive(pids[name]!.pid)) throw new ScroogeError('EAGENT', `the agent of ${name} exited at start`, `see ${join(logsDir(run.id), `${name}.log`)}`);
    }
    if (Date.now() > deadline) throw new ScroogeError('EAGENT', `agents did not answer within ${timeoutMs / 1000} s: ${[...pending].join(', ')}`, `see the logs in ${logsDir(run.id)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function agentNode(run: SimRun, node: string): void {
  requireNode(run, node);
  if (!run.agents.enabled || !run.agents.keys?.[node])
    throw new ScroogeError('ENOAGENT', `node ${node} of run ${run.id} runs no agent`, 'devices of type "host" run none, and neither does a run started with --no-agents');
}

/** `sim agent ID NODE start`: starts a stopped agent again (same key, config and state). */
export async function startAgent(run: SimRun, node: string): Promise<number> {
  agentNode(run, node);
  const current = run.agents.pids[node];
  if (current && isAlive(current.pid)) throw new ScroogeError('ERUNNING', `the agent of ${node} is already running (pid ${current.pid})`);
  const pid = spawnAgent(run, node);
  await updateRun(run.id, (r) => {
    r.agents.pids[node] = { pid, startedAt: new Date().toISOString() };
  });
  await waitReady(run, [node], { [node]: { pid } });
  return pid;
}

/**
 * `sim agent ID NODE stop|kill`: SIGTERM (a clean stop: the agent removes its tunnels) or
 * SIGKILL (a crash: tunnels and wireguard-go daemons stay behind for the next start to adopt).
 */
export async function stopAgent(run: SimRun, node: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<boolean> {
  agentNode(run, node);
  const pid = run.agents.pids[node]?.pid;
  if (!pid || !isAlive(pid)) return false;
  process.kill(pid, signal);
  const deadline = Date.now() + 5000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (isAlive(pid)) throw new ScroogeError('EAGENT', `the agent of ${node} (pid ${pid}) did not stop within 5 s`);
  return true;
}

/** Which nodes this node's agent has a tunnel with a completed WireGuard handshake to. */
export async function agentTunnelStatus(run: SimRun, node: string): Promise<AgentTunnelStatus> {
  const keys = run.agents.keys ?? {};
  const byKey = new Map(Object.entries(keys).map(([name, key]) => [key, name]));
  const result = (await controlRequest(controlSocketPath(run.id, node), 'tunnels', { stats: false }, probeTimeoutMs(3000))) as { tunnels: { neighbor: string; latestHandshakeAgoMs: number | null }[] };
  return {
    handshakeWith: result.tunnels.filter((t) => t.latestHandshakeAgoMs !== null).map((t) => byKey.get(t.neighbor) ?? t.neighbor),
  };
}
