/**
 * Scale (issue 13): core-scenarios/grid-100.xml, 100 agent routers in a 10 x 10 grid, each
 * linked to its up to 4 grid neighbors (180 links, 360 tunnel ends, one wireguard-go each).
 *
 *   node dist/bench/scale.js [--json] [--scenario grid-100|FILE.xml] [--hold-seconds 30]
 *                            [--timeout-seconds 300]                                   (root)
 *
 * Builds the network (build time), starts every agent at once (time until all answer on their
 * control sockets), waits until every adjacent pair has a handshaken tunnel (`sim wait`, timed
 * from the agents' start), holds it up for --hold-seconds checking every 5 s that it stays
 * converged (all agents alive, every pair handshaken, the same wireguard-go daemons), and prints
 * the memory: agents' and wireguard-go daemons' RSS and Pss, and the drop of the machine's MemAvailable
 * (lowest seen, sampled every 250 ms, against the reading before the build). Then takes it down;
 * after a failure the agents' logs are kept in /tmp/scrooge-scale-ID-logs.
 *
 * Where the time goes: CPU of agents and wireguard-go up to convergence against what the cores
 * could give in that time, the machine's busy share (/proc/stat: other tenants included), and
 * what 100 bare Node start-ups alone cost (`node -e 0`, median).
 *
 * Targets: converge in under 30 s, total memory under 8 GiB. Routing is off (tunnels only).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { agentTunnelStatus } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { isAlive, loadRun, logsDir } from '../../src/sim/run.js';
import { agentPairs } from '../../src/sim/scenario.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { createRunner } from '../../src/system/runner.js';
import { rssMiB } from '../netns/proc.js';
import { agentPidsOf, cpuByPid, cpuDelta, loadAverage, median, memAvailableMiB, pssMiB, round2, scenarioFile, sleep, snapshot, sum } from './lib/mesh.js';
import { bareStartupCpuMs } from './lib/runtime.js';

export const SCALE_TARGETS = { convergeSeconds: 30, memoryMiB: 8 * 1024 } as const;

/** Busy and total jiffies of all CPUs (/proc/stat first line), other tenants included. */
function cpuTimes(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
  const total = sum(f.slice(0, 8));
  return { busy: total - idle, total };
}

export interface ScaleResult {
  scenario: string;
  node: string;
  agents: number;
  pairs: number;
  ok: boolean;
  buildSeconds: number;
  /** Agents' start until every one answered on its control socket. */
  agentsReadySeconds: number;
  convergeSeconds: number;
  hold: { seconds: number; checks: number; failedChecks: string[]; agentCpuPercentPerAgent: number; wireguardGoCpuPercentPerDaemon: number };
  memory: {
    agentsRssMiB: { total: number; median: number; max: number };
    wireguardGoRssMiB: { total: number; median: number; processes: number };
    totalRssMiB: number;
    /** Sum of Pss (shared pages split among their sharers): what the processes really hold. */
    totalPssMiB: { agents: number; wireguardGo: number; total: number };
    memAvailableDropMiB: { atConvergence: number; max: number };
  };
  cpu: {
    agentsToConvergence: number;
    wireguardGoToConvergence: number;
    /** 100 bare Node start-ups (`node -e 0`, median, times the agents). */
    bareStartups: number;
    bareStartupMs: number;
    /** cores x convergence seconds. */
    available: number;
    /** The machine's busy share from the build's start to convergence (/proc/stat). */
    machineBusyShare: number;
  };
  downSeconds: number;
  /** Where the agents' logs were copied when it failed. */
  keptLogs: string | null;
  /** Pairs still without a handshake when the wait ended. */
  missingPairs: string[];
  load: { before: string; after: string };
  targets: typeof SCALE_TARGETS;
  ratios: { converge: number; memory: number; pss: number; memAvailableDrop: number };
}

