/**
 * `sim wait`: polls every agent until each pair of agent nodes that hear each other on some
 * segment (scenario.ts `agentPairs`) has a tunnel with a completed handshake, seen from both
 * sides. The per-agent status comes from agents.ts; the clock and sleep are injected.
 */
import { ScroogeError } from '../errors.js';
import type { AgentTunnelStatus, SimRun } from './run.js';
import { agentPairs } from './scenario.js';

export interface PairState {
  a: string;
  b: string;
  ok: boolean;
  /** Why not, when not ok. */
  missing?: string;
}

export interface WaitResult {
  ok: boolean;
  seconds: number;
  /** Seconds from the agents' start (run.json) to success or timeout, when known. */
  sinceAgentsStarted: number | null;
  pairs: PairState[];
}

export interface WaitDeps {
  status: (run: SimRun, node: string) => Promise<AgentTunnelStatus>;
  now?: () => number;
  /** Unix ms, to compare with the agents' start time. */
  wallClock?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Poll often: `sim wait` is how convergence is measured. Each poll is one control request per agent. */
const POLL_MS = 100;

function check(pairs: Array<[string, string]>, seen: Map<string, AgentTunnelStatus | Error>): PairState[] {
  return pairs.map(([a, b]) => {
    const sa = seen.get(a);
    const sb = seen.get(b);
    const why: string[] = [];
    for (const [me, other, s] of [
      [a, b, sa],
      [b, a, sb],
    ] as const) {
      if (s instanceof Error) why.push(`${me}: ${s.message}`);
      else if (!s?.handshakeWith.includes(other)) why.push(`${me} has no completed handshake with ${other}`);
    }
    return why.length ? { a, b, ok: false, missing: why.join('; ') } : { a, b, ok: true };
  });
}

export async function waitForTunnels(run: SimRun, timeoutMs: number, deps: WaitDeps): Promise<WaitResult> {
  if (!run.agents.enabled) {
    throw new ScroogeError('ENOAGENTS', `sim run "${run.id}" was started with --no-agents: there are no tunnels to wait for`);
  }
  const now = deps.now ?? (() => performance.now());
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const pairs = agentPairs(run.topology);
  const nodes = [...new Set(pairs.flat())].sort();
  const started = now();
  const seen = new Map<string, AgentTunnelStatus | Error>();
  const peersOf = new Map(nodes.map((n) => [n, pairs.filter((p) => p.includes(n)).map(([a, b]) => (a === n ? b : a))]));
  const complete = (node: string) => {
    const s = seen.get(node);
    return !!s && !(s instanceof Error) && peersOf.get(node)!.every((p) => s.handshakeWith.includes(p));
  };
  for (;;) {
    // A node that has all its tunnels is not asked again: at 20 nodes, polling every agent
    // every 100 ms would itself slow the mesh it measures.
    await Promise.all(
      nodes.filter((n) => !complete(n)).map(async (node) => {
        try {
          seen.set(node, await deps.status(run, node));
        } catch (err) {
          seen.set(node, err instanceof Error ? err : new Error(String(err)));
        }
      }),
    );
    const states = check(pairs, seen);
    const elapsed = now() - started;
    const ok = states.every((s) => s.ok);
    if (ok || elapsed >= timeoutMs) {
      const since = run.agents.startedAtMs === undefined ? null : Math.round((deps.wallClock?.() ?? Date.now()) - run.agents.startedAtMs) / 1000;
      return { ok, seconds: Math.round(elapsed / 100) / 10, sinceAgentsStarted: since, pairs: states };
    }
    await sleep(Math.min(POLL_MS, Math.max(0, timeoutMs - elapsed)));
  }
}
