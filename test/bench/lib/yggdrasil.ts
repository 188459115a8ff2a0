/**
 * Yggdrasil beside Scrooge, for the benchmarks (issue 13): one `yggdrasil` process per node of a
 * sim run built with --no-agents, peering by multicast discovery on the node's mesh interfaces
 * (as the agents find each other), each with its admin socket as a unix socket in the node's
 * folder of the run. Convergence is read from the admin sockets directly (`{"request":"getpeers"}`,
 * one connection per request: 0.4.7 answers once and closes), never by spawning yggdrasilctl.
 *
 * Debian 12 ships 0.4.7; `ensureYggdrasil` installs it when missing. The processes live in the
 * run's namespaces, so `downRun` kills whatever `stopYggdrasil` did not.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { join } from 'node:path';
import { isAlive, logsDir, nodeDir, type SimRun } from '../../../src/sim/run.js';
import { deviceByName, deviceInterfaces, interfaceRole } from '../../../src/sim/scenario.js';
import type { Runner } from '../../../src/system/runner.js';
import { sleep } from './mesh.js';

export const YGGDRASIL = 'yggdrasil';

/** The installed package version (dpkg), installing it first when `yggdrasil` is missing. */
export async function ensureYggdrasil(runner: Runner, log: (line: string) => void = () => {}): Promise<string> {
  const version = async () => {
    const r = await runner(['dpkg-query', '-W', '-f=${Status} ${Version}', YGGDRASIL], { okExitCodes: [0, 1] });
    const m = /install ok installed (\S+)/.exec(r.stdout);
    return m ? m[1]! : null;
  };
  const have = await version();
  if (have) return have;
  log('installing yggdrasil from Debian (apt-get install --no-install-recommends)');
  const install = () =>
    runner(['apt-get', 'install', '-y', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300', YGGDRASIL], {
      timeoutMs: 600_000,
      okExitCodes: [0, 100],
    });
  if ((await install()).exitCode !== 0) {
    // A fresh machine may not have the package lists yet.
    await runner(['apt-get', 'update', '-o', 'DPkg::Lock::Timeout=300'], { timeoutMs: 600_000 });
    const again = await install();
    if (again.exitCode !== 0) throw new Error(`apt-get install yggdrasil failed: ${again.stderr.trim().split('\n').pop()}`);
  }
  const got = await version();
  if (!got) throw new Error('yggdrasil is still not installed after apt-get install');
  return got;
}

export interface YggNode {
  node: string;
  namespace: string;
  socket: string;
  pid: number;
  child: ChildProcess;
}

export interface YggMesh {
  nodes: YggNode[];
  /** performance.now() just before the first process was spawned. */
  startedAt: number;
}

/** The node's mesh interfaces (those shared with another agent device) as an anchored regex. */
function meshRegex(run: SimRun, node: string): string {
  const device = deviceByName(run.topology, node)!;
  const names = deviceInterfaces(run.topology, device)
    .map((i) => i.iface.name)
    .filter((name) => interfaceRole(run.topology, device, name) === 'mesh');
  return `^(${names.map((n) => n.replace(/[.]/g, '\\.')).join('|')})$`;
}

/**
 * Writes a fresh config per node (`yggdrasil -genconf -json`: new keys; no static peers, no
 * listeners but the multicast ones) and starts all nodes at one moment.
 */
export async function startYggdrasil(runner: Runner, run: SimRun, nodes: readonly string[]): Promise<YggMesh> {
  const files = await Promise.all(
    nodes.map(async (node) => {
      const { stdout } = await runner([YGGDRASIL, '-genconf', '-json']);
      const config = JSON.parse(stdout) as Record<string, unknown>;
      const socket = join(nodeDir(run.id, node), 'ygg.sock');
      config['AdminListen'] = `unix://${socket}`;
      config['Peers'] = [];
      config['Listen'] = [];
      config['MulticastInterfaces'] = [{ Regex: meshRegex(run, node), Beacon: true, Listen: true, Port: 0, Priority: 0 }];
      const file = join(nodeDir(run.id, node), 'ygg.json');
      await writeFile(file, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 }); // holds a private key
      return { node, socket, file };
    }),
  );
  const startedAt = performance.now();
  const started = files.map(({ node, socket, file }) => {
    const namespace = run.nodes[node]!;
    const log = openSync(join(logsDir(run.id), `${node}.ygg.log`), 'a', 0o600);
    try {
      // `ip netns exec` execs the command: the child's pid is yggdrasil's.
      const child = spawn('ip', ['netns', 'exec', namespace, YGGDRASIL, '-useconffile', file, '-logto', 'stdout'], { stdio: ['ignore', log, log] });
      child.on('error', () => undefined);
      return { node, namespace, socket, pid: child.pid!, child };
    } finally {
      closeSync(log);
    }
  });
  return { nodes: started, startedAt };
}

/** One admin request on a unix socket: 0.4.7 writes one JSON answer and closes. */
export function adminRequest(socket: string, request: Record<string, unknown>, timeoutMs = 2000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`admin socket ${socket}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on('connect', () => conn.write(JSON.stringify(request)));
    conn.on('data', (d: Buffer) => chunks.push(d));
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** Public keys of the node's connected peers (an unreachable socket: none yet). */
export async function peerKeys(socket: string): Promise<string[]> {
  try {
    const answer = await adminRequest(socket, { request: 'getpeers' });
    const peers = ((answer['response'] as { peers?: Array<{ key?: string; up?: boolean }> } | undefined)?.peers ?? []).filter((p) => p.up !== false);
    return [...new Set(peers.map((p) => p.key ?? ''))].filter(Boolean);
  } catch {
    return [];
  }
}

export interface YggWait {
  ok: boolean;
  /** Spawn of the first node to every node having `expected` peers. */
  seconds: number;
  peers: Record<string, number>;
}

/** Polls every node not yet complete every `pollMs` until each has `expected` peers. */
export async function waitPeered(mesh: YggMesh, expected: number, timeoutMs: number, pollMs = 10): Promise<YggWait> {
  const peers: Record<string, number> = Object.fromEntries(mesh.nodes.map((n) => [n.node, 0]));
  for (;;) {
    const pending = mesh.nodes.filter((n) => peers[n.node]! < expected);
    await Promise.all(
      pending.map(async (n) => {
        peers[n.node] = (await peerKeys(n.socket)).length;
      }),
    );
    const elapsed = performance.now() - mesh.startedAt;
    const ok = mesh.nodes.every((n) => peers[n.node]! >= expected);
    if (ok || elapsed > timeoutMs) return { ok, seconds: Math.round(elapsed) / 1000, peers };
    const dead = mesh.nodes.find((n) => !isAlive(n.pid));
    if (dead) throw new Error(`yggdrasil of ${dead.node} exited; see its log in the run's logs folder`);
    await sleep(pollMs);
  }
}

/** SIGTERM, then SIGKILL after 2 s, and wait for the exits (the children are reaped by Node). */
export async function stopYggdrasil(mesh: YggMesh): Promise<void> {
  const alive = () => mesh.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
  for (const n of alive()) n.child.kill('SIGTERM');
  const deadline = Date.now() + 2000;
  while (alive().length && Date.now() < deadline) await sleep(20);
  for (const n of alive()) n.child.kill('SIGKILL');
  const last = Date.now() + 2000;
  while (alive().length && Date.now() < last) await sleep(20);
}