export async function scaleOnce(opts: { scenario: string; holdSeconds: number; timeoutSeconds: number; say: (l: string) => void }): Promise<ScaleResult> {
  const runner = createRunner();
  const { say } = opts;
  const cores = availableParallelism();
  const before = (await runner(['uptime'])).stdout.trim();
  const bare = bareStartupCpuMs(process.execPath, 5).medianMs;
  const memBefore = memAvailableMiB();
  let memLowest = memBefore;
  const sampler = setInterval(() => {
    memLowest = Math.min(memLowest, memAvailableMiB());
  }, 250);
  const id = 'sc' + randomBytes(4).toString('hex');
  const stop = () => void downRun(id).finally(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    say(`${opts.scenario}: building and starting the agents (run ${id})`);
    const cpu0 = cpuTimes();
    // The agents of issue 13 as measured before routing landed: without babeld.
    const up = await upRun({ scenarioPath: scenarioFile(opts.scenario), id, agents: true, configOverlay: { routing: { mode: 'off' } } });
    const run = await loadRun(id);
    const agentsReadySeconds = round2((Date.now() - run.agents.startedAtMs!) / 1000);
    say(`built in ${round2(up.ms / 1000)} s; agents ready ${agentsReadySeconds} s after their start; waiting for ${agentPairs(run.topology).length} pairs`);
    const wait = await waitForTunnels(run, opts.timeoutSeconds * 1000, { status: agentTunnelStatus });
    const cpu1 = cpuTimes();
    const memAtConvergence = memAvailableMiB();
    const at = await snapshot(runner, run);
    say(`${wait.ok ? 'converged' : 'NOT converged'} ${wait.sinceAgentsStarted} s after the agents' start; holding ${opts.holdSeconds} s`);

    const agentPids = agentPidsOf(run).map((a) => a.pid);
    const wgSet = new Set(at.wireguardGo);
    const a0 = cpuByPid(agentPids);
    const w0 = cpuByPid(at.wireguardGo);
    const failedChecks: string[] = [];
    let checks = 0;
    const holdStart = performance.now();
    while (performance.now() - holdStart < opts.holdSeconds * 1000) {
      await sleep(Math.min(5000, Math.max(0, opts.holdSeconds * 1000 - (performance.now() - holdStart))));
      checks++;
      const t = round2((performance.now() - holdStart) / 1000);
      const dead = agentPidsOf(run).filter((a) => !isAlive(a.pid)).map((a) => a.node);
      if (dead.length) failedChecks.push(`${t} s: agents exited: ${dead.join(', ')}`);
      const again = await waitForTunnels(run, 0, { status: agentTunnelStatus });
      const missing = again.pairs.filter((p) => !p.ok);
      if (missing.length) failedChecks.push(`${t} s: ${missing.length} pairs without a handshake, e.g. ${missing[0]!.missing}`);
      const gone = [...wgSet].filter((p) => !isAlive(p));
      if (gone.length) failedChecks.push(`${t} s: ${gone.length} wireguard-go daemons exited`);
    }
    const holdSeconds = (performance.now() - holdStart) / 1000;
    const agentHold = cpuDelta(a0, cpuByPid(agentPids));
    const wgHold = cpuDelta(w0, cpuByPid(at.wireguardGo));
    const agentsRss = agentPids.map(rssMiB);
    const wgRss = at.wireguardGo.map((p) => rssMiB(p) || 0);
    const agentsPss = Math.round(sum(agentPids.map((p) => pssMiB(p) || 0)));
    const wgPss = Math.round(sum(at.wireguardGo.map((p) => pssMiB(p) || 0)));
    const memEnd = memAvailableMiB();
    memLowest = Math.min(memLowest, memEnd);
    const totalRss = Math.round(sum(agentsRss) + sum(wgRss));
    const seconds = wait.sinceAgentsStarted ?? NaN;
    let keptLogs: string | null = null;
    if (!wait.ok || failedChecks.length) {
      // The run folder goes with the run: keep the agents' logs of a failure to read later.
      keptLogs = `/tmp/scrooge-scale-${id}-logs`;
      await cp(logsDir(id), keptLogs, { recursive: true });
      say(`agents' logs kept in ${keptLogs}`);
    }
    say('taking it down');
    const d0 = performance.now();
    await downRun(id);
    const downSeconds = round2((performance.now() - d0) / 1000);
    const drop = memBefore - memLowest;
    return {
      scenario: opts.scenario,
      node: process.version,
      agents: agentPids.length,
      pairs: agentPairs(run.topology).length,
      ok: wait.ok && failedChecks.length === 0,
      buildSeconds: round2(up.ms / 1000),
      agentsReadySeconds,
      convergeSeconds: seconds,
      hold: {
        seconds: round2(holdSeconds),
        checks,
        failedChecks,
        agentCpuPercentPerAgent: round2((agentHold / holdSeconds / agentPids.length) * 100),
        wireguardGoCpuPercentPerDaemon: round2((wgHold / holdSeconds / Math.max(1, at.wireguardGo.length)) * 100),
      },
      memory: {
        agentsRssMiB: { total: Math.round(sum(agentsRss)), median: median(agentsRss), max: Math.max(...agentsRss) },
        wireguardGoRssMiB: { total: Math.round(sum(wgRss)), median: median(wgRss), processes: wgRss.length },
        totalRssMiB: totalRss,
        totalPssMiB: { agents: agentsPss, wireguardGo: wgPss, total: agentsPss + wgPss },
        memAvailableDropMiB: { atConvergence: memBefore - memAtConvergence, max: drop },
      },
      cpu: {
        agentsToConvergence: round2(sum([...at.agentCpu.values()])),
        wireguardGoToConvergence: round2(sum([...at.wireguardGoCpu.values()])),
        bareStartups: round2((agentPids.length * bare) / 1000),
        bareStartupMs: bare,
        available: round2(cores * seconds),
        machineBusyShare: round2((cpu1.busy - cpu0.busy) / Math.max(1, cpu1.total - cpu0.total)),
      },
      downSeconds,
      keptLogs,
      missingPairs: wait.pairs.filter((p) => !p.ok).map((p) => `${p.a}-${p.b}`),
      load: { before, after: (await runner(['uptime'])).stdout.trim() },
      targets: SCALE_TARGETS,
      ratios: {
        converge: round2(seconds / SCALE_TARGETS.convergeSeconds),
        memory: round2(totalRss / SCALE_TARGETS.memoryMiB),
        pss: round2((agentsPss + wgPss) / SCALE_TARGETS.memoryMiB),
        memAvailableDrop: round2(drop / SCALE_TARGETS.memoryMiB),
      },
    };
  } finally {
    clearInterval(sampler);
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
    await downRun(id);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean' },
      scenario: { type: 'string', default: 'grid-100' },
      'hold-seconds': { type: 'string', default: '30' },
      'timeout-seconds': { type: 'string', default: '300' },
    },
  });
  const r = await scaleOnce({
    scenario: values.scenario.includes('/') ? values.scenario : values.scenario.replace(/\.xml$/, ''),
    holdSeconds: Number(values['hold-seconds']),
    timeoutSeconds: Number(values['timeout-seconds']),
    say: (l) => {
      if (!values.json) console.error(l);
    },
  });
  if (values.json) {
    console.log(JSON.stringify({ ...r, loadAverageAfter: loadAverage() }, null, 2));
    return;
  }
  const ok = (x: number) => (x <= 1 ? ' ok' : '');
  if (!r.ok && r.keptLogs) console.log(`agents' logs: ${r.keptLogs}`);
  if (r.missingPairs.length) console.log(`pairs never handshaken: ${r.missingPairs.join(' ')}`);
  const m = r.memory;
  console.log(`${r.scenario}: ${r.agents} agents, ${r.pairs} pairs, node ${r.node}; ${r.ok ? 'converged and stayed so' : 'FAILED'}`);
  console.log(`load before: ${r.load.before}\nload after:  ${r.load.after}`);
  console.log(`build ${r.buildSeconds} s; agents ready ${r.agentsReadySeconds} s; converged ${r.convergeSeconds} s (target < ${r.targets.convergeSeconds} s: ${r.ratios.converge}${ok(r.ratios.converge)}); down ${r.downSeconds} s`);
  console.log(`memory: agents ${m.agentsRssMiB.total} MiB (median ${m.agentsRssMiB.median}, max ${m.agentsRssMiB.max}) + wireguard-go ${m.wireguardGoRssMiB.total} MiB (${m.wireguardGoRssMiB.processes} daemons, median ${m.wireguardGoRssMiB.median})`);
  console.log(`  = ${m.totalRssMiB} MiB RSS (target < ${r.targets.memoryMiB} MiB: ${r.ratios.memory}${ok(r.ratios.memory)}); Pss ${m.totalPssMiB.total} MiB (agents ${m.totalPssMiB.agents} + wireguard-go ${m.totalPssMiB.wireguardGo}: ${r.ratios.pss}${ok(r.ratios.pss)}); MemAvailable drop ${m.memAvailableDropMiB.max} MiB (${r.ratios.memAvailableDrop}), ${m.memAvailableDropMiB.atConvergence} MiB at convergence`);
  console.log(`CPU to convergence: agents ${r.cpu.agentsToConvergence} s, wireguard-go ${r.cpu.wireguardGoToConvergence} s, of ${r.cpu.available} core-s the cores had meanwhile; machine busy (build + converge) ${Math.round(r.cpu.machineBusyShare * 100)} %; ${r.agents} bare Node start-ups alone ${r.cpu.bareStartups} s (${r.cpu.bareStartupMs} ms each)`);
  console.log(`hold ${r.hold.seconds} s, ${r.hold.checks} checks${r.hold.failedChecks.length ? `, FAILED: ${r.hold.failedChecks.join('; ')}` : ', all converged'}; idle CPU ${r.hold.agentCpuPercentPerAgent} % per agent, ${r.hold.wireguardGoCpuPercentPerDaemon} % per wireguard-go`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(`scale: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
