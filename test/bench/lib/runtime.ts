/**
 * What the Node runtime itself costs, apart from the agent (issue 13, "Runtime" and the floor):
 * a bare process's start-up CPU (`node -e 0`) and idle RSS (`node -e "setInterval(()=>{},1e3)"`),
 * and one agent alone (no neighbor) started with a given Node binary: CPU until it answers on
 * its control socket, RSS and CPU after a few idle seconds.
 *
 * Runtimes: `current` is the binary running the benchmark (process.execPath: the sim starts its
 * agents with it too); a major version such as `24` is the registry's `node` package, which ships
 * the binary (`npx -y node@24`; its path is what that binary prints as process.execPath); anything
 * else is a path to a node binary.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { controlRequest } from '../../../src/agent/control.js';
import { agentConfig, agentEnv, scroogeEntry } from '../../../src/sim/agents.js';
import { downRun, upRun } from '../../../src/sim/build.js';
import { controlSocketPath, isAlive, logsDir, nodeDir } from '../../../src/sim/run.js';
import { deviceByName } from '../../../src/sim/scenario.js';
import { createKeyFile } from '../../../src/system/keystore.js';
import type { Runner } from '../../../src/system/runner.js';
import { anonMiB, cpuSeconds, rssMiB } from '../../netns/proc.js';
import { median, round2, scenarioFile, sleep } from './mesh.js';

export interface Runtime {
  spec: string;
  path: string;
  version: string;
}

export async function resolveRuntime(runner: Runner, spec: string): Promise<Runtime> {
  let path = spec;
  if (spec === 'current') path = process.execPath;
  else if (/^\d+$/.test(spec)) {
    const { stdout } = await runner(['npx', '-y', `node@${spec}`, '-p', 'process.execPath'], { timeoutMs: 600_000 });
    path = stdout.trim().split('\n').pop()!;
  }
  const { stdout } = await runner([path, '-p', 'process.version']);
  return { spec, path, version: stdout.trim() };
}

/**
 * CPU (user + sys, ms) of `BINARY -e 0`, measured by bash's `time` (getrusage of the child), in
 * the environment the sim gives its agents (agentEnv): what their own start-up is measured against.
 */
export function bareStartupCpuMs(binary: string, runs = 7): { medianMs: number; samplesMs: number[] } {
  const samplesMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = spawnSync('bash', ['-c', 'TIMEFORMAT="%3U %3S"; time "$0" -e 0', binary], { encoding: 'utf8', env: agentEnv() });
    const m = /(\d+\.\d+) (\d+\.\d+)\s*$/.exec(r.stderr);
    if (r.status !== 0 || !m) throw new Error(`${binary} -e 0 failed: ${r.stderr.trim()}`);
    samplesMs.push(Math.round((Number(m[1]) + Number(m[2])) * 1000));
  }
  return { medianMs: median(samplesMs), samplesMs };
}

/** RSS of a bare, idle Node process (`setInterval` keeps it alive), after `settleMs`. */
export async function bareRssMiB(binary: string, settleMs = 1500): Promise<number> {
  return (await bareMemoryMiB(binary, settleMs)).rss;
}

/** A bare process's RSS and anonymous memory, MiB (in the agents' environment, agentEnv). */
export async function bareMemoryMiB(binary: string, settleMs = 1500): Promise<{ rss: number; anon: number }> {
  const child = spawn(binary, ['-e', 'setInterval(()=>{},1e3)'], { stdio: 'ignore', env: agentEnv() });
  try {
    await sleep(settleMs);
    return { rss: rssMiB(child.pid!), anon: anonMiB(child.pid!) };
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
  }
}

export interface LoneAgent {
  /** Exec to the first `status` answer from this pid, CPU ms (/proc: 10 ms ticks). */
  startupCpuMs: number;
  startupSeconds: number;
  /** After `idleMs` with no neighbor. */
  idleRssMiB: number;
  idleCpuPercent: number;
}

/**
 * One agent on n1 of two-nodes (built without agents, so it has no neighbor), run with
 * `binary`, exactly as startAgents would run it but for the binary.
 */
export async function loneAgent(runner: Runner, binary: string, idleMs = 5000): Promise<LoneAgent> {
  const id = 'la' + randomBytes(4).toString('hex');
  try {
    const { run } = await upRun({ scenarioPath: scenarioFile('two-nodes'), id, agents: false }, { runner });
    const node = 'n1';
    const dir = nodeDir(id, node);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await createKeyFile(join(dir, 'node.key'), { force: true });
    const socket = controlSocketPath(id, node);
    // Discovery and tunnels only: what a lone agent costs, without babeld (sim turns routing on).
    const config = agentConfig(run.topology, deviceByName(run.topology, node)!, dir, socket, { routing: { mode: 'off' } });
    await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
    const log = openSync(join(logsDir(id), `${node}.log`), 'a', 0o600);
    const started = performance.now();
    let pid: number;
    try {
      const child = spawn('ip', ['netns', 'exec', run.nodes[node]!, binary, scroogeEntry(), 'run', '--config', join(dir, 'config.json')], { stdio: ['ignore', log, log], env: agentEnv() });
      child.on('error', () => undefined);
      pid = child.pid!;
    } finally {
      closeSync(log);
    }
    for (;;) {
      const answer = (await controlRequest(socket, 'status', {}, 1000).catch(() => null)) as { pid?: number } | null;
      if (answer?.pid === pid) break;
      if (!isAlive(pid)) throw new Error(`the lone agent (${binary}) exited at start; see ${join(logsDir(id), `${node}.log`)}`);
      if (performance.now() - started > 20_000) throw new Error(`the lone agent (${binary}) did not answer within 20 s`);
      await sleep(5);
    }
    const startupSeconds = round2((performance.now() - started) / 1000);
    const cpu0 = cpuSeconds(pid);
    await sleep(idleMs);
    const cpu1 = cpuSeconds(pid);
    return {
      startupCpuMs: Math.round(cpu0 * 1000),
      startupSeconds,
      idleRssMiB: rssMiB(pid),
      idleCpuPercent: round2(((cpu1 - cpu0) / (idleMs / 1000)) * 100),
    };
  } finally {
    await downRun(id);
  }
}
