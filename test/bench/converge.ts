/**
 * Convergence benchmark (issue 5, "Speed"): for each scenario, `sim up` with agents, then the
 * time from the agents' start (run.json `agents.startedAtMs`, all spawned at the same moment) to
 * `sim wait` success (every agent pair sharing a segment has a handshaken tunnel, seen from both
 * sides); the agents' memory (RSS) and the CPU time agents and wireguard-go daemons used up to
 * that moment; then `sim down`.
 *
 *   node dist/bench/converge.js [--json] [--scenarios lan-5,lan-10,lan-20] [--runs N]
 *                               [--config-overlay FILE]                                (root)
 *
 * FILE is merged into every agent's config, as with `sim up --config-overlay` (for example
 * `{"traffic":{"enabled":false}}` to see what traffic control costs at start-up).
 *
 * Targets (issue 5): 1.0 s, 2.0 s, 4.0 s on lan-5, lan-10, lan-20. This script reports what it
 * measures and does not judge. "RSS with 19 tunnels" is n1's agent on lan-20 (every node there
 * has 19 neighbors).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { agentTunnelStatus } from '../../src/sim/agents.js';
import { downRun } from '../../src/sim/build.js';
import { createRunner } from '../../src/system/runner.js';
import { rssMiB } from '../netns/proc.js';
import { median, round2, sum, upAndConverge } from './lib/mesh.js';

export interface ConvergeRun {
  scenario: string;
  run: number;
  agents: number;
  pairs: number;
  ok: boolean;
  /** Agents' start to `sim wait` success. */
  seconds: number;
  /** Network build time (before the agents start), for reference. */
  buildSeconds: number;
  rssMiB: { min: number; median: number; max: number; n1: number };
  /** Tunnels n1's agent reported when its RSS was read. */
  n1Tunnels: number;
  cpuSeconds: { agents: number; wireguardGo: number; perAgent: number };
  wireguardGoProcesses: number;
  wireguardGoRssMiB: number;
}

export async function convergeOnce(scenario: string, runNo: number, overlay: Record<string, unknown> | null = null): Promise<ConvergeRun> {
  const id = 'cv' + randomBytes(4).toString('hex');
  const runner = createRunner();
  try {
    const { run, up, wait, pairs, at } = await upAndConverge(runner, scenario, id, { overlay });
    const agentCpu = [...at.agentCpu.values()];
    const rss = at.agentRssMiB;
    const n1 = at.agents.find((a) => a.node === 'n1') ?? at.agents[0]!;
    const n1Tunnels = (await agentTunnelStatus(run, n1.node)).handshakeWith.length;
    return {
      scenario,
      run: runNo,
      agents: at.agents.length,
      pairs,
      ok: wait.ok,
      seconds: wait.sinceAgentsStarted ?? NaN,
      buildSeconds: round2(up.ms / 1000),
      rssMiB: { min: Math.min(...rss), median: median(rss), max: Math.max(...rss), n1: rssMiB(n1.pid) },
      n1Tunnels,
      cpuSeconds: { agents: round2(sum(agentCpu)), wireguardGo: round2(sum([...at.wireguardGoCpu.values()])), perAgent: round2(sum(agentCpu) / at.agents.length) },
      wireguardGoProcesses: at.wireguardGo.length,
      wireguardGoRssMiB: Math.round(sum(at.wireguardGoRssMiB)),
    };
  } finally {
    await downRun(id);
  }
}

const TARGETS: Record<string, number> = { 'lan-5': 1.0, 'lan-10': 2.0, 'lan-20': 4.0 };

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean' },
      scenarios: { type: 'string', default: 'lan-5,lan-10,lan-20' },
      runs: { type: 'string', default: '1' },
      'config-overlay': { type: 'string' },
    },
  });
  const overlayFile = values['config-overlay'];
  const overlay = overlayFile ? (JSON.parse(readFileSync(overlayFile, 'utf8')) as Record<string, unknown>) : null;
  const scenarios = values.scenarios.split(',').map((s) => s.trim().replace(/\.xml$/, '')).filter(Boolean);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  const results: ConvergeRun[] = [];
  for (const scenario of scenarios) {
    for (let i = 1; i <= runs; i++) {
      const r = await convergeOnce(scenario, i, overlay);
      results.push(r);
      if (!values.json) console.error(`${scenario} run ${i}: ${r.ok ? `${r.seconds} s` : 'TIMED OUT'}`);
    }
  }
  const summary = scenarios.map((s) => {
    const rs = results.filter((r) => r.scenario === s);
    return { scenario: s, runs: rs.length, allOk: rs.every((r) => r.ok), medianSeconds: median(rs.map((r) => r.seconds)), target: TARGETS[s] ?? null };
  });
  if (values.json) {
    console.log(JSON.stringify({ node: process.version, overlay, results, summary }, null, 2));
    return;
  }
  const header = ['SCENARIO', 'RUN', 'AGENTS', 'PAIRS', 'CONVERGED', 'TARGET', 'RSS MIN/MED/MAX MiB', 'RSS n1 (tunnels)', 'CPU AGENTS s', 'CPU WG-GO s', 'WG-GO RSS MiB'];
  const rows = results.map((r) => [
    r.scenario, String(r.run), String(r.agents), String(r.pairs), r.ok ? `${r.seconds} s` : 'timeout', TARGETS[r.scenario] ? `${TARGETS[r.scenario]} s` : '-',
    `${r.rssMiB.min}/${r.rssMiB.median}/${r.rssMiB.max}`, `${r.rssMiB.n1} (${r.n1Tunnels})`, `${r.cpuSeconds.agents} (${r.cpuSeconds.perAgent}/agent)`,
    `${r.cpuSeconds.wireguardGo} (${r.wireguardGoProcesses} procs)`, String(r.wireguardGoRssMiB),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const line of [header, ...rows]) console.log(line.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  if (runs > 1) for (const s of summary) console.log(`${s.scenario}: median ${s.medianSeconds} s over ${s.runs} runs (target ${s.target ?? '-'} s)`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(`converge: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
