/**
 * Scrooge beside Yggdrasil (issue 13): convergence, idle CPU and memory, in one run.
 *
 *   node dist/bench/peers.js [--json] [--sizes 5,10,20] [--idle-seconds 30] [--idle-size 10]
 *                            [--settle-seconds 2] [--steady-after 150] [--runtimes current,24]
 *                            [--routing]   (root)
 *
 * Without --routing the agents run with routing off (babeld is not part of issue 13's agent).
 *
 * For each N, lan-N twice, one after the other:
 * - Yggdrasil (Debian's 0.4.7, installed when missing): built with --no-agents, one `yggdrasil`
 *   per node peering by multicast on its mesh interface; converged when every node's admin socket
 *   (polled directly, every 10 ms) lists N-1 peers, timed from the first spawn.
 * - Scrooge: `sim up` with agents and `sim wait` (src/sim/wait.ts), timed from the agents' start.
 * On lan-<idle-size>, after convergence and a settle pause, both sit idle for --idle-seconds:
 * CPU per node (agents, their wireguard-go daemons apart, Yggdrasil) from /proc utime+stime.
 * Then, --steady-after seconds after convergence (0: not), the same window again for both: the
 * steady state a router spends its days in. An agent's first minutes still carry its start-up
 * (V8 optimizing the hot paths, the memory reducer's full GCs): on lan-10 its idle CPU falls by
 * about a third over the first three minutes, while Yggdrasil's stays flat. Memory per node is
 * printed as RSS (the issue's measure) and as anonymous memory (heap, stacks, JIT code), which
 * leaves out the file-backed pages of the node binary that every process running it shares.
 *
 * The floor (issue 13): the CPU convergence cannot avoid here, spread over the cores:
 *   floor = (CPU of every wireguard-go daemon up to convergence + agents x bare start-up) / cores
 * where bare start-up is the median CPU of `node -e 0` with the agents' binary. Agent CPU per
 * tunnel = (agents' CPU to convergence - agents x bare start-up) / tunnels, a tunnel being one
 * end of a pair (one wireguard-go daemon): 2 per pair.
 *
 * Runtimes: the bare process and one lone agent (no neighbor) under each runtime of --runtimes
 * (`current` = this binary; `24` = the registry's node@24 via npx; or a path). The sim starts its
 * agents with process.execPath, so `$(npx -y node@24 -p process.execPath) dist/bench/peers.js`
 * measures everything above with Node 24 agents.
 *
 * Every figure is printed with its target and figure/target (at most 1 meets it).
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { downRun, upRun } from '../../src/sim/build.js';
import { createRunner, type Runner } from '../../src/system/runner.js';
import { anonMiB, rssMiB } from '../netns/proc.js';
import { cpuByPid, cpuDelta, loadAverage, median, round2, round3, scenarioFile, sleep, sum, upAndConverge } from './lib/mesh.js';
import { bareMemoryMiB, bareStartupCpuMs, loneAgent, resolveRuntime, type LoneAgent } from './lib/runtime.js';
import { ensureYggdrasil, startYggdrasil, stopYggdrasil, waitPeered } from './lib/yggdrasil.js';

/** Issue 13's targets. */
export const TARGETS = {
  /** Agent RSS may exceed a bare Node process by this much (MiB). */
  rssOverBareMiB: 10,
  /** Convergence may take this many floors. */
  floors: 1.5,
  /** Agent CPU per tunnel set up (ms). */
  perTunnelMs: 10,
} as const;

const active = new Set<string>();

export interface IdleFigures {
  seconds: number;
  /** Percent of one core, per node. */
  cpuPercentPerNode: number;
  rssMiB: { median: number; max: number };
  /** Anonymous memory per node: what one more process costs (RSS also counts the binary's shared pages). */
  anonMiB: { median: number };
  /** Seconds after convergence that the window started. */
  startedAfterSeconds: number;
}

export interface YggSize {
  n: number;
  ok: boolean;
  seconds: number;
  cpuSecondsToConvergence: number;
  rssMiB: { median: number; max: number };
  idle?: IdleFigures;
  /** The same window again, later: the steady state (JIT and GC of the start-up settled). */
  steady?: IdleFigures;
}

