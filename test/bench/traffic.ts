/**
 * Traffic-control speed (issue: traffic control, "Speed"). Needs root; prints its figures.
 *   1. full plan + apply with 100 neighbors (100 tunnel trees, 100 classes on the uplink, the
 *      filter), a re-plan that changes every class (share), one priority change, a no-op;
 *      in a scratch namespace with 100 stand-in tunnel interfaces (veth);
 *   2. in a running mesh (uplink.xml): `scrooge priority` to the kernel holding the new class
 *      (the agent answers once applied; the new rate is then read back with tc), and a new
 *      tunnel to its classes and rules being in place (from the agent's debug log).
 * Usage: node dist/bench/traffic.js [--json] [--neighbors 100]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { controlRequest } from '../../src/agent/control.js';
import { agentTunnelStatus } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { controlSocketPath, loadRun, logsDir } from '../../src/sim/run.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { createRunner } from '../../src/system/runner.js';
import { parseTcClasses, TrafficControl } from '../../src/system/traffic.js';

const { values } = parseArgs({ options: { json: { type: 'boolean' }, neighbors: { type: 'string', default: '100' }, inner: { type: 'string' } } });
const N = Number(values.neighbors);
const ifname = (i: number) => `sc${i.toString(16).padStart(13, '0')}`;
const key = (i: number) => Buffer.from(randomBytesSeeded(i)).toString('base64');
function randomBytesSeeded(i: number): Uint8Array {
  const b = new Uint8Array(32);
  new DataView(b.buffer).setUint32(0, i + 1);
  return b;
}

async function inner(): Promise<void> {
  const tc = new TrafficControl({ run: createRunner() }, { backend: 'auto' });
  await tc.start();
  const tunnels = Array.from({ length: N }, (_, i) => ({ ifname: ifname(i), neighbor: key(i), meshIface: 'eth0', priority: 1 + (i % 3), cap: i % 5 === 0 ? 5e6 : undefined }));
  const base = { share: 0.5, meshInterfaces: [{ name: 'eth0', rate: 1e9 }], uplinks: [{ name: 'up0', rate: 100e6 }], tunnels };
  const time = async (input: typeof base) => {
    const t0 = performance.now();
    const r = await tc.apply(input);
    return { ms: Math.round((performance.now() - t0) * 10) / 10, tcCommands: r.tcCommands, filterChanged: r.filterChanged };
  };
  const build = await time(base);
  const replanAll = await time({ ...base, share: 0.9 });
  const onePriority = await time({ ...base, share: 0.9, tunnels: tunnels.map((t, i) => (i === 7 ? { ...t, cap: 1e6 } : t)) });
  const noop = await time({ ...base, share: 0.9, tunnels: tunnels.map((t, i) => (i === 7 ? { ...t, cap: 1e6 } : t)) });
  await tc.stop();
  console.log(JSON.stringify({ neighbors: N, build, replanAll, oneNeighbor: onePriority, noop }));
}

function scratch(): unknown {
  const ns = `scb${randomBytes(3).toString('hex')}`;
  const sh = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  sh(['ip', 'netns', 'add', ns]);
  try {
    const lines = ['link add up0 type veth peer name up1', 'link add eth0 type veth peer name eth1', 'link set up0 up', 'link set eth0 up'];
    for (let i = 0; i < N; i++) lines.push(`link add ${ifname(i)} type veth peer name p${i}`, `link set ${ifname(i)} up`);
    execFileSync('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url), '--inner', '1', '--neighbors', String(N)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`inner run failed: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  } finally {
    sh(['ip', 'netns', 'del', ns]);
  }
}

async function mesh(): Promise<unknown> {
  const id = `tb${randomBytes(3).toString('hex')}`;
  const scenario = fileURLToPath(new URL('../../core-scenarios/uplink.xml', import.meta.url));
  await upRun({ scenarioPath: scenario, id, agents: true, configOverlay: { log: { level: 'debug' }, nodes: { R: { uplinks: [{ interface: 'eth1', rate: '20mbit' }] } } } });
  try {
    const run = await loadRun(id);
    const waited = await waitForTunnels(run, 30_000, { status: agentTunnelStatus });
    if (!waited.ok) throw new Error('tunnels did not come up');
    const socket = controlSocketPath(id, 'R');
    const keyA = run.agents.keys!['A']!;
    const samples: number[] = [];
    for (let i = 0; i < 20; i++) {
      const priority = 2 + (i % 5);
      const t0 = performance.now();
      await controlRequest(socket, 'set', { neighbor: keyA, priority });
      samples.push(performance.now() - t0);
      // The kernel holds it now: check that A's class rate moved (A and B: rate ∝ priority).
      const classes = parseTcClasses(execFileSync('ip', ['netns', 'exec', run.nodes['R']!, 'tc', 'class', 'show', 'dev', 'eth1'], { encoding: 'utf8' }));
      const neighbors = classes.filter((c) => c.parent === '5c:20' && c.classid !== '5c:21').map((c) => c.rate!);
      const ratio = Math.max(...neighbors) / Math.min(...neighbors);
      if (Math.abs(ratio - priority) > 0.05 * priority) throw new Error(`after priority ${priority} the kernel has ratio ${ratio}`);
    }
    samples.sort((a, b) => a - b);
    // New tunnel -> its tree and filter entry: from R's log, 'applied tunnels' to the next 'traffic applied'.
    const log = readFileSync(`${logsDir(id)}/R.log`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { time: number; msg: string });
    const delays: number[] = [];
    for (const [i, e] of log.entries()) {
      if (e.msg !== 'applied tunnels') continue;
      const next = log.slice(i + 1).find((x) => x.msg === 'traffic applied');
      if (next) delays.push(next.time - e.time);
    }
    return {
      priorityToKernelMs: { median: Math.round(samples[10]! * 10) / 10, max: Math.round(samples.at(-1)! * 10) / 10, samples: samples.length },
      newTunnelToClassesMs: delays,
    };
  } finally {
    await downRun(id);
  }
}

if (values.inner) {
  await inner();
} else {
  const result = { planApply: scratch(), mesh: await mesh(), targets: { priorityToKernelMs: 100, replanWith100NeighborsMs: 500 } };
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    const p = result.planApply as { neighbors: number; build: { ms: number; tcCommands: number }; replanAll: { ms: number; tcCommands: number }; oneNeighbor: { ms: number; tcCommands: number }; noop: { ms: number; tcCommands: number } };
    const m = result.mesh as { priorityToKernelMs: { median: number; max: number }; newTunnelToClassesMs: number[] };
    console.log(`plan + apply, ${p.neighbors} neighbors: build ${p.build.ms} ms (${p.build.tcCommands} tc commands), re-plan of every class ${p.replanAll.ms} ms (${p.replanAll.tcCommands}), one neighbor ${p.oneNeighbor.ms} ms (${p.oneNeighbor.tcCommands}), no-op ${p.noop.ms} ms (${p.noop.tcCommands})`);
    console.log(`scrooge priority -> kernel: median ${m.priorityToKernelMs.median} ms, max ${m.priorityToKernelMs.max} ms (target < 100 ms)`);
    console.log(`new tunnel -> its classes and rules: ${m.newTunnelToClassesMs.join(', ')} ms`);
  }
}
