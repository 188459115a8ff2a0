/**
 * Churn soak (issue: demo, operations, proof under churn): lan-10 with random agent kills (-9)
 * and restarts, clean stops and starts, links going down and up, and one node leaving for good.
 * At the end every live pair must have exactly one working tunnel, nothing may have leaked
 * (interfaces, wireguard-go daemons, rules), and agents that ran throughout may not have grown
 * more than 20 % in memory after warm-up. Prints its figures.
 *   node dist/bench/soak.js [--seconds 600] [--seed N] [--json]
 * A short version runs in `npm test` (test/netns/soak.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { controlRequest } from '../../src/agent/control.js';
import { agentTunnelStatus, startAgent, stopAgent } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { controlSocketPath, isAlive, loadRun } from '../../src/sim/run.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { createRunner } from '../../src/system/runner.js';

export interface SoakResult {
  ok: boolean;
  seconds: number;
  seed: number;
  actions: Record<string, number>;
  departed: string;
  reconvergedAfterSeconds: number | null;
  pairs: { expected: number; working: number; problems: string[] };
  leaks: string[];
  rss: { node: string; afterWarmupMB: number; endMB: number; growth: number }[];
  maxRssGrowth: number;
}

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Deterministic choices for a given seed (xorshift32). */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)), pick: <T>(xs: T[]) => xs[Math.floor(next() * xs.length)]! };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * @param opts.minChurn kills, stops and link flaps done at the least, however long the random
 *   pauses between them run (the churn goes on past its time until then): a short soak whose
 *   seed drew long pauses would otherwise prove little.
 */
