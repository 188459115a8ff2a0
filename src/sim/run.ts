/**
 * A sim run's state on disk: `/run/scrooge/sim/<ID>/` (tests move the base with
 * SCROOGE_SIM_DIR). /run is a tmpfs, so a reboot, which also drops every namespace, drops the
 * state with it.
 *
 *   run.json          what was built: scenario path, topology, namespaces, agent pids
 *   logs/             agent logs (one file per node)
 *   nodes/<name>/     per device: agent key, config, state, control socket
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ScroogeError } from '../errors.js';
import type { Unapplied } from './plan.js';
import { RUN_ID } from './plan.js';
import type { Topology } from './scenario.js';

export const DEFAULT_SIM_DIR = '/run/scrooge/sim';
/** sockaddr_un.sun_path is 108 bytes including the NUL. */
export const UNIX_PATH_MAX = 107;

export function simBaseDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['SCROOGE_SIM_DIR'] || DEFAULT_SIM_DIR;
}

export function runDir(id: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(simBaseDir(env), id);
}

export function runFile(id: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(runDir(id, env), 'run.json');
}

export function logsDir(id: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(runDir(id, env), 'logs');
}

export function nodeDir(id: string, node: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(runDir(id, env), 'nodes', node);
}

/** The agent's control socket: on the host filesystem, so no need to enter the namespace. */
export function controlSocketPath(id: string, node: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(nodeDir(id, node, env), 'control.sock');
}

export interface AgentRecord {
  pid: number;
  startedAt: string;
}

/** run.json */
export interface SimRun {
  version: 1;
  id: string;
  /** Absolute path of the scenario file. */
  scenarioPath: string;
  createdAt: string;
  /** 'building' until every kernel object exists; a run left in 'building' crashed mid-way. */
  state: 'building' | 'up';
  topology: Topology;
  /** Every namespace of the run, devices first. */
  namespaces: string[];
  /** Device name -> its namespace. */
  nodes: Record<string, string>;
  agents: {
    /** False when started with --no-agents. */
    enabled: boolean;
    /** The JSON object given with --config-overlay, merged into each agent's config. */
    configOverlay: Record<string, unknown> | null;
    /** Device name -> the agent process, filled in by startAgents. */
    pids: Record<string, AgentRecord>;
    /** Device name -> the agent's public key (base64), filled in by startAgents. */
    keys?: Record<string, string>;
    /** When startAgents started them all (unix ms). */
    startedAtMs?: number;
  };
  unapplied: Unapplied[];
  notes: string[];
}

/** What the agent step reports about one node, for `sim wait`. */
export interface AgentTunnelStatus {
  /** Names of the sim nodes this agent has a tunnel with a completed WireGuard handshake to. */
  handshakeWith: string[];
}

export async function saveRun(run: SimRun, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const file = runFile(run.id, env);
  await mkdir(path.dirname(file), { recursive: true });
  // Write-then-rename: a reader (or a crash) never sees half a file.
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(run, null, 2) + '\n', { mode: 0o644 });
  await rename(tmp, file);
}

/** Reads run.json; ScroogeError('ENORUN') when there is no such run. */
export async function loadRun(id: string, env: NodeJS.ProcessEnv = process.env): Promise<SimRun> {
  if (!RUN_ID.test(id)) throw new ScroogeError('ENORUN', `no sim run "${id}" (run ids are 1 to 10 lowercase letters or digits)`);
  let text: string;
  try {
    text = await readFile(runFile(id, env), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ScroogeError('ENORUN', `no sim run "${id}"`, 'scrooge sim list shows the runs');
    }
    throw err;
  }
  try {
    return JSON.parse(text) as SimRun;
  } catch (err) {
    throw new ScroogeError('ENORUN', `sim run "${id}": ${runFile(id, env)} is not valid JSON`, `scrooge sim down ${id} removes it`, {
      cause: err,
    });
  }
}

/** Reads, changes and writes run.json (for the agent step: pids). */
export async function updateRun(id: string, change: (run: SimRun) => void, env: NodeJS.ProcessEnv = process.env): Promise<SimRun> {
  const run = await loadRun(id, env);
  change(run);
  await saveRun(run, env);
  return run;
}

/** Ids of the run directories under the base directory. */
export async function runIds(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  try {
    const entries = await readdir(simBaseDir(env), { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory() && RUN_ID.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Throws ScroogeError('ENONODE') unless `node` is a device of the run. */
export function requireNode(run: SimRun, node: string): string {
  const ns = run.nodes[node];
  if (!ns) {
    const known = Object.keys(run.nodes).join(', ');
    throw new ScroogeError('ENONODE', `sim run "${run.id}" has no node "${node}" (nodes: ${known})`);
  }
  return ns;
}

/** Process liveness without signalling it (kill 0); EPERM still means it exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie answers kill 0 but is gone: state Z in /proc/<pid>/stat (after the command name).
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