export interface AgentSize {
  n: number;
  ok: boolean;
  seconds: number;
  buildSeconds: number;
  pairs: number;
  tunnels: number;
  /** agentChildren: the agents' short-lived `ip`/`nft`/`tc` processes (not in agents, not in the floor). */
  cpuSeconds: { agents: number; agentChildren: number; wireguardGo: number };
  wireguardGoProcesses: number;
  wireguardGoRssMiB: number;
  rssMiB: { median: number; max: number; n1: number };
  floorSeconds: number;
  convergenceOverFloor: number;
  agentCpuPerTunnelMs: number;
  idle?: IdleFigures & { wireguardGoCpuPercentPerNode: number; wireguardGoCpuPercentPerDaemon: number };
  steady?: IdleFigures;
}

interface IdleOptions {
  seconds: number;
  settle: number;
  /** Seconds after convergence at which the steady window starts (0: none). */
  steadyAfter: number;
}

function idleFigures(seconds: number, cpu: number, pids: number[], startedAfterSeconds: number): IdleFigures {
  const rss = pids.map(rssMiB);
  return {
    seconds,
    cpuPercentPerNode: round3((cpu / seconds / pids.length) * 100),
    rssMiB: { median: median(rss), max: Math.max(...rss) },
    anonMiB: { median: median(pids.map(anonMiB)) },
    startedAfterSeconds: round2(startedAfterSeconds),
  };
}

/** CPU of `pids` over one window of `seconds`, starting `startAfter` s after `since` (ms). */
async function idleWindow(pids: number[], since: number, startAfter: number, seconds: number): Promise<IdleFigures> {
  await sleep(Math.max(0, since + startAfter * 1000 - performance.now()));
  const started = performance.now();
  const t0 = cpuByPid(pids);
  await sleep(seconds * 1000);
  return idleFigures(seconds, cpuDelta(t0, cpuByPid(pids)), pids, (started - since) / 1000);
}

async function yggdrasilSize(runner: Runner, n: number, idle: IdleOptions | null): Promise<YggSize> {
  const id = 'yg' + randomBytes(4).toString('hex');
  active.add(id);
  let mesh: Awaited<ReturnType<typeof startYggdrasil>> | undefined;
  try {
    const { run } = await upRun({ scenarioPath: scenarioFile(`lan-${n}`), id, agents: false }, { runner });
    mesh = await startYggdrasil(runner, run, run.topology.devices.map((d) => d.name));
    const wait = await waitPeered(mesh, n - 1, 30_000);
    const converged = performance.now();
    const pids = mesh.nodes.map((x) => x.pid);
    const at = cpuByPid(pids);
    const out: YggSize = {
      n,
      ok: wait.ok,
      seconds: wait.seconds,
      cpuSecondsToConvergence: round2(sum([...at.values()])),
      rssMiB: { median: median(pids.map(rssMiB)), max: Math.max(...pids.map(rssMiB)) },
    };
    if (idle) {
      out.idle = await idleWindow(pids, converged, idle.settle, idle.seconds);
      if (idle.steadyAfter > 0) out.steady = await idleWindow(pids, converged, idle.steadyAfter, idle.seconds);
    }
    return out;
  } finally {
    if (mesh) await stopYggdrasil(mesh);
    await downRun(id);
    active.delete(id);
  }
}

async function agentSize(runner: Runner, n: number, bareStartupMs: number, cores: number, idle: IdleOptions | null, routing: boolean): Promise<AgentSize> {
  const id = 'pa' + randomBytes(4).toString('hex');
  active.add(id);
  try {
    // Issue 13's figures are the agent's own: babeld (which sim turns on) only with --routing.
    const { up, wait, pairs, at } = await upAndConverge(runner, `lan-${n}`, id, routing ? {} : { overlay: { routing: { mode: 'off' } } });
    const converged = performance.now();
    const agents = at.agents.length;
    const tunnels = 2 * pairs;
    const agentCpu = sum([...at.agentCpu.values()]);
    const wgCpu = sum([...at.wireguardGoCpu.values()]);
    const bare = bareStartupMs / 1000;
    const floorSeconds = (wgCpu + agents * bare) / cores;
    const seconds = wait.sinceAgentsStarted ?? NaN;
    const n1 = at.agents.find((a) => a.node === 'n1') ?? at.agents[0]!;
    const out: AgentSize = {
      n,
      ok: wait.ok,
      seconds,
      buildSeconds: round2(up.ms / 1000),
      pairs,
      tunnels,
      cpuSeconds: { agents: round2(agentCpu), agentChildren: round2(at.agentChildrenCpu), wireguardGo: round2(wgCpu) },
      wireguardGoProcesses: at.wireguardGo.length,
      wireguardGoRssMiB: Math.round(sum(at.wireguardGoRssMiB)),
      rssMiB: { median: median(at.agentRssMiB), max: Math.max(...at.agentRssMiB), n1: at.agentRssMiB[at.agents.indexOf(n1)]! },
      floorSeconds: round3(floorSeconds),
      convergenceOverFloor: round2(seconds / floorSeconds),
      agentCpuPerTunnelMs: round2(((agentCpu - agents * bare) / tunnels) * 1000),
    };
    if (idle) {
      const pids = at.agents.map((a) => a.pid);
      const w0 = cpuByPid(at.wireguardGo);
      const w0At = performance.now();
      const first = await idleWindow(pids, converged, idle.settle, idle.seconds);
      const wgSeconds = (performance.now() - w0At) / 1000;
      const wgIdle = cpuDelta(w0, cpuByPid(at.wireguardGo));
      out.idle = {
        ...first,
        wireguardGoCpuPercentPerNode: round3((wgIdle / wgSeconds / agents) * 100),
        wireguardGoCpuPercentPerDaemon: round3((wgIdle / wgSeconds / Math.max(1, at.wireguardGo.length)) * 100),
      };
      if (idle.steadyAfter > 0) out.steady = await idleWindow(pids, converged, idle.steadyAfter, idle.seconds);
    }
    return out;
  } finally {
    await downRun(id);
    active.delete(id);
  }
}

