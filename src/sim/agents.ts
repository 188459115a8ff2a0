/**
 * Agents in a sim run (stub: the lead implements this).
 * `startAgents` is called by `sim up` unless --no-agents, after every namespace is built and
 * run.json says state 'up'; `agentTunnelStatus` is polled by `sim wait` for each agent node.
 */
import { ScroogeError } from '../errors.js';
import type { AgentTunnelStatus, SimRun } from './run.js';

export async function startAgents(run: SimRun): Promise<void> {
  void run;
  throw new ScroogeError('ENOTIMPL', 'agents are not available yet: use --no-agents');
}

export async function agentTunnelStatus(run: SimRun, node: string): Promise<AgentTunnelStatus> {
  void run;
  void node;
  throw new ScroogeError('ENOTIMPL', 'agents are not available yet: use --no-agents');
}
