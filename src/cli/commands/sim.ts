/** `scrooge sim`: builds CORE scenarios in network namespaces (src/sim/). */
import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ScroogeError, UsageError } from '../../errors.js';
import { agentTunnelStatus, startAgent, stopAgent } from '../../sim/agents.js';
import { downRun, listNamespaces, requireRoot, upRun } from '../../sim/build.js';
import { execInNode } from '../../sim/exec.js';
import { nodeConfig, nodeSetup, withHooks } from '../../sim/nodeconfig.js';
import { describeUnapplied } from '../../sim/plan.js';
import { controlSocketPath, isAlive, loadRun, requireNode, runIds } from '../../sim/run.js';
import { deviceByName, parseScenario, runsAgent, type Topology } from '../../sim/scenario.js';
import { runStatus } from '../../sim/status.js';
import { waitForTunnels } from '../../sim/wait.js';
import { createRunner } from '../../system/runner.js';
import { type CliContext, type CliIO, type Command, formatTable, parseCommandLine, printJson, splitAtDoubleDash } from '../command.js';

const USAGE = `usage: scrooge sim SUBCOMMAND ...

Builds a CORE scenario (core-scenarios/*.xml) out of network namespaces: one namespace per
device named ID-<name>, one per network holding a bridge, veth pairs for links. Needs root.
Devices of type "host" run no agent; every other device runs \`scrooge run\`.

  sim up SCENARIO.xml --id ID [--no-agents] [--config-overlay FILE]
      build the scenario as run ID (1-10 lowercase letters/digits) and start the agents;
      FILE is a JSON object merged into every agent's config
  sim down ID                      remove every namespace, process, socket and file of run ID
  sim list [--json]                show the runs
  sim status ID [--json]           nodes, interfaces with their roles, links, agent pids
  sim exec ID NODE -- CMD...       run CMD inside NODE (exit code passed through)
  sim ctl ID NODE -- SUBCOMMAND... run \`scrooge SUBCOMMAND --socket <NODE's control socket>\`
  sim wait ID [--timeout S] [--json]
      wait until every pair of agent nodes sharing a segment has a tunnel with a completed
      handshake (default timeout 60 s); exits 1 on timeout, naming what is missing
  sim agent ID NODE start|stop|kill
      start NODE's agent again, stop it cleanly (SIGTERM: its tunnels go), or kill it (SIGKILL:
      a crash; its tunnels stay for the next start to adopt)

What a node gets, without building anything (the CORE hooks call these; no root needed):
  sim node-config SCENARIO.xml NODE --dir DIR [--overlay FILE]
      print the agent config \`sim up\` gives NODE (key, state and control socket in DIR):
      routing with babeld on, mesh IPv4 10.99.<id/256>.<id%256>; FILE as --config-overlay
  sim node-setup SCENARIO.xml NODE [--overlay FILE]
      print NODE's set-up as \`ip -batch\` lines (a gateway's or a host's default route)
  sim hooks [--check] SCENARIO.xml...
      write each scenario's <session_hooks> from the same generator (scripts/core-hooks.mjs
      runs it on core-scenarios/); --check changes nothing and exits 1 if one differs
`;

export const sim: Command = {
  name: 'sim',
  summary: 'build CORE scenarios in network namespaces',
  usage: USAGE,
  async run(args, io, cli) {
    const [sub, ...rest] = args;
    switch (sub) {
      case 'up':
        return up(rest, io);
      case 'down':
        return down(rest, io);
      case 'list':
        return list(rest, io);
      case 'status':
        return status(rest, io);
      case 'exec':
        return exec(rest);
      case 'ctl':
        return ctl(rest, io, cli);
      case 'wait':
        return wait(rest, io);
      case 'agent':
        return agent(rest, io);
      case 'node-config':
        return nodeConfigCmd(rest, io);
      case 'node-setup':
        return nodeSetupCmd(rest, io);
      case 'hooks':
        return hooks(rest, io);
      case undefined:
        throw new UsageError('missing subcommand');
      default:
        throw new UsageError(`unknown subcommand '${sub}'`);
    }
  },
};