export interface RuntimeFigures {
  spec: string;
  version: string;
  path: string;
  bareStartupCpuMs: number;
  bareStartupSamplesMs: number[];
  bareRssMiB: number;
  bareAnonMiB: number;
  loneAgent: LoneAgent | { error: string };
}

export interface Figure {
  name: string;
  value: number;
  unit: string;
  target: number | null;
  /** value / target: at most 1 meets the target. */
  ratio: number | null;
  note?: string;
}

function figure(name: string, value: number, unit: string, target: number | null, note?: string): Figure {
  const ratio = target === null || !Number.isFinite(value) || !(target > 0) ? null : round2(value / target);
  return { name, value, unit, target: target === null ? null : round3(target), ratio, ...(note ? { note } : {}) };
}

export function figuresOf(bare: RuntimeFigures, ygg: YggSize[], agents: AgentSize[]): Figure[] {
  const out: Figure[] = [];
  const rssTarget = bare.bareRssMiB + TARGETS.rssOverBareMiB;
  for (const a of agents) {
    const y = ygg.find((x) => x.n === a.n);
    if (a.idle && y?.idle) {
      out.push(figure(`idle CPU per agent, lan-${a.n}`, a.idle.cpuPercentPerNode, '% core', y.idle.cpuPercentPerNode, 'target: Yggdrasil per node, same run'));
      out.push(figure(`idle CPU wireguard-go per node, lan-${a.n}`, a.idle.wireguardGoCpuPercentPerNode, '% core', null, `${a.n - 1} daemons per node`));
      out.push(figure(`idle CPU Yggdrasil per node, lan-${a.n}`, y.idle.cpuPercentPerNode, '% core', null));
    }
    if (a.steady && y?.steady) {
      const from = `window from ${Math.round(a.steady.startedAfterSeconds)} s after convergence (Yggdrasil: ${Math.round(y.steady.startedAfterSeconds)} s)`;
      out.push(figure(`idle CPU per agent, lan-${a.n}, steady`, a.steady.cpuPercentPerNode, '% core', y.steady.cpuPercentPerNode, `target: Yggdrasil per node, same run; ${from}`));
      out.push(figure(`idle CPU Yggdrasil per node, lan-${a.n}, steady`, y.steady.cpuPercentPerNode, '% core', null));
    }
  }
  for (const a of agents) {
    out.push(figure(`RSS per agent, ${a.n - 1} tunnels (lan-${a.n}, median at convergence)`, a.rssMiB.median, 'MiB', rssTarget, `bare Node ${bare.bareRssMiB} + ${TARGETS.rssOverBareMiB}`));
    if (a.idle) out.push(figure(`RSS per agent, ${a.n - 1} tunnels (lan-${a.n}, median after idle)`, a.idle.rssMiB.median, 'MiB', rssTarget));
    const last = a.steady ?? a.idle;
    if (last) {
      out.push(figure(`anonymous memory per agent, ${a.n - 1} tunnels (lan-${a.n}, median after idle)`, last.anonMiB.median, 'MiB', null,
        `bare Node's is ${bare.bareAnonMiB} MiB; RSS adds the node binary's file pages, shared by every process running it`));
    }
  }
  const y10 = ygg.find((y) => y.idle) ?? ygg[ygg.length - 1];
  if (y10) out.push(figure(`RSS Yggdrasil per node (lan-${y10.n})`, (y10.idle ?? y10).rssMiB.median, 'MiB', null));
  out.push(figure('RSS bare Node', bare.bareRssMiB, 'MiB', null, bare.version));
  for (const a of agents) {
    out.push(figure(`convergence lan-${a.n}`, a.seconds, 's', TARGETS.floors * a.floorSeconds, `${a.convergenceOverFloor} floors; floor ${a.floorSeconds} s`));
  }
  for (const a of agents) out.push(figure(`agent CPU per tunnel, lan-${a.n}`, a.agentCpuPerTunnelMs, 'ms', TARGETS.perTunnelMs, `${a.tunnels} tunnels`));
  for (const a of agents) {
    const y = ygg.find((x) => x.n === a.n);
    if (y) out.push(figure(`convergence lan-${a.n}: agents / Yggdrasil`, round2(a.seconds / y.seconds), 'x', null, `Yggdrasil ${y.seconds} s`));
  }
  return out;
}

