/**
 * `scrooge demo` (the README's first command): a simulated mesh from core-scenarios/demo.xml —
 * three neighbors n1..n3, a router R selling its 20 Mbit/s uplink to host U, and an untrusted
 * host M on the mesh segment — brought up, shown, measured and taken down again.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../../agent/control.js';
import { formatRate } from '../../config/units.js';
import { ScroogeError, UsageError } from '../../errors.js';
import { agentTunnelStatus } from '../../sim/agents.js';
import { downRun, requireRoot, upRun } from '../../sim/build.js';
import { RUN_ID } from '../../sim/plan.js';
import { controlSocketPath, loadRun, type SimRun } from '../../sim/run.js';
import { agentPairs } from '../../sim/scenario.js';
import { waitForTunnels } from '../../sim/wait.js';
import { createRunner } from '../../system/runner.js';
import { type CliIO, type Command, formatTable, parseCommandLine } from '../command.js';

const UPLINK_RATE = 20e6;
const U = '10.0.1.3';
const MEASURE_SECONDS = 8;

function scenarioPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const c of [resolve(here, '../core-scenarios/demo.xml'), resolve(here, '../../core-scenarios/demo.xml'), resolve(here, '../../../core-scenarios/demo.xml')]) if (existsSync(c)) return c;
  throw new ScroogeError('ENOSCENARIO', 'core-scenarios/demo.xml not found next to the scrooge build');
}

interface TrafficStatus {
  untunneledDrops: number;
  trees: { dev: string; kind: string; classes: { classid: string; bytes: number; alias: string | null }[] }[];
}

export const demo: Command = {
  name: 'demo',
  summary: 'run the demo mesh',
  usage: `usage: scrooge demo [--keep] [--id ID] [--picture FILE]

Builds core-scenarios/demo.xml in network namespaces (needs root), starts an agent in each mesh
node, and shows: every node's neighbors and tunnels, the untrusted host M's forwarding attempt
being dropped, and two neighbors with priorities 3:1 sharing R's sold bandwidth (measured live
with iperf3). Writes a picture of the mesh (SVG, with graphviz). Then takes it all down.
  --keep          leave the mesh up and print the commands to look around
  --id ID         sim run id (default demo + random)
  --picture FILE  where to write the picture, .svg or .png (default ./scrooge-demo.svg)
`,
  async run(args, io) {
    const { values } = parseCommandLine(args, { keep: { type: 'boolean' }, id: { type: 'string' }, picture: { type: 'string' } }, { max: 0 });
    if (values.id !== undefined && !RUN_ID.test(values.id)) throw new UsageError('--id must be 1-10 lowercase letters or digits');
    requireRoot('demo');
    const id = values.id ?? `demo${randomBytes(2).toString('hex')}`;
    const picture = resolve(values.picture ?? 'scrooge-demo.svg');
    const started = performance.now();
    const say = (s: string) => io.out(s + '\n');
    const run0 = performance.now();
    say(`== Building the demo mesh (run ${id}): core-scenarios/demo.xml`);
    await upRun({
      scenarioPath: scenarioPath(), id, agents: true,
      configOverlay: { nodes: { R: { uplinks: [{ interface: 'eth1', rate: UPLINK_RATE }], share: 1 } } },
    });
    let keep = false;
    try {
      const run = await loadRun(id);
      const waited = await waitForTunnels(run, 30_000, { status: agentTunnelStatus });
      if (!waited.ok) throw new ScroogeError('EDEMO', `the tunnels did not come up: ${waited.pairs.filter((p) => !p.ok).map((p) => `${p.a}-${p.b}`).join(', ')}`);
      say(`   ${waited.pairs.length} tunnels up and handshaken ${waited.sinceAgentsStarted ?? '?'} s after the agents started (${Math.round((performance.now() - run0) / 100) / 10} s in all)\n`);
      await showNeighbors(run, io);
      const drops = await untrusted(run, io);
      const rates = await shareUplink(run, io);
      await drawPicture(run, rates, drops, picture, io);
      say(`\n== Done in ${Math.round((performance.now() - started) / 1000)} s.`);
      if (values.keep) {
        keep = true;
        say(`\nThe mesh is still up. Look around:\n  scrooge sim status ${id}\n  scrooge sim ctl ${id} R -- neighbors\n  scrooge sim ctl ${id} R -- tc show\n  scrooge sim exec ${id} n1 -- ping -c 3 ${U}\n  scrooge sim down ${id}      # when done`);
      }
    } finally {
      if (!keep) {
        await downRun(id);
        say(`   (run ${id} taken down: namespaces, agents and tunnels removed)`);
      }
    }
    return 0;
  },
};

function ctl(run: SimRun, node: string, cmd: string, args: Record<string, unknown> = {}) {
  return controlRequest(controlSocketPath(run.id, node), cmd, args, 10_000);
}

function ns(run: SimRun, node: string): string {
  return run.nodes[node]!;
}

async function showNeighbors(run: SimRun, io: CliIO): Promise<void> {
  const nameOf = new Map(Object.entries(run.agents.keys ?? {}).map(([n, k]) => [k, n]));
  io.out('== Neighbors and tunnels, as each agent sees them\n');
  const rows: string[][] = [];
  for (const node of Object.keys(run.agents.keys ?? {}).sort()) {
    const { neighbors } = (await ctl(run, node, 'neighbors')) as { neighbors: { key: string; state: string; linkLocal: string | null; tunnel: { ifname: string; state: string; latestHandshakeAgoMs: number | null; rxBytes: number; txBytes: number } | null }[] };
    for (const n of neighbors) {
      rows.push([node, nameOf.get(n.key) ?? n.key.slice(0, 12), n.state, n.linkLocal ?? '-', n.tunnel?.ifname ?? '-', n.tunnel?.state ?? '-',
        n.tunnel?.latestHandshakeAgoMs == null ? '-' : `${(n.tunnel.latestHandshakeAgoMs / 1000).toFixed(1)}s ago`]);
    }
  }
  io.out(formatTable(['NODE', 'NEIGHBOR', 'STATE', 'LINK-LOCAL', 'TUNNEL', 'T-STATE', 'HANDSHAKE'], rows) + '\n');
}

/** M (runs no agent, has no tunnel) tries to use R as its router: R drops and counts it. */
async function untrusted(run: SimRun, io: CliIO): Promise<number> {
  const exec = createRunner();
  io.out('== The untrusted host M tries to send through R to U (no tunnel: R must not forward it)\n');
  await exec(['ip', 'route', 'replace', '10.0.1.0/24', 'via', '10.0.0.5'], { netns: ns(run, 'M') });
  await exec(['ip', 'route', 'replace', '10.0.0.0/24', 'via', '10.0.1.2'], { netns: ns(run, 'U') });
  const before = ((await ctl(run, 'R', 'traffic')) as TrafficStatus).untunneledDrops;
  const ping = await exec(['ping', '-c', '5', '-i', '0.2', '-W', '1', U], { netns: ns(run, 'M'), okExitCodes: [0, 1], timeoutMs: 10_000 });
  const after = ((await ctl(run, 'R', 'traffic')) as TrafficStatus).untunneledDrops;
  const loss = /(\d+)% packet loss/.exec(ping.stdout)?.[1] ?? '?';
  io.out(`   M: ping ${U} -> ${loss}% packet loss\n   R: untunneled packets dropped ${before} -> ${after}\n\n`);
  return after;
}