export async function runSoak(opts: { seconds: number; seed?: number; minChurn?: number; log?: (line: string) => void }): Promise<SoakResult> {
  const seed = opts.seed ?? Number.parseInt(randomBytes(4).toString('hex'), 16);
  const log = opts.log ?? ((l: string) => console.error(l));
  const r = rng(seed);
  const run = createRunner();
  const id = `sk${randomBytes(3).toString('hex')}`;
  const scenario = fileURLToPath(new URL('../../core-scenarios/lan-10.xml', import.meta.url));
  // Shorter tunnel timers, so a departed node's tunnels go within the soak.
  const overlay = { tunnels: { keepalive: '2s', deadAfter: '7s' } };
  const started = Date.now();
  log(`[soak ${id}] seed ${seed}, ${opts.seconds} s on lan-10`);
  await upRun({ scenarioPath: scenario, id, agents: true, configOverlay: overlay });
  try {
    let simRun = await loadRun(id);
    const nodes = Object.keys(simRun.agents.keys!).sort();
    const first = await waitForTunnels(simRun, 60_000, { status: agentTunnelStatus });
    if (!first.ok) throw new Error('lan-10 did not converge at start');
    log(`[soak ${id}] converged in ${first.sinceAgentsStarted} s`);

    const warmup = Math.min(15_000, opts.seconds * 1000 * 0.15);
    const settleAt = started + opts.seconds * 1000 - 20_000;
    await sleep(warmup);
    simRun = await loadRun(id);
    const rssWarm = new Map(nodes.map((n) => [n, rssMB(simRun.agents.pids[n]!.pid)]));
    const restarted = new Set<string>();
    const actions: Record<string, number> = { kill: 0, stop: 0, linkflap: 0, leave: 0 };
    const departed = r.pick(nodes);
    // Three agents are never killed or stopped (their links still flap and their neighbors churn):
    // their memory tells whether an agent grows under churn.
    const steady = nodes.filter((n) => n !== departed).sort(() => r.next() - 0.5).slice(0, 3);
    let leftAt = 0;
    const leaveAfter = started + warmup + (settleAt - started - warmup) / 3;

    const churned = () => actions['kill']! + actions['stop']! + actions['linkflap']!;
    while (Date.now() < settleAt || churned() < (opts.minChurn ?? 0) || !leftAt) {
      if (!leftAt && Date.now() > leaveAfter) {
        // A node leaves for good: its agent stops (cleanly) and its link goes down.
        await stopAgent(await loadRun(id), departed, 'SIGTERM');
        await run(['ip', 'link', 'set', 'eth0', 'down'], { netns: simRun.nodes[departed]! });
        actions['leave']!++;
        leftAt = Date.now();
        log(`[soak ${id}] ${departed} left for good`);
        continue;
      }
      const live = nodes.filter((n) => n !== departed || !leftAt);
      const node = r.pick(live.filter((n) => n !== departed));
      const kind = steady.includes(node) ? 'linkflap' : r.pick(['kill', 'kill', 'stop', 'linkflap']);
      const cur = await loadRun(id);
      if (kind === 'kill' || kind === 'stop') {
        await stopAgent(cur, node, kind === 'kill' ? 'SIGKILL' : 'SIGTERM');
        await sleep(r.int(300, 3000));
        await startAgent(await loadRun(id), node);
        restarted.add(node);
      } else {
        await run(['ip', 'link', 'set', 'eth0', 'down'], { netns: cur.nodes[node]! });
        await sleep(r.int(1000, 6000));
        await run(['ip', 'link', 'set', 'eth0', 'up'], { netns: cur.nodes[node]! });
      }
      actions[kind]!++;
      log(`[soak ${id}] ${Math.round((Date.now() - started) / 1000)}s ${kind} ${node}`);
      await sleep(r.int(1000, 4000));
    }

    // Settle: the live pairs must converge again, and the departed node be forgotten.
    simRun = await loadRun(id);
    const live = nodes.filter((n) => n !== departed);
    const settleStart = Date.now();
    let reconverged: number | null = null;
    let problems: string[] = [];
    let working = 0;
    const expected = (live.length * (live.length - 1)) / 2;
    const nameOf = new Map(Object.entries(simRun.agents.keys!).map(([n, k]) => [k, n]));
    while (Date.now() - settleStart < 20_000) {
      problems = [];
      working = 0;
      const seen = new Map<string, Map<string, { ifname: string; handshaken: boolean }[]>>();
      for (const n of live) {
        const { tunnels } = (await controlRequest(controlSocketPath(id, n), 'tunnels', {}, 5000)) as { tunnels: { neighbor: string; ifname: string; state: string; latestHandshakeAgoMs: number | null }[] };
        const byPeer = new Map<string, { ifname: string; handshaken: boolean }[]>();
        for (const t of tunnels) {
          const peer = nameOf.get(t.neighbor) ?? t.neighbor;
          byPeer.set(peer, [...(byPeer.get(peer) ?? []), { ifname: t.ifname, handshaken: t.state === 'up' && t.latestHandshakeAgoMs !== null && t.latestHandshakeAgoMs < 180_000 }]);
        }
        seen.set(n, byPeer);
        if (byPeer.has(departed)) problems.push(`${n} still has a tunnel to departed ${departed}`);
      }
      for (let i = 0; i < live.length; i++) {
        for (let j = i + 1; j < live.length; j++) {
          const [a, b] = [live[i]!, live[j]!];
          const ab = seen.get(a)!.get(b) ?? [];
          const ba = seen.get(b)!.get(a) ?? [];
          if (ab.length === 1 && ba.length === 1 && ab[0]!.handshaken && ba[0]!.handshaken) working++;
          else problems.push(`${a}<->${b}: ${ab.length}/${ba.length} tunnels`);
        }
      }
      if (!problems.length) {
        reconverged = (Date.now() - settleStart) / 1000;
        break;
      }
      await sleep(500);
    }
    // Working means packets: ping every pair over its tunnel's link-local addresses.
    if (!problems.length) {
      const addr = new Map<string, string>();
      for (const n of live) addr.set(n, ((await controlRequest(controlSocketPath(id, n), 'status')) as { tunnelAddress: string }).tunnelAddress);
      await Promise.all(live.map(async (a) => {
        const { tunnels } = (await controlRequest(controlSocketPath(id, a), 'tunnels', { stats: false })) as { tunnels: { neighbor: string; ifname: string }[] };
        for (const t of tunnels) {
          const b = nameOf.get(t.neighbor)!;
          const p = await run(['ping', '-6', '-c', '1', '-W', '2', `${addr.get(b)}%${t.ifname}`], { netns: simRun.nodes[a]!, okExitCodes: [0, 1] });
          if (p.exitCode !== 0) problems.push(`${a}->${b}: no ping over ${t.ifname}`);
        }
      }));
    }

    // Leaks: interfaces, daemons and rules must match what the agents say they have.
    const leaks: string[] = [];
    for (const n of nodes) {
      const ns = simRun.nodes[n]!;
      const links = (await run(['ip', '-o', 'link', 'show'], { netns: ns })).stdout.split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '').filter((x) => /^sc[0-9a-f]{13}$/.test(x));
      const pids = (await run(['ip', 'netns', 'pids', ns])).stdout.split('\n').filter(Boolean);
      const daemons = pids.filter((p) => {
        try {
          return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'wireguard-go';
        } catch {
          return false;
        }
      }).length;
      const tables = (await run(['nft', 'list', 'tables'], { netns: ns })).stdout.split('\n').filter((l) => l.trim() === 'table inet scrooge').length;
      if (n === departed) {
        if (links.length || daemons || tables) leaks.push(`${n} (left): ${links.length} tunnels, ${daemons} wireguard-go, ${tables} nft tables remain`);
        continue;
      }
      const { tunnels } = (await controlRequest(controlSocketPath(id, n), 'tunnels', { stats: false })) as { tunnels: { ifname: string }[] };
      const mine = new Set(tunnels.map((t) => t.ifname));
      const extra = links.filter((l) => !mine.has(l));
      if (extra.length) leaks.push(`${n}: interfaces no agent tunnel explains: ${extra.join(' ')}`);
      if (daemons !== links.length) leaks.push(`${n}: ${daemons} wireguard-go daemons for ${links.length} tunnel interfaces`);
      if (tables !== 1) leaks.push(`${n}: ${tables} scrooge nft tables`);
      if (links.length !== live.length - 1) leaks.push(`${n}: ${links.length} tunnel interfaces, expected ${live.length - 1}`);
    }

    const rss = nodes.filter((n) => n !== departed && !restarted.has(n) && isAlive(simRun.agents.pids[n]!.pid)).map((n) => {
      const end = rssMB(simRun.agents.pids[n]!.pid);
      const warm = rssWarm.get(n)!;
      return { node: n, afterWarmupMB: Math.round(warm * 10) / 10, endMB: Math.round(end * 10) / 10, growth: Math.round((end / warm - 1) * 1000) / 1000 };
    });
    const maxRssGrowth = rss.length ? Math.max(...rss.map((x) => x.growth)) : 0;
    const result: SoakResult = {
      ok: !problems.length && !leaks.length && maxRssGrowth <= 0.2,
      seconds: Math.round((Date.now() - started) / 1000),
      seed, actions, departed, reconvergedAfterSeconds: reconverged,
      pairs: { expected, working, problems },
      leaks, rss, maxRssGrowth,
    };
    return result;
  } finally {
    await downRun(id);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '600' }, seed: { type: 'string' }, json: { type: 'boolean' } } });
  const result = await runSoak({ seconds: Number(values.seconds), ...(values.seed ? { seed: Number(values.seed) } : {}) });
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    console.log(`churn soak: ${result.seconds} s, seed ${result.seed}, actions ${JSON.stringify(result.actions)}, ${result.departed} left for good`);
    console.log(`live pairs with exactly one working tunnel: ${result.pairs.working}/${result.pairs.expected}, ${result.reconvergedAfterSeconds ?? 'never'} s after churn stopped`);
    for (const p of result.pairs.problems) console.log(`  problem: ${p}`);
    console.log(`leaks: ${result.leaks.length ? result.leaks.join('; ') : 'none'}`);
    console.log(`agent RSS after warm-up -> end (agents never restarted): ${result.rss.map((x) => `${x.node} ${x.afterWarmupMB}->${x.endMB} MB`).join(', ')}; max growth ${(result.maxRssGrowth * 100).toFixed(1)} % (limit 20 %)`);
    console.log(result.ok ? 'PASS' : 'FAIL');
  }
  process.exitCode = result.ok ? 0 : 1;
}
