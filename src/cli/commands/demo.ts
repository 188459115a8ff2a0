/**
 * `scrooge demo` (the README's first command): a simulated mesh from core-scenarios/demo.xml —
 * n1 and n3 on R's mesh segment, n2 reachable only through n3 (two tunnels from R), a router R
 * selling its 20 Mbit/s uplink to host U, and an untrusted host M on the mesh segment — brought
 * up, shown, measured and taken down again. Routing is babeld's (on by default in `scrooge sim`):
 * no route is set by hand, R is the gateway (it has the uplink) and masquerades.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../../agent/control.js';
import { formatRate } from '../../config/units.js';
import { ScroogeError, UsageError } from '../../errors.js';
import { fromBase64Strict } from '../../protocol/bytes.js';
import { meshAddress6 } from '../../routing/address.js';
import { agentTunnelStatus } from '../../sim/agents.js';
import { simMeshAddress4 } from '../../sim/nodeconfig.js';
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
/** The far neighbor, and the relay its traffic crosses to reach R. */
const FAR = 'n2';
const RELAY = 'n3';

interface RouteRow { prefix: string; via: string; tunnel: string; neighbor: string | null; metric: number; installed: boolean; reachable: boolean }

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
node (each runs babeld over its tunnels), and shows: every node's neighbors and tunnels, the
routes babeld found (n2 reaches R's uplink through n3: two tunnels, no route set by hand), a
traceroute across them, the untrusted host M's forwarding attempt being dropped, and n1 and n2
(through n3) with priorities 3:1 sharing R's sold bandwidth (measured live with iperf3). Writes
a picture of the mesh and its routes (SVG, with graphviz). Then takes it all down.
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
    // No overlay: demo.xml itself sells R's uplink in full, so CORE's hook does the same.
    await upRun({ scenarioPath: scenarioPath(), id, agents: true });
    let keep = false;
    try {
      const run = await loadRun(id);
      const waited = await waitForTunnels(run, 30_000, { status: agentTunnelStatus });
      if (!waited.ok) throw new ScroogeError('EDEMO', `the tunnels did not come up: ${waited.pairs.filter((p) => !p.ok).map((p) => `${p.a}-${p.b}`).join(', ')}`);
      say(`   ${waited.pairs.length} tunnels up and handshaken ${waited.sinceAgentsStarted ?? '?'} s after the agents started (${Math.round((performance.now() - run0) / 100) / 10} s in all)\n`);
      await showNeighbors(run, io);
      const routes = await showRoutes(run, io);
      await traceroute(run, io);
      const drops = await untrusted(run, io);
      const rates = await shareUplink(run, io);
      await drawPicture(run, rates, drops, routes, picture, io);
      say(`\n== Done in ${Math.round((performance.now() - started) / 1000)} s.`);
      if (values.keep) {
        keep = true;
        say(`\nThe mesh is still up. Look around:\n  scrooge sim status ${id}\n  scrooge sim ctl ${id} R -- neighbors\n  scrooge sim ctl ${id} ${FAR} -- routes\n  scrooge sim ctl ${id} R -- tc show\n  scrooge sim exec ${id} ${FAR} -- traceroute -n ${U}\n  scrooge sim down ${id}      # when done`);
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
  // M's own attempt: it routes U's subnet via R's mesh-segment address (U already has a default
  // route to R: the scenario's set-up), bypassing any tunnel.
  await exec(['ip', 'route', 'replace', '10.0.1.0/24', 'via', '10.0.0.5'], { netns: ns(run, 'M') });
  const before = ((await ctl(run, 'R', 'traffic')) as TrafficStatus).untunneledDrops;
  const ping = await exec(['ping', '-c', '5', '-i', '0.2', '-W', '1', U], { netns: ns(run, 'M'), okExitCodes: [0, 1], timeoutMs: 10_000 });
  const after = ((await ctl(run, 'R', 'traffic')) as TrafficStatus).untunneledDrops;
  const loss = /(\d+)% packet loss/.exec(ping.stdout)?.[1] ?? '?';
  io.out(`   M: ping ${U} -> ${loss}% packet loss\n   R: untunneled packets dropped ${before} -> ${after}\n\n`);
  return after;
}

/**
 * n1 (priority 3, R's direct neighbor) and n2 (two hops away: its traffic reaches R through
 * n3's tunnel, so R serves it as n3's, priority 1) fill R's uplink; live bars.
 */
async function shareUplink(run: SimRun, io: CliIO): Promise<Map<string, number>> {
  const exec = createRunner();
  const keys = run.agents.keys!;
  for (const [node, prio] of [['n1', 3], [RELAY, 1]] as const) {
    await ctl(run, 'R', 'set', { neighbor: keys[node], alias: node });
    await ctl(run, 'R', 'set', { neighbor: node, priority: prio });
  }
  io.out(`== n1 (priority 3) and ${FAR} (through ${RELAY}, priority 1) both send to U as fast as they can, over the routes\n   babeld found; R sells its ${formatRate(UPLINK_RATE)} uplink (share 1). Rates per second, from R's traffic classes:\n`);
  const servers = [5201, 5202].map((p) => exec(['iperf3', '-s', '-1', '-p', String(p)], { netns: ns(run, 'U'), timeoutMs: 60_000 }).catch(() => undefined));
  await new Promise((r) => setTimeout(r, 300));
  const clients = (['n1', FAR] as const).map((n, i) =>
    exec(['iperf3', '-c', U, '-p', String(5201 + i), '-t', String(MEASURE_SECONDS)], { netns: ns(run, n), timeoutMs: 60_000 }).catch((err: Error) => err));
  const bytes = async () => {
    const t = (await ctl(run, 'R', 'traffic')) as TrafficStatus;
    const up = t.trees.find((x) => x.dev === 'eth1');
    return new Map((up?.classes ?? []).filter((c) => c.alias).map((c) => [c.alias!, c.bytes]));
  };
  // R's class of each flow: n1's own, and n3's for n2's (R knows only its neighbor).
  const flows = [['n1', 'n1'], [FAR, RELAY]] as const;
  const totals = new Map<string, number>();
  let prev = await bytes();
  let prevAt = performance.now();
  for (let s = 1; s <= MEASURE_SECONDS; s++) {
    await new Promise((r) => setTimeout(r, 1000));
    const cur = await bytes();
    const now = performance.now();
    const line: string[] = [];
    for (const [node, cls] of flows) {
      const bps = (((cur.get(cls) ?? 0) - (prev.get(cls) ?? 0)) * 8) / ((now - prevAt) / 1000);
      if (s > 1) totals.set(node, (totals.get(node) ?? 0) + bps);
      const bar = '#'.repeat(Math.max(0, Math.round((bps / UPLINK_RATE) * 40)));
      line.push(`${node} ${(bps / 1e6).toFixed(1).padStart(5)} Mbit/s ${bar.padEnd(40)}`);
    }
    io.out(`   ${String(s).padStart(2)}s  ${line.join('  ')}\n`);
    prev = cur;
    prevAt = now;
  }
  const ended = await Promise.all(clients);
  await Promise.all(servers);
  for (const [i, e] of ended.entries()) if (e instanceof Error) io.out(`   (iperf3 from ${i === 0 ? 'n1' : FAR} failed: ${e.message.split('\n')[0]})\n`);
  const avg = new Map([...totals].map(([k, v]) => [k, v / (MEASURE_SECONDS - 1)]));
  const a = avg.get('n1') ?? 0;
  const b = avg.get(FAR) ?? 0;
  io.out(`   average after the first second: n1 ${(a / 1e6).toFixed(2)} Mbit/s, ${FAR} ${(b / 1e6).toFixed(2)} Mbit/s, ratio ${(a / Math.max(b, 1)).toFixed(2)} (priorities 3:1)\n`);
  return avg;
}

/** Each agent's routes (`scrooge routes --json`), the node names filled in. */
async function routesOf(run: SimRun): Promise<Map<string, RouteRow[]>> {
  const out = new Map<string, RouteRow[]>();
  for (const node of Object.keys(run.agents.keys ?? {}).sort()) {
    out.set(node, ((await ctl(run, node, 'routes')) as { routes: RouteRow[] }).routes.filter((r) => r.installed && r.reachable));
  }
  return out;
}

/** Who has which mesh address (IPv4 from the scenario's device ids, IPv6 from the keys). */
function meshNames(run: SimRun): Map<string, string> {
  const names = new Map<string, string>();
  for (const d of run.topology.devices) {
    const v4 = simMeshAddress4(d);
    if (v4) names.set(`${v4}/32`, d.name);
    const key = run.agents.keys?.[d.name] ? fromBase64Strict(run.agents.keys[d.name]!, 32) : undefined;
    if (key) names.set(`${meshAddress6(key)}/128`, d.name);
  }
  names.set('0.0.0.0/0', 'default');
  names.set('::/0', 'default');
  return names;
}

/**
 * Waits until babeld has given every agent a route to every other agent's mesh addresses and,
 * but for the gateway R, a default route; prints them (IPv4; IPv6 counted).
 */
async function showRoutes(run: SimRun, io: CliIO): Promise<Map<string, RouteRow[]>> {
  const agents = Object.keys(run.agents.keys ?? {}).sort();
  const names = meshNames(run);
  const byKey = new Map(Object.entries(run.agents.keys ?? {}).map(([n, k]) => [k, n]));
  // Converged for the demo: every node reaches every other's mesh addresses (and, but for R, a
  // default route), IPv4 and IPv6, and every default route points one hop closer to R, the
  // gateway (hops counted over the tunnels). babeld may take longer to settle other routes on
  // their shortest path (it keeps a working route until a better one has been around a while).
  const hops = new Map<string, number>([['R', 0]]);
  const pairs = agentPairs(run.topology);
  for (let frontier = ['R']; frontier.length; ) {
    const next: string[] = [];
    for (const [a, b] of pairs) {
      for (const [x, y] of [[a, b], [b, a]] as const) {
        if (frontier.includes(x) && !hops.has(y)) {
          hops.set(y, hops.get(x)! + 1);
          next.push(y);
        }
      }
    }
    frontier = next;
  }
  const complete = (routes: Map<string, RouteRow[]>) =>
    agents.every((node) => {
      const list = routes.get(node) ?? [];
      const to = new Set(list.map((r) => names.get(r.prefix)));
      const wanted = [...agents.filter((a) => a !== node), ...(node === 'R' ? [] : ['default'])];
      if (!wanted.every((w) => to.has(w)) || list.filter((r) => r.prefix.includes(':')).length < wanted.length) return false;
      if (node === 'R') return true;
      const def = list.find((r) => r.prefix === '0.0.0.0/0');
      const via = def?.neighbor ? byKey.get(def.neighbor) : undefined;
      return via !== undefined && hops.get(via) === hops.get(node)! - 1;
    });
  const t0 = performance.now();
  let routes = await routesOf(run);
  while (!complete(routes)) {
    if (performance.now() - t0 > 45_000) throw new ScroogeError('EDEMO', 'babeld did not give every node its routes (and a default route towards R) within 45 s', `see ${run.id}'s agent logs (scrooge sim ctl ${run.id} NODE -- routes)`);
    await new Promise((r) => setTimeout(r, 200));
    routes = await routesOf(run);
  }
  io.out(`== Routes babeld found over the tunnels (every node reaches every other and R's default, IPv4 and IPv6),\n   complete ${((performance.now() - t0) / 1000).toFixed(1)} s after the tunnels; IPv4 shown, from \`scrooge routes --json\`:\n`);
  const rows: string[][] = [];
  for (const node of agents) {
    const list = routes.get(node) ?? [];
    for (const r of list.filter((x) => !x.prefix.includes(':')).sort((x, y) => (names.get(x.prefix) ?? x.prefix).localeCompare(names.get(y.prefix) ?? y.prefix))) {
      rows.push([node, names.get(r.prefix) ?? '?', r.prefix, r.neighbor ? (byKey.get(r.neighbor) ?? r.neighbor.slice(0, 12)) : r.via, r.tunnel, String(r.metric)]);
    }
  }
  io.out(formatTable(['NODE', 'TO', 'PREFIX', 'VIA', 'TUNNEL', 'METRIC'], rows) + '\n');
  io.out(`   IPv6: ${agents.map((n) => `${n} ${(routes.get(n) ?? []).filter((r) => r.prefix.includes(':')).length}`).join(', ')} routes (mesh /128s in fdb5:c7c7:82e9::/64, and ::/0)\n\n`);
  return routes;
}

/** n2's packets to U cross n3 and R: a traceroute shows each hop's mesh address. */
async function traceroute(run: SimRun, io: CliIO): Promise<void> {
  const exec = createRunner();
  io.out(`== ${FAR} -> U: traceroute, hop by hop across the tunnels (${RELAY}, then R, then U)\n`);
  const r = await exec(['traceroute', '-n', '-q', '1', '-w', '1', '-m', '5', U], { netns: ns(run, FAR), okExitCodes: [0, 1], timeoutMs: 15_000 }).catch((err: Error) => ({ stdout: `traceroute failed: ${err.message}` }));
  const names = new Map<string, string>([[U, 'U']]);
  for (const d of run.topology.devices) {
    const v4 = simMeshAddress4(d);
    if (v4) names.set(v4, d.name);
  }
  for (const line of r.stdout.split('\n').filter((l) => /^\s*\d+\s/.test(l))) {
    const addr = /^\s*\d+\s+(\S+)/.exec(line)?.[1] ?? '';
    io.out(`   ${line.trim()}${names.has(addr) ? `   (${names.get(addr)})` : ''}\n`);
  }
  io.out('\n');
}

async function drawPicture(run: SimRun, rates: Map<string, number>, drops: number, routes: Map<string, RouteRow[]>, file: string, io: CliIO): Promise<void> {
  const agents = Object.keys(run.agents.keys ?? {});
  const byKey = new Map(Object.entries(run.agents.keys ?? {}).map(([n, k]) => [k, n]));
  const lines = ['graph scrooge {', '  graph [label="Scrooge demo mesh: tunnels (green, with the traffic R sold), default routes babeld found (blue arrows), dropped untunneled traffic (red)", fontsize=11, overlap=false];', '  node [fontname="Helvetica", fontsize=11];'];
  for (const d of run.topology.devices) {
    const agent = agents.includes(d.name);
    const v4 = agent ? simMeshAddress4(d) : undefined;
    lines.push(`  "${d.name}" [shape=${agent ? 'circle' : 'box'}, style=filled, label="${d.name}${v4 ? `\\n${v4}` : ''}", fillcolor="${agent ? (d.name === 'R' ? '#ffd27f' : '#bfe3ff') : d.name === 'M' ? '#ffb3b3' : '#e0e0e0'}"];`);
  }
  // What each tunnel carried to R's uplink: n1's own flow, and n2's over n2-n3 and n3-R.
  const flowOver = (a: string, b: string): string | undefined => {
    const pair = [a, b].sort().join(' ');
    if (pair === ['R', 'n1'].sort().join(' ')) return 'n1';
    if (pair === ['R', RELAY].sort().join(' ') || pair === [FAR, RELAY].sort().join(' ')) return FAR;
    return undefined;
  };
  for (const [a, b] of agentPairs(run.topology)) {
    const flow = flowOver(a, b);
    const rate = flow ? rates.get(flow) : undefined;
    const label = rate ? `${flow}: ${(rate / 1e6).toFixed(1)} Mbit/s` : '';
    lines.push(`  "${a}" -- "${b}" [color="#2e9e44", penwidth=${rate ? 1 + (rate / UPLINK_RATE) * 6 : 1.2}${label ? `, label="${label}"` : ''}, fontsize=10];`);
  }
  // Each node's IPv4 default route, to the neighbor babeld chose.
  for (const [node, list] of routes) {
    const def = list.find((r) => r.prefix === '0.0.0.0/0');
    const via = def?.neighbor ? byKey.get(def.neighbor) : undefined;
    if (via) lines.push(`  "${node}" -- "${via}" [dir=forward, color="#1f5fbf", style=dashed, constraint=false, label="default (metric ${def!.metric})", fontcolor="#1f5fbf", fontsize=9];`);
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