/** n1 (priority 3) and n2 (priority 1) fill R's uplink through their tunnels; live bars. */
async function shareUplink(run: SimRun, io: CliIO): Promise<Map<string, number>> {
  const exec = createRunner();
  const keys = run.agents.keys!;
  for (const [node, prio] of [['n1', 3], ['n2', 1]] as const) {
    await ctl(run, 'R', 'set', { neighbor: keys[node], alias: node });
    await ctl(run, 'R', 'set', { neighbor: node, priority: prio });
    const { tunnels } = (await ctl(run, node, 'tunnels', { stats: false })) as { tunnels: { neighbor: string; ifname: string }[] };
    const toR = tunnels.find((t) => t.neighbor === keys['R'])!.ifname;
    await exec(['ip', 'route', 'replace', '10.0.1.0/24', 'dev', toR], { netns: ns(run, node) });
  }
  io.out(`== n1 (priority 3) and n2 (priority 1) both send as fast as they can through their tunnels to U;\n   R sells its ${formatRate(UPLINK_RATE)} uplink (share 1). Rates per second, from R's traffic classes:\n`);
  const servers = [5201, 5202].map((p) => exec(['iperf3', '-s', '-1', '-p', String(p)], { netns: ns(run, 'U'), timeoutMs: 60_000 }).catch(() => undefined));
  await new Promise((r) => setTimeout(r, 300));
  const clients = (['n1', 'n2'] as const).map((n, i) =>
    exec(['iperf3', '-c', U, '-p', String(5201 + i), '-t', String(MEASURE_SECONDS)], { netns: ns(run, n), timeoutMs: 60_000 }).catch((err: Error) => err));
  const bytes = async () => {
    const t = (await ctl(run, 'R', 'traffic')) as TrafficStatus;
    const up = t.trees.find((x) => x.dev === 'eth1');
    return new Map((up?.classes ?? []).filter((c) => c.alias).map((c) => [c.alias!, c.bytes]));
  };
  const totals = new Map<string, number>();
  let prev = await bytes();
  let prevAt = performance.now();
  for (let s = 1; s <= MEASURE_SECONDS; s++) {
    await new Promise((r) => setTimeout(r, 1000));
    const cur = await bytes();
    const now = performance.now();
    const line: string[] = [];
    for (const node of ['n1', 'n2']) {
      const bps = (((cur.get(node) ?? 0) - (prev.get(node) ?? 0)) * 8) / ((now - prevAt) / 1000);
      if (s > 1) totals.set(node, (totals.get(node) ?? 0) + bps);
      const bar = '#'.repeat(Math.round((bps / UPLINK_RATE) * 40));
      line.push(`${node} ${(bps / 1e6).toFixed(1).padStart(5)} Mbit/s ${bar.padEnd(40)}`);
    }
    io.out(`   ${String(s).padStart(2)}s  ${line.join('  ')}\n`);
    prev = cur;
    prevAt = now;
  }
  await Promise.all(clients);
  await Promise.all(servers);
  const avg = new Map([...totals].map(([k, v]) => [k, v / (MEASURE_SECONDS - 1)]));
  const a = avg.get('n1') ?? 0;
  const b = avg.get('n2') ?? 0;
  io.out(`   average after the first second: n1 ${(a / 1e6).toFixed(2)} Mbit/s, n2 ${(b / 1e6).toFixed(2)} Mbit/s, ratio ${(a / Math.max(b, 1)).toFixed(2)} (priorities 3:1)\n`);
  return avg;
}