async function scenarioFile(file: string): Promise<{ xml: string; topology: Topology }> {
  let xml: string;
  try {
    xml = await readFile(file, 'utf8');
  } catch (err) {
    throw new ScroogeError('ESCENARIO', `scenario file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message}`);
  }
  return { xml, topology: parseScenario(xml) };
}

async function nodeConfigCmd(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { dir: { type: 'string' }, overlay: { type: 'string' } }, { min: 2, max: 2, names: 'SCENARIO.xml NODE' });
  if (!values.dir) throw new UsageError('--dir DIR is required (where the key, state and control socket go)');
  const { topology } = await scenarioFile(positionals[0]!);
  const overlay = values.overlay ? await readOverlay(values.overlay, '--overlay') : null;
  printJson(io, nodeConfig(topology, positionals[1]!, path.resolve(values.dir), overlay));
  return 0;
}

async function nodeSetupCmd(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { overlay: { type: 'string' } }, { min: 2, max: 2, names: 'SCENARIO.xml NODE' });
  const { topology } = await scenarioFile(positionals[0]!);
  const overlay = values.overlay ? await readOverlay(values.overlay, '--overlay') : null;
  const device = deviceByName(topology, positionals[1]!);
  const config = device && runsAgent(device) ? nodeConfig(topology, device, '', overlay) : null;
  const lines = nodeSetup(topology, positionals[1]!, config);
  if (lines.length) io.out(lines.join('\n') + '\n');
  return 0;
}

async function hooks(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { check: { type: 'boolean' } }, { min: 1, names: 'SCENARIO.xml...' });
  const differ: string[] = [];
  for (const file of positionals) {
    const { xml, topology } = await scenarioFile(file);
    const next = withHooks(xml, topology);
    if (next === xml) continue;
    differ.push(file);
    if (!values.check) await writeFile(file, next);
  }
  if (values.check) {
    if (differ.length) io.err(`scrooge: ${differ.length} of ${positionals.length} scenarios have a hook that differs from the generator's: ${differ.join(' ')}\n`);
    else io.out(`${positionals.length} scenario hooks are what the generator writes\n`);
    return differ.length ? 1 : 0;
  }
  io.out(`${differ.length ? `rewrote the hook of ${differ.join(' ')}` : 'no hook changed'} (${positionals.length} scenarios)\n`);
  return 0;
}

