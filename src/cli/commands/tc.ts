/**
 * `scrooge tc plan` (offline: what the agent would install, for review) and `scrooge tc show`
 * (the live trees of a running agent, with per-neighbor counters).
 */
import { readFileSync } from 'node:fs';
import { controlRequest } from '../../agent/control.js';
import { Settings } from '../../agent/settings.js';
import { neighborSettingsSchema } from '../../config/config.js';
import { formatRate } from '../../config/units.js';
import { ScroogeError, UsageError } from '../../errors.js';
import { tunnelInterfaceName } from '../../neighbors/names.js';
import { fromBase64Strict } from '../../protocol/bytes.js';
import { loadConfig } from '../../system/config-file.js';
import { readPublicKey } from '../../system/keystore.js';
import { trafficInput, trafficTopology } from '../../traffic/input.js';
import { CLASS_LABELS, planTraffic } from '../../traffic/plan.js';
import { iptablesRestore, nftRuleset } from '../../traffic/rules.js';
import { tcCommands } from '../../traffic/tc.js';
import { type CliIO, type Command, formatTable, parseCommandLine, printJson } from '../command.js';
import { socketPath } from './agent.js';

const USAGE = `usage: scrooge tc plan --config FILE [--neighbors FILE] [--backend nft|iptables] [--json]
       scrooge tc show [--json] [--socket PATH | --config FILE]

tc plan  prints, without applying anything, the packet filter and the tc batch the agent with
         this config would install. --neighbors FILE is a JSON array of neighbors with tunnels:
         [{"key": "<base64>", "priority": 3, "cap": "2mbit", "meshIface": "eth0"}, ...]
         (priority and cap default to the config's neighbor settings, meshIface to the first
         mesh interface).
tc show  prints the live HTB trees of a running agent with bytes, packets and drops per class,
         and the count of untunneled packets it dropped.
`;

interface NeighborLine {
  key?: unknown;
  priority?: unknown;
  cap?: unknown;
  meshIface?: unknown;
}

async function plan(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandLine(args, { config: { type: 'string' }, neighbors: { type: 'string' }, backend: { type: 'string' }, json: { type: 'boolean' } }, { max: 0 });
  if (!values.config) throw new UsageError('--config FILE is required');
  if (values.backend && !['nft', 'iptables'].includes(values.backend)) throw new UsageError('--backend must be nft or iptables');
  const config = loadConfig(values.config);
  const own = await readPublicKey(config.keyFile);
  let lines: NeighborLine[] = [];
  if (values.neighbors) {
    try {
      lines = JSON.parse(readFileSync(values.neighbors, 'utf8')) as NeighborLine[];
    } catch (err) {
      throw new ScroogeError('ENEIGHBORS', `--neighbors ${values.neighbors}: ${(err as Error).message}`);
    }
    if (!Array.isArray(lines)) throw new ScroogeError('ENEIGHBORS', `--neighbors ${values.neighbors}: expected a JSON array`);
  }
  // The lines' priorities and caps override the config's, as run-time settings would.
  const overrides: Record<string, { priority?: number | undefined; cap?: number | null | undefined }> = {};
  const tunnels = lines.map((n, i) => {
    const where = `--neighbors [${i}]`;
    const key = typeof n.key === 'string' ? fromBase64Strict(n.key, 32) : undefined;
    if (!key) throw new ScroogeError('ENEIGHBORS', `${where}: "key" must be a base64 ed25519 public key`);
    const r = neighborSettingsSchema.safeParse({ priority: n.priority, cap: n.cap ?? undefined });
    if (!r.success) throw new ScroogeError('ENEIGHBORS', `${where}: "${String(r.error.issues[0]!.path[0])}": ${r.error.issues[0]!.message}`);
    overrides[n.key as string] = r.data;
    const meshIface = typeof n.meshIface === 'string' ? n.meshIface : config.interfaces[0]!.name;
    return { ifname: tunnelInterfaceName(own, key), neighbor: n.key as string, meshIface };
  });
  const settings = new Settings({ share: config.share, neighbors: config.neighbors }, { neighbors: overrides });
  const input = { ...trafficInput(trafficTopology(config), settings, tunnels), leaf: 'fq_codel' as const };
  const p = planTraffic(input);
  const backend = values.backend ?? 'nft';
  const filter = backend === 'nft' ? nftRuleset(input, p) : iptablesRestore(input, p);
  const batch = tcCommands(new Map(), p.trees, () => true);
  if (values.json) printJson(io, { backend, filter, tc: batch, classes: Object.fromEntries(p.classOf) });
  else io.out(`# ${backend === 'nft' ? 'nft -f -' : 'iptables-restore --noflush (and ip6tables-restore)'}\n${filter}\n# tc -batch -  (fq_codel leaves are dropped where the kernel lacks them)\n${batch.join('\n')}\n`);
  return 0;
}

interface LiveTree {
  dev: string;
  kind: string;
  alias: string | null;
  neighbor: string | null;
  classes: { classid: string; parent: string | null; rate: number | null; ceil: number | null; bytes: number; packets: number; drops: number; neighbor: string | null; alias: string | null }[];
}

async function show(args: string[], io: CliIO): Promise<number> {
  const { values } = parseCommandLine(args, { socket: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' } }, { max: 0 });
  const socket = socketPath(values);
  const r = (await controlRequest(socket, 'traffic')) as { enabled: boolean; backend?: string; share?: number; untunneledDrops?: number; discoveryDrops?: number; trees?: LiveTree[] };
  if (values.json) {
    printJson(io, r);
    return 0;
  }
  if (!r.enabled) {
    io.out('traffic control is disabled in this agent\'s config\n');
    return 0;
  }
  io.out(`filter: ${r.backend}   share: ${r.share}   untunneled packets dropped: ${r.untunneledDrops}   discovery datagrams dropped by the kernel: ${r.discoveryDrops}\n`);
  for (const t of r.trees ?? []) {
    io.out(`\n${t.dev} (${t.kind === 'uplink' ? 'uplink' : `tunnel to ${t.alias ?? t.neighbor?.slice(0, 12)}`})\n`);
    io.out(formatTable(['CLASS', 'WHAT', 'RATE', 'CEIL', 'BYTES', 'PACKETS', 'DROPS'], t.classes.map((c) => [
      c.classid,
      CLASS_LABELS[c.classid] ?? (c.neighbor ? `neighbor ${c.alias ?? c.neighbor.slice(0, 12)}` : '-'),
      c.rate === null ? '-' : formatRate(c.rate),
      c.ceil === null ? '-' : formatRate(c.ceil),
      String(c.bytes), String(c.packets), String(c.drops),
    ])));
  }
  return 0;
}

export const tc: Command = {
  name: 'tc',
  summary: 'show or plan traffic control',
  usage: USAGE,
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub === 'plan') return plan(rest, io);
    if (sub === 'show') return show(rest, io);
    throw new UsageError(sub ? `unknown subcommand '${sub}'` : 'missing subcommand (plan or show)');
  },
};