async function drawPicture(run: SimRun, rates: Map<string, number>, drops: number, file: string, io: CliIO): Promise<void> {
  const agents = Object.keys(run.agents.keys ?? {});
  const lines = ['graph scrooge {', '  graph [label="Scrooge demo mesh: tunnels (green), sold uplink, dropped untunneled traffic", fontsize=11, overlap=false];', '  node [fontname="Helvetica", fontsize=11];'];
  for (const d of run.topology.devices) {
    const agent = agents.includes(d.name);
    lines.push(`  "${d.name}" [shape=${agent ? 'circle' : 'box'}, style=filled, fillcolor="${agent ? (d.name === 'R' ? '#ffd27f' : '#bfe3ff') : d.name === 'M' ? '#ffb3b3' : '#e0e0e0'}"];`);
  }
  for (const [a, b] of agentPairs(run.topology)) {
    const node = a === 'R' ? b : b === 'R' ? a : undefined;
    const rate = node ? rates.get(node) : undefined;
    lines.push(`  "${a}" -- "${b}" [color="#2e9e44", penwidth=${rate ? 1 + (rate / UPLINK_RATE) * 6 : 1.2}${rate ? `, label="${(rate / 1e6).toFixed(1)} Mbit/s"` : ''}, fontsize=10];`);
  }
  lines.push(`  "R" -- "U" [label="uplink ${formatRate(UPLINK_RATE)}", penwidth=2, fontsize=10];`);
  lines.push(`  "M" -- "R" [style=dashed, color=red, label="${drops} dropped", fontcolor=red, fontsize=10];`);
  lines.push('}');
  const dot = lines.join('\n') + '\n';
  try {
    const format = file.endsWith('.png') ? 'png' : 'svg';
    writeFileSync(file, execFileSync('dot', [`-T${format}`], { input: dot }));
    io.out(`\n== Picture of the mesh: ${file}\n`);
  } catch {
    const dotFile = file.replace(/\.svg$/, '') + '.dot';
    writeFileSync(dotFile, dot);
    io.out(`\n== graphviz (dot) is not installed: wrote ${dotFile} instead (apt-get install graphviz)\n`);
  }
}
