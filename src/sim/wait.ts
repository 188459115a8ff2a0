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
  pairs: PairState[];
}

export interface WaitDeps {
  status: (run: SimRun, node: string) => Promise<AgentTunnelStatus>;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const POLL_MS = 500;

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
  for (;;) {
    const seen = new Map<string, AgentTunnelStatus | Error>();
    await Promise.all(
      nodes.map(async (node) => {
        try {
          seen.set(node, await deps.status(run, node));
        } catch (err) {
          if (err instanceof ScroogeError && err.code === 'ENOTIMPL') throw err;
          seen.set(node, err instanceof Error ? err : new Error(String(err)));
        }
      }),
    );
    const states = check(pairs, seen);
    const elapsed = now() - started;
    const ok = states.every((s) => s.ok);
    if (ok || elapsed >= timeoutMs) return { ok, seconds: Math.round(elapsed / 100) / 10, pairs: states };
    await sleep(Math.min(POLL_MS, Math.max(0, timeoutMs - elapsed)));
  }
}