async function readOverlay(file: string, flag = '--config-overlay'): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ScroogeError('EOVERLAY', `${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ScroogeError('EOVERLAY', `${flag} ${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ScroogeError('EOVERLAY', `${flag} ${file}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

async function up(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { id: { type: 'string' }, 'no-agents': { type: 'boolean' }, 'config-overlay': { type: 'string' } },
    { min: 1, max: 1, names: 'SCENARIO.xml' },
  );
  if (!values.id) throw new UsageError('--id ID is required');
  const overlay = values['config-overlay'] ? await readOverlay(values['config-overlay']) : null;
  const agents = !values['no-agents'];
  const { run, plan, ms } = await upRun({ scenarioPath: positionals[0]!, id: values.id, agents, configOverlay: overlay });
  const t = run.topology;
  const bridges = t.networks.length;
  io.out(
    `run ${run.id}: built ${path.basename(run.scenarioPath)} in ${(ms / 1000).toFixed(2)} s: ` +
      `${t.devices.length} nodes, ${bridges} bridge${bridges === 1 ? '' : 's'}, ${plan.veths.length} veth pairs\n`,
  );
  io.out(`  namespaces: ${run.namespaces.join(' ')}\n`);
  const shaped = plan.tcBatches.reduce((n, b) => n + b.lines.filter((l) => l.startsWith('class ')).length, 0);
  if (shaped) io.out(`  bandwidth shaped (htb) on ${shaped} interface${shaped === 1 ? '' : 's'}\n`);
  if (plan.nftRulesets.length) io.out(`  nftables (loss, WLAN range) in ${plan.nftRulesets.map((r) => r.namespace).join(' ')}\n`);
  for (const note of plan.notes) io.out(`  note: ${note}\n`);
  if (plan.unapplied.length) {
    io.out(`  not applied (this kernel has no netem):\n`);
    for (const u of plan.unapplied) io.out(`    ${describeUnapplied(u)}\n`);
  }
  io.out(agents ? `  agents: started\n` : `  agents: not started (--no-agents)\n`);
  return 0;
}

async function down(args: string[], io: CliIO): Promise<number> {
  const { positionals } = parseCommandLine(args, {}, { min: 1, max: 1, names: 'ID' });
  const report = await downRun(positionals[0]!);
  if (report.namespaces.length === 0 && !report.removedDir) {
    io.out(`run ${report.id}: nothing to remove\n`);
    return 0;
  }
  const procs = report.terminated + report.killed;
  io.out(
    `run ${report.id}: removed ${report.namespaces.length} namespaces` +
      (procs ? `, stopped ${procs} processes${report.killed ? ` (${report.killed} needed SIGKILL)` : ''}` : '') +
      (report.staleSockets.length ? `, ${report.staleSockets.length} stale WireGuard sockets` : '') +
      '\n',
  );
  return 0;
}

async function list(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandLine(args, { json: { type: 'boolean' } }, { max: 0 });
  const live = await listNamespaces(createRunner());
  const rows = [];
  for (const id of await runIds()) {
    const run = await loadRun(id).catch(() => undefined);
    const mine = live.filter((n) => n.startsWith(`${id}-`));
    if (!run) {
      rows.push({ id, state: 'unreadable', scenario: '', createdAt: '', nodes: 0, namespaces: `${mine.length}/?`, agents: '' });
      continue;
    }
    const pids = Object.values(run.agents.pids);
    rows.push({
      id,
      state: run.state,
      scenario: run.scenarioPath,
      createdAt: run.createdAt,
      nodes: run.topology.devices.length,
      namespaces: `${mine.length}/${run.namespaces.length}`,
      agents: run.agents.enabled ? `${pids.filter((p) => isAlive(p.pid)).length}/${pids.length} alive` : 'off',
    });
  }
  if (values.json) {
    printJson(io, rows);
    return 0;
  }
  if (rows.length === 0) {
    io.out('no sim runs\n');
    return 0;
  }
  io.out(
    formatTable(
      ['ID', 'STATE', 'NODES', 'NAMESPACES', 'AGENTS', 'CREATED', 'SCENARIO'],
      rows.map((r) => [r.id, r.state, String(r.nodes), r.namespaces, r.agents, r.createdAt, r.scenario]),
    ),
  );
  return 0;
}

async function status(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandLine(args, { json: { type: 'boolean' } }, { min: 1, max: 1, names: 'ID' });
  const run = await loadRun(positionals[0]!);
  const s = runStatus(run, { namespaces: await listNamespaces(createRunner()), alive: isAlive });
  if (values.json) {
    printJson(io, s);
    return 0;
  }
  io.out(`run ${s.id} (${s.state}): ${s.scenarioPath}, created ${s.createdAt}, agents ${s.agentsEnabled ? 'on' : 'off'}\n\n`);
  const yes = (b: boolean | null) => (b === null ? '-' : b ? 'yes' : 'NO');
  io.out(
    formatTable(
      ['NODE', 'TYPE', 'NAMESPACE', 'EXISTS', 'AGENT', 'PID', 'ALIVE'],
      s.nodes.map((n) => [n.name, n.type, n.namespace, yes(n.namespaceExists), n.agent ? 'yes' : 'no', n.pid ? String(n.pid) : '-', yes(n.alive)]),
    ),
  );
  io.out('\n');
  io.out(
    formatTable(
      ['NODE', 'IFACE', 'ROLE', 'SEGMENT', 'ADDRESSES'],
      s.nodes.flatMap((n) => n.interfaces.map((i) => [n.name, i.name, i.role, i.segment, i.addresses.join(' ')])),
    ),
  );
  if (s.networks.length) {
    io.out('\n');
    io.out(
      formatTable(
        ['NETWORK', 'TYPE', 'NAMESPACE', 'EXISTS', 'MEMBERS', 'CONFIG'],
        s.networks.map((n) => [n.name, n.type, n.namespace, yes(n.namespaceExists), n.members.join(' '), n.config]),
      ),
    );
  }
  io.out('\n');
  io.out(formatTable(['LINK', 'OPTIONS'], s.links.map((l) => [`${l.from} - ${l.to}`, l.options || '-'])));
  for (const note of s.notes) io.out(`note: ${note}\n`);
  if (s.unapplied.length) io.out(`not applied (no netem): ${s.unapplied.join('; ')}\n`);
  return 0;
}

function splitCommand(args: string[], what: string): { id: string; node: string; command: string[] } {
  const [before, after] = splitAtDoubleDash(args);
  const { positionals } = parseCommandLine(before, {}, { min: 2, max: 2, names: 'ID NODE' });
  if (!after || after.length === 0) throw new UsageError(`missing ${what} after --`);
  return { id: positionals[0]!, node: positionals[1]!, command: after };
}

async function exec(args: string[]): Promise<number> {
  const { id, node, command } = splitCommand(args, 'CMD');
  requireRoot('exec');
  const run = await loadRun(id);
  return execInNode(run, node, command, await listNamespaces(createRunner()));
}

async function ctl(args: string[], io: CliIO, cli: CliContext): Promise<number> {
  const { id, node, command } = splitCommand(args, 'SUBCOMMAND');
  const run = await loadRun(id);
  requireNode(run, node);
  const [name, ...rest] = command;
  return cli.dispatch([name!, ...rest, '--socket', controlSocketPath(run.id, node)], io);
}

async function wait(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { timeout: { type: 'string' }, json: { type: 'boolean' } },
    { min: 1, max: 1, names: 'ID' },
  );
  const timeout = values.timeout === undefined ? 60 : Number(values.timeout);
  if (!Number.isFinite(timeout) || timeout < 0) throw new UsageError(`--timeout expects seconds, got '${values.timeout}'`);
  const run = await loadRun(positionals[0]!);
  const result = await waitForTunnels(run, timeout * 1000, { status: agentTunnelStatus });
  if (values.json) {
    printJson(io, result);
  } else if (result.ok) {
    const since = result.sinceAgentsStarted === null ? '' : ` (${result.sinceAgentsStarted} s since the agents started)`;
    io.out(`run ${run.id}: ${result.pairs.length} agent pairs have tunnels with a completed handshake after ${result.seconds} s${since}\n`);
  } else {
    const missing = result.pairs.filter((p) => !p.ok);
    io.err(`scrooge: run ${run.id}: timed out after ${result.seconds} s; ${missing.length} of ${result.pairs.length} agent pairs are missing:\n`);
    for (const p of missing) io.err(`  ${p.a} <-> ${p.b}: ${p.missing}\n`);
  }
  return result.ok ? 0 : 1;
}

async function agent(args: string[], io: CliIO): Promise<number> {
  const { positionals } = parseCommandLine(args, {}, { min: 3, max: 3, names: 'ID NODE start|stop|kill' });
  const [id, node, action] = positionals as [string, string, string];
  if (!['start', 'stop', 'kill'].includes(action)) throw new UsageError(`expected start, stop or kill, got '${action}'`);
  requireRoot('agent');
  const run = await loadRun(id);
  if (action === 'start') {
    const pid = await startAgent(run, node);
    io.out(`run ${id}: agent of ${node} started (pid ${pid})\n`);
  } else {
    const stopped = await stopAgent(run, node, action === 'stop' ? 'SIGTERM' : 'SIGKILL');
    io.out(`run ${id}: agent of ${node} ${stopped ? (action === 'stop' ? 'stopped' : 'killed') : 'was not running'}\n`);
  }
  return 0;
}
