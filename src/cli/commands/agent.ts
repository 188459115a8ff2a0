/**
 * Commands that talk to a running agent over its control socket: status, neighbors, tunnels,
 * priority, cap, alias, share. Every read command takes --json (stable field names, see README).
 */
import { controlRequest } from '../../agent/control.js';
import { ALIAS } from '../../config/config.js';
import { UsageError } from '../../errors.js';
import { loadConfig } from '../../system/config-file.js';
import { type CliIO, type Command, formatTable, parseCommandLine, printJson } from '../command.js';

export const DEFAULT_SOCKET = '/var/lib/scrooge/control.sock';

const SOCKET_OPTIONS = { socket: { type: 'string' }, config: { type: 'string' } } as const;
const SOCKET_HELP = `  --socket PATH   the agent's control socket (default: $SCROOGE_SOCKET, else ${DEFAULT_SOCKET})
  --config FILE   take the control socket from the agent's config file`;

/** The agent's control socket: --socket, else --config's controlSocket, else $SCROOGE_SOCKET, else the default. */
export function socketPath(values: { socket?: string | undefined; config?: string | undefined }): string {
  if (values.socket) return values.socket;
  if (values.config) return loadConfig(values.config).controlSocket;
  return process.env['SCROOGE_SOCKET'] || DEFAULT_SOCKET;
}

function ago(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms < 1000) return `${ms}ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)}K`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)}M`;
  return `${(n / 1024 ** 3).toFixed(1)}G`;
}

interface TunnelRow {
  ifname: string; state: string; role: string; listenPort: number; peerEndpoint: string | null;
  latestHandshakeAgoMs: number | null; rxBytes: number; txBytes: number;
}
interface NeighborRow {
  key: string; alias: string | null; state: string; iface: string | null; linkLocal: string | null; control: string | null;
  lastSeq: string | null; lastHeardAgoMs: number; priority: number; cap: string | null; tunnel: TunnelRow | null;
}

function readCommand(name: string, summary: string, usageBody: string, render: (result: unknown, io: CliIO) => void, cmd = name): Command {
  return {
    name,
    summary,
    usage: `usage: scrooge ${name} [--json] [--socket PATH | --config FILE]\n\n${usageBody}\n  --json          machine-readable output\n${SOCKET_HELP}\n`,
    async run(args, io) {
      const { values } = parseCommandLine(args, { ...SOCKET_OPTIONS, json: { type: 'boolean' } }, { max: 0 });
      const result = await controlRequest(socketPath(values), cmd);
      if (values.json) printJson(io, result);
      else render(result, io);
      return 0;
    },
  };
}

export const status = readCommand('status', "show the agent's identity, interfaces and counters",
  'Shows the running agent: identity, interfaces, uptime, neighbor and tunnel counts, and\nmessages sent, received and dropped (by reason).',
  (r, io) => {
    const s = r as {
      publicKey: string; tunnelAddress: string; uptimeSeconds: number; pid: number; backend: string | null; neighbors: number; tunnels: number; share: number;
      interfaces: { name: string; up: boolean; linkLocal: string | null }[];
      counters: { sent: Record<string, number>; received: Record<string, number>; redundant: Record<string, number>; dropped: Record<string, number>; sendErrors: number };
      traffic: { backend: string; untunneledDrops: number | null; discoveryDrops?: number | null } | null;
      routing?: { running: boolean; pid: number | null; restarts: number; interfaces: number; routes: number } | null;
    };
    const lines = [
      `public key:  ${s.publicKey}`,
      `tunnel addr: ${s.tunnelAddress}`,
      `uptime:      ${s.uptimeSeconds}s (pid ${s.pid})`,
      `backend:     ${s.backend ?? 'tunnels disabled'}`,
      `interfaces:  ${s.interfaces.map((i) => `${i.name} ${i.up ? `up ${i.linkLocal}` : 'DOWN'}`).join(', ')}`,
      `neighbors:   ${s.neighbors}   tunnels: ${s.tunnels}   share: ${s.share}`,
      `sent:        ${Object.entries(s.counters.sent).map(([k, v]) => `${k.replace('scrooge_', '')} ${v}`).join(', ')}${s.counters.sendErrors ? ` (send errors ${s.counters.sendErrors})` : ''}`,
      `received:    ${Object.entries(s.counters.received).map(([k, v]) => `${k.replace('scrooge_', '')} ${v}`).join(', ')}`,
      `skipped:     ${Object.entries(s.counters.redundant).map(([k, v]) => `${k.replace('scrooge_', '')} ${v}`).join(', ')} (nothing new over a working tunnel: not verified)`,
      `dropped:     ${Object.entries(s.counters.dropped).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
      `traffic:     ${s.traffic ? `${s.traffic.backend} filter, untunneled packets dropped: ${s.traffic.untunneledDrops ?? '?'}, discovery datagrams dropped by the kernel: ${s.traffic.discoveryDrops ?? '?'}` : 'disabled'}`,
      `routing:     ${s.routing ? `babeld ${s.routing.running ? `running (pid ${s.routing.pid})` : 'NOT RUNNING'} on ${s.routing.interfaces} tunnels, ${s.routing.routes} routes${s.routing.restarts ? `, restarted ${s.routing.restarts} times` : ''}` : 'off'}`,
    ];
    io.out(lines.join('\n') + '\n');
  });