async function runtimeFigures(runner: Runner, spec: string, withAgent: boolean): Promise<RuntimeFigures> {
  const rt = await resolveRuntime(runner, spec);
  const startup = bareStartupCpuMs(rt.path);
  const mem = await bareMemoryMiB(rt.path);
  let agent: RuntimeFigures['loneAgent'] = { error: 'not measured' };
  if (withAgent) agent = await loneAgent(runner, rt.path).catch((err: Error) => ({ error: err.message }));
  return { spec, version: rt.version, path: rt.path, bareStartupCpuMs: startup.medianMs, bareStartupSamplesMs: startup.samplesMs, bareRssMiB: mem.rss, bareAnonMiB: mem.anon, loneAgent: agent };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean' },
      sizes: { type: 'string', default: '5,10,20' },
      'idle-seconds': { type: 'string', default: '30' },
      'idle-size': { type: 'string', default: '10' },
      routing: { type: 'boolean', default: false },
      'settle-seconds': { type: 'string', default: '2' },
      'steady-after': { type: 'string', default: '150' },
      runtimes: { type: 'string', default: 'current,24' },
    },
  });
  const sizes = values.sizes.split(',').map((s) => Number(s.trim())).filter((n) => n > 0);
  if (!sizes.every((n) => [5, 10, 20].includes(n))) throw new Error('--sizes: lan-5, lan-10 and lan-20 exist (core-scenarios/lan-N.xml)');
  const idleSeconds = Number(values['idle-seconds']);
  const idleSize = Number(values['idle-size']);
  const settle = Number(values['settle-seconds']);
  const steadyAfter = Number(values['steady-after']);
  for (const [flag, v] of [['idle-seconds', idleSeconds], ['settle-seconds', settle], ['steady-after', steadyAfter]] as const) {
    if (!Number.isFinite(v) || v < 0) throw new Error(`--${flag}: a number of seconds, 0 or more`);
  }
  const say = (line: string) => {
    if (!values.json) console.error(line);
  };
  const runner = createRunner();
  const cores = availableParallelism();
  const loadBefore = loadAverage();
  const uptimeBefore = (await runner(['uptime'])).stdout.trim();
  const yggVersion = await ensureYggdrasil(runner, say);

  say(`bare ${process.version}: start-up CPU and RSS`);
  const current = await runtimeFigures(runner, 'current', false);
  const ygg: YggSize[] = [];
  const agents: AgentSize[] = [];
  const errors: string[] = [];
  for (const n of sizes) {
    const idle = n === idleSize && idleSeconds > 0 ? { seconds: idleSeconds, settle, steadyAfter } : null;
    say(`lan-${n}: Yggdrasil${idle ? ` (+ ${idleSeconds} s idle)` : ''}`);
    // One size failing (an agent that does not start on a loaded machine) loses only its figures.
    try {
      const y = await yggdrasilSize(runner, n, idle);
      ygg.push(y);
      say(`lan-${n}: Yggdrasil ${y.ok ? `${y.seconds} s` : 'TIMED OUT'}`);
    } catch (err) {
      errors.push(`lan-${n} Yggdrasil: ${(err as Error).message}`);
      say(errors[errors.length - 1]!);
    }
    say(`lan-${n}: agents${idle ? ` (+ ${idleSeconds} s idle)` : ''}`);
    try {
      const a = await agentSize(runner, n, current.bareStartupCpuMs, cores, idle, values.routing);
      agents.push(a);
      say(`lan-${n}: agents ${a.ok ? `${a.seconds} s` : 'TIMED OUT'} (${a.convergenceOverFloor} floors)`);
    } catch (err) {
      errors.push(`lan-${n} agents: ${(err as Error).message}`);
      say(errors[errors.length - 1]!);
    }
  }
  const runtimes: RuntimeFigures[] = [];
  for (const spec of values.runtimes.split(',').map((s) => s.trim()).filter(Boolean)) {
    say(`runtime ${spec}: bare process and a lone agent`);
    runtimes.push(await runtimeFigures(runner, spec, true).catch((err: Error) => ({ spec, version: '?', path: '?', bareStartupCpuMs: NaN, bareStartupSamplesMs: [], bareRssMiB: NaN, bareAnonMiB: NaN, loneAgent: { error: err.message } })));
  }
  const figures = figuresOf(current, ygg, agents);
  if (errors.length) process.exitCode = 1;
  const machine = { cores, loadBefore, loadAfter: loadAverage(), uptimeBefore, uptimeAfter: (await runner(['uptime'])).stdout.trim() };
  if (values.json) {
    console.log(JSON.stringify({ node: process.version, yggdrasil: yggVersion, machine, bare: current, yggdrasilRuns: ygg, agentRuns: agents, runtimes, figures, errors }, null, 2));
    return;
  }
  console.log(`node ${process.version}, yggdrasil ${yggVersion}, ${cores} cores; bare start-up for the floor ${current.bareStartupCpuMs} ms (${current.bareStartupSamplesMs.join(' ')}), bare RSS ${current.bareRssMiB} MiB`);
  console.log(`load before: ${uptimeBefore}\nload after:  ${machine.uptimeAfter}\n`);
  for (const e of errors) console.log(`FAILED: ${e}`);
  console.log(
    table([
      ['N', 'YGG CONV', 'YGG CPU s', 'YGG RSS', 'AGENTS CONV', 'BUILD', 'AGENT CPU s (+children)', 'WG-GO CPU s (procs)', 'FLOOR s', 'CONV/FLOOR', 'MS/TUNNEL', 'RSS MED/MAX/n1', 'WG-GO RSS'],
      ...agents.map((a) => {
        const y = ygg.find((x) => x.n === a.n);
        return [
          String(a.n), !y ? '-' : y.ok ? `${y.seconds} s` : 'timeout', y ? String(y.cpuSecondsToConvergence) : '-', y ? `${y.rssMiB.median} MiB` : '-', a.ok ? `${a.seconds} s` : 'timeout', `${a.buildSeconds} s`,
          `${a.cpuSeconds.agents} (+${a.cpuSeconds.agentChildren})`, `${a.cpuSeconds.wireguardGo} (${a.wireguardGoProcesses})`, String(a.floorSeconds), String(a.convergenceOverFloor), String(a.agentCpuPerTunnelMs),
          `${a.rssMiB.median}/${a.rssMiB.max}/${a.rssMiB.n1}`, `${a.wireguardGoRssMiB} MiB`,
        ];
      }),
    ]),
  );
  console.log('');
  console.log(
    table([
      ['FIGURE', 'VALUE', 'TARGET', 'VALUE/TARGET', 'NOTE'],
      ...figures.map((f) => [f.name, `${f.value} ${f.unit}`, f.target === null ? '-' : `${f.target} ${f.unit}`, f.ratio === null ? '-' : `${f.ratio}${f.ratio <= 1 ? ' ok' : ''}`, f.note ?? '']),
    ]),
  );
  if (runtimes.length === 0) return;
  console.log('');
  console.log(
    table([
      ['RUNTIME', 'BARE START-UP CPU (samples)', 'BARE RSS', 'AGENT START-UP CPU', 'AGENT READY', 'AGENT IDLE RSS', 'AGENT IDLE CPU'],
      ...runtimes.map((r) => {
        const a = 'error' in r.loneAgent ? null : r.loneAgent;
        return [
          `${r.spec} (${r.version})`, `${r.bareStartupCpuMs} ms (${r.bareStartupSamplesMs.join(' ')})`, `${r.bareRssMiB} MiB`,
          a ? `${a.startupCpuMs} ms` : (r.loneAgent as { error: string }).error, a ? `${a.startupSeconds} s` : '-', a ? `${a.idleRssMiB} MiB` : '-', a ? `${a.idleCpuPercent} %` : '-',
        ];
      }),
    ]),
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const stop = (sig: NodeJS.Signals) => {
    console.error(`peers: ${sig}: taking down ${[...active].join(', ') || 'nothing'}`);
    void Promise.allSettled([...active].map((id) => downRun(id))).then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  main().catch((err: unknown) => {
    console.error(`peers: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