export const neighbors = readCommand('neighbors', 'list neighbors and their tunnels',
  'One row per neighbor: alias, key, where it was heard, its control address, last sequence\nnumber, when it was last heard, its state, its tunnel and its traffic settings.',
  (r, io) => {
    const rows = (r as { neighbors: NeighborRow[] }).neighbors;
    if (!rows.length) {
      io.out('no neighbors\n');
      return;
    }
    io.out(formatTable(
      ['ALIAS', 'KEY', 'IFACE', 'LINK-LOCAL', 'CONTROL', 'SEQ', 'HEARD', 'STATE', 'TUNNEL', 'T-STATE', 'PORT', 'PEER-ENDPOINT', 'HANDSHAKE', 'RX', 'TX', 'PRIO', 'CAP'],
      rows.map((n) => [
        n.alias ?? '-', n.key.slice(0, 12), n.iface ?? '-', n.linkLocal ?? '-', n.control ?? '-', n.lastSeq ?? '-', ago(n.lastHeardAgoMs), n.state,
        n.tunnel?.ifname ?? '-', n.tunnel?.state ?? '-', n.tunnel ? String(n.tunnel.listenPort) : '-', n.tunnel?.peerEndpoint ?? '-',
        ago(n.tunnel?.latestHandshakeAgoMs), n.tunnel ? bytes(n.tunnel.rxBytes) : '-', n.tunnel ? bytes(n.tunnel.txBytes) : '-', String(n.priority), n.cap ?? '-',
      ]),
    ));
  });

export const tunnels = readCommand('tunnels', 'list tunnels',
  'One row per tunnel: interface, neighbor, state, listen port, peer endpoint, latest\nhandshake and bytes received/sent.',
  (r, io) => {
    const rows = (r as { tunnels: (TunnelRow & { neighbor: string; alias: string | null })[] }).tunnels;
    if (!rows.length) {
      io.out('no tunnels\n');
      return;
    }
    io.out(formatTable(
      ['TUNNEL', 'NEIGHBOR', 'STATE', 'ROLE', 'PORT', 'PEER-ENDPOINT', 'HANDSHAKE', 'RX', 'TX'],
      rows.map((t) => [t.ifname, t.alias ?? t.neighbor.slice(0, 12), t.state, t.role, String(t.listenPort), t.peerEndpoint ?? '-', ago(t.latestHandshakeAgoMs), bytes(t.rxBytes), bytes(t.txBytes)]),
    ));
  });

function setCommand(name: string, summary: string, valueName: string, help: string, toArgs: (neighbor: string, value: string) => Record<string, unknown>): Command {
  return {
    name,
    summary,
    usage: `usage: scrooge ${name} NEIGHBOR ${valueName} [--json] [--socket PATH | --config FILE]\n\n${help}\nNEIGHBOR is an alias, a full public key or a unique prefix of one (4+ characters).\nThe change is kept in the agent's state directory and survives restarts.\n${SOCKET_HELP}\n`,
    async run(args, io) {
      const { values, positionals } = parseCommandLine(args, { ...SOCKET_OPTIONS, json: { type: 'boolean' } }, { min: 2, max: 2, names: `NEIGHBOR ${valueName}` });
      const result = (await controlRequest(socketPath(values), 'set', toArgs(positionals[0]!, positionals[1]!))) as Record<string, unknown>;
      if (values.json) printJson(io, result);
      else io.out(`${String(result['alias'] ?? String(result['neighbor']).slice(0, 12))}: priority ${String(result['priority'])}, cap ${String(result['cap'] ?? 'none')}\n`);
      return 0;
    },
  };
}

export const priority = setCommand('priority', "set a neighbor's priority (weight)", 'WEIGHT',
  'Sets the neighbor\'s weight (an integer 1-1000, default 1): neighbors share the sold bandwidth\nin proportion to their weights.',
  (neighbor, value) => {
    if (!/^[1-9][0-9]{0,3}$/.test(value) || Number(value) > 1000) throw new UsageError(`WEIGHT must be an integer from 1 to 1000, got "${value}"`);
    return { neighbor, priority: Number(value) };
  });

export const cap = setCommand('cap', "cap a neighbor's bandwidth", 'RATE|none',
  'Caps the neighbor\'s traffic in both directions at RATE (e.g. 2mbit, 500kbit), or removes\nthe cap with "none".',
  (neighbor, value) => ({ neighbor, cap: value === 'none' ? null : value }));

export const alias = setCommand('alias', 'name a neighbor', 'NAME',
  'Gives the neighbor a name to use in place of its key (a letter, then letters, digits, _ . -).',
  (neighbor, value) => {
    if (!ALIAS.test(value)) throw new UsageError(`NAME must start with a letter and use letters, digits, _ . - (max 32), got "${value}"`);
    return { neighbor, alias: value };
  });

export const share: Command = {
  name: 'share',
  summary: 'set the share of bandwidth sold to neighbors',
  usage: `usage: scrooge share FRACTION [--json] [--socket PATH | --config FILE]\n\nSets the fraction (0 < F <= 1) of each egress interface's capacity that forwarded neighbor\ntraffic may use. Kept in the state directory.\n${SOCKET_HELP}\n`,
  async run(args, io) {
    const { values, positionals } = parseCommandLine(args, { ...SOCKET_OPTIONS, json: { type: 'boolean' } }, { min: 1, max: 1, names: 'FRACTION' });
    const f = Number(positionals[0]);
    if (!/^(0?\.[0-9]+|1(\.0*)?|0)$/.test(positionals[0]!) || !(f > 0 && f <= 1)) throw new UsageError(`FRACTION must be a number in (0, 1], got "${positionals[0]}"`);
    const result = await controlRequest(socketPath(values), 'set', { share: f });
    if (values.json) printJson(io, result);
    else io.out(`share ${f}\n`);
    return 0;
  },
};

interface RouteRow {
  prefix: string; via: string; tunnel: string; neighbor: string | null; alias: string | null; metric: number; installed: boolean; reachable: boolean;
}

export const routes = readCommand('routes', 'list the routes babeld learned over the tunnels',
  'One row per route babeld knows: prefix, the neighbor (alias or key) and tunnel it goes\nthrough, its metric, and whether it is installed in the kernel. A retracted route (metric\n65535) is not reachable; babeld keeps it until it expires.',
  (r, io) => {
    const rows = (r as { routes: RouteRow[] }).routes;
    if (!rows.length) {
      io.out('no routes (is routing on? see `scrooge status`)\n');
      return;
    }
    io.out(formatTable(
      ['PREFIX', 'VIA', 'TUNNEL', 'METRIC', 'INSTALLED'],
      rows.map((x) => [x.prefix, x.alias ?? x.neighbor?.slice(0, 12) ?? x.via, x.tunnel, x.reachable ? String(x.metric) : 'unreachable', x.installed ? 'yes' : 'no']),
    ));
  });
