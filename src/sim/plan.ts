/**
 * Topology + run id -> the kernel objects that build it (pure: the effects are in build.ts).
 *
 * Naming. Every node gets a network namespace `ID-<name>`: devices, and networks too, each
 * network holding one bridge `br0`, so the host namespace is never touched. Run ids match
 * `^[a-z0-9]{1,10}$`: no dash, so `ID-` prefixes are unambiguous when `down` looks for the
 * namespaces of a crashed run. Device interfaces keep the scenario's names; a bridge port is
 * named `p<device id>i<iface id>`, unique within its network's namespace.
 *
 * Building. One host `ip -batch` creates the namespaces, sets sysctls in each with `netns exec`
 * (before any interface exists, so `default.accept_dad=0` applies to the interfaces created
 * later) and creates every veth pair directly in its two namespaces (`link add A netns NS1 type
 * veth peer name B netns NS2`), so nothing is ever created in the host namespace, each end with
 * an explicit ifindex (see VETH_INDEX_BASE). Then one `ip -n NS -batch` per namespace (MACs,
 * addresses with `nodad`, bridge, links up), one `tc -n NS -batch` where there is shaping, one
 * `nft -f` where there is loss or WLAN filtering. build.ts then polls until every interface is
 * operationally up, and adds the routes of the nodes' set-up (nodeconfig.ts `nodeSetup`).
 *
 * Link options. CORE applies link options with netem on the egress of both ends (see
 * scenario.ts). This kernel has no netem, so:
 * - bandwidth: htb (one class, rate = ceil) on the egress of each end: for a device-network link
 *   the device interface and the bridge port; `buffer` becomes the class's pfifo limit;
 * - loss: nftables netdev ingress `numgen random mod 1000000 < k drop` on the receiving end, so
 *   each direction loses about loss%;
 * - delay, jitter, dup (and buffer without bandwidth) cannot be applied: listed in `unapplied`.
 * A WLAN's links take basic_range's bandwidth/delay/jitter/error instead (CORE writes no options
 * for WLAN links and `BasicRangeModel.setlinkparams` applies the model's to every member).
 *
 * WLAN range. A bridge-family nftables table in the network's namespace accepts forwarded frames
 * only between ports whose devices hear each other (scenario.ts `hearingPairs`) and drops the
 * rest, as CORE's WLAN does with its per-pair link/unlink filter.
 */
import { ScroogeError } from '../errors.js';
import { htbQuantum } from '../traffic/plan.js';
import { nodeConfig, nodeSetup } from './nodeconfig.js';
import {
  type Device,
  type Iface,
  type Link,
  type LinkOptions,
  type Network,
  type Topology,
  deviceById,
  deviceByName,
  hearingPairs,
  interfaceRole,
  networkById,
  runsAgent,
  segments,
} from './scenario.js';

/** Run ids: short and dash-free, so `ID-<name>` prefixes cannot be confused between runs. */
export const RUN_ID = /^[a-z0-9]{1,10}$/;
/** IFNAMSIZ is 16 bytes including the terminating NUL. */
export const IFNAME_MAX = 15;
/**
 * Node names become namespace names, run-directory names and part of the control socket path,
 * which must fit sockaddr_un's 108 bytes; 32 leaves room for the run directory.
 */
export const NODE_NAME_MAX = 32;
/** Characters safe in namespace, interface and file names, in `ip -batch` lines and nft strings. */
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
/** The bridge inside every network's namespace. */
export const BRIDGE = 'br0';
/** nftables table owned by the harness (the agent has tables of its own). */
export const NFT_TABLE = 'scrooge_sim';
/**
 * Veth ends get explicit ifindexes, distinct from each other and unique in the run. Left to
 * itself each namespace numbers from 2, so a veth's ifindex often equals its peer's, and the
 * kernel's linkwatch then treats its carrier change as non-urgent and reports it up to a second
 * later (linkwatch_urgent_event); until then the interface is not operationally up, a bridge
 * port stays "disabled" and IPv6 has no link-local address.
 */
export const VETH_INDEX_BASE = 10;
/** Loss is drawn from numgen random mod this: percent with four decimals. */
const LOSS_SCALE = 1_000_000;
/** Forwarding is on in these device types (CORE's router-like models, plus our agent nodes). */
export const FORWARDING_TYPES: readonly string[] = ['router', 'mdr', 'prouter'];

export interface NamespacePlan {
  name: string;
  /** The device or network it holds. */
  node: string;
  kind: 'device' | 'network';
  /** Set before any interface is created in it. */
  sysctls: Array<[string, string]>;
}

export interface VethEnd {
  namespace: string;
  ifname: string;
  /** Device or network name. */
  node: string;
}

export interface VethPlan {
  a: VethEnd;
  b: VethEnd;
}

export interface NamespaceBatch {
  namespace: string;
  lines: string[];
}

export interface NamespaceRuleset {
  namespace: string;
  ruleset: string;
}

export type UnappliedOption = 'delay' | 'jitter' | 'dup' | 'buffer';

/** A link option this harness cannot apply (no netem): reported once by `sim up`. */
export interface Unapplied {
  option: UnappliedOption;
  value: number;
  /** `n1:eth0 <-> n2:eth0`, `n1:eth0 -> n2:eth0` (one direction) or `wlan1 (basic_range)`. */
  where: string;
}

export interface SimPlan {
  runId: string;
  namespaces: NamespacePlan[];
  veths: VethPlan[];
  /** `ip -batch -` on the host: namespaces, sysctls (via `netns exec`), veth pairs. */
  hostBatch: string[];
  /** `ip -n NS -batch -` per namespace. */
  ipBatches: NamespaceBatch[];
  /** `tc -n NS -batch -` per namespace that shapes something. */
  tcBatches: NamespaceBatch[];
  /** `nft -f -` inside each namespace that drops something (loss, WLAN range). */
  nftRulesets: NamespaceRuleset[];
  /**
   * `ip -n NS -batch -` per device with a set-up (nodeconfig.ts `nodeSetup`: a gateway's
   * default route out of its uplink, a host's default route to its router), applied once every
   * interface is up.
   */
  routeBatches: NamespaceBatch[];
  unapplied: Unapplied[];
  /** Things worth telling the operator that are not errors. */
  notes: string[];
}

function fail(message: string): never {
  throw new ScroogeError('ESCENARIO', message);
}

export function validateRunId(id: string): void {
  if (!RUN_ID.test(id)) {
    throw new ScroogeError('ERUNID', `invalid run id "${id}": use 1 to 10 lowercase letters or digits (no dash)`);
  }
}

export function namespaceName(runId: string, node: string): string {
  return `${runId}-${node}`;
}

/** The bridge-side name of a device interface attached to a network. */
export function portName(device: Device, iface: Iface): string {
  return `p${device.id}i${iface.id}`;
}

function checkNodeName(kind: string, name: string): void {
  if (name.length > NODE_NAME_MAX || !SAFE_NAME.test(name)) {
    fail(
      `${kind} name "${name}" cannot be used: node names become namespace and file names, so use at most ` +
        `${NODE_NAME_MAX} letters, digits, '_', '.', '-' (not starting with '.' or '-')`,
    );
  }
}

function checkIfname(owner: string, name: string): void {
  if (name.length > IFNAME_MAX || !SAFE_NAME.test(name)) {
    fail(
      `interface name "${name}" of ${owner} cannot be used: at most ${IFNAME_MAX} letters, digits, '_', '.', '-' ` +
        `(the kernel's IFNAMSIZ)`,
    );
  }
}

/** One end of a link: where its interface lives and what it is called there. */
interface End {
  namespace: string;
  ifname: string;
  node: string;
  /** `n1:eth0` or `sw (port p1i0)` */
  label: string;
}

function linkEnds(runId: string, topology: Topology, link: Link): { end1: End; end2: End; network: Network | null } {
  const d1 = deviceById(topology, link.node1);
  const d2 = deviceById(topology, link.node2);
  const network = d1 && d2 ? null : (networkById(topology, d1 ? link.node2 : link.node1) ?? null);
  const deviceEnd = (d: Device, iface: Iface): End => ({
    namespace: namespaceName(runId, d.name),
    ifname: iface.name,
    node: d.name,
    label: `${d.name}:${iface.name}`,
  });
  const portEnd = (net: Network, d: Device, iface: Iface): End => ({
    namespace: namespaceName(runId, net.name),
    ifname: portName(d, iface),
    node: net.name,
    label: net.name,
  });
  if (d1 && d2) return { end1: deviceEnd(d1, link.iface1!), end2: deviceEnd(d2, link.iface2!), network: null };
  const device = (d1 ?? d2)!;
  const iface = (d1 ? link.iface1 : link.iface2)!;
  const dev = deviceEnd(device, iface);
  const port = portEnd(network!, device, iface);
  return d1 ? { end1: dev, end2: port, network } : { end1: port, end2: dev, network };
}

/** The options in force on a link's two directions (a WLAN's come from basic_range). */
function effectiveEgress(link: Link, network: Network | null): { from1: LinkOptions; from2: LinkOptions } {
  if (network?.type === 'WIRELESS_LAN') {
    const br = network.basicRange;
    const o: LinkOptions = br
      ? { bandwidth: br.bandwidth, delay: br.delay, jitter: br.jitter, loss: br.error, dup: 0, buffer: 0 }
      : { bandwidth: 0, delay: 0, jitter: 0, loss: 0, dup: 0, buffer: 0 };
    return { from1: o, from2: { ...o } };
  }
  return { from1: link.egress.node1, from2: link.egress.node2 };
}

function unappliedOf(o: LinkOptions): Array<[UnappliedOption, number]> {
  const out: Array<[UnappliedOption, number]> = [];
  if (o.delay > 0) out.push(['delay', o.delay]);
  if (o.jitter > 0) out.push(['jitter', o.jitter]);
  if (o.dup > 0) out.push(['dup', o.dup]);
  if (o.buffer > 0 && !(o.bandwidth > 0)) out.push(['buffer', o.buffer]);
  return out;
}

/** tc lines that shape the egress of `ifname` to `o.bandwidth` (nothing if unlimited). */
export function shapingLines(ifname: string, o: LinkOptions): string[] {
  if (!(o.bandwidth > 0)) return [];
  const rate = Math.round(o.bandwidth);
  const lines = [
    `qdisc replace dev ${ifname} root handle 1: htb default 1`,
    `class replace dev ${ifname} parent 1: classid 1:1 htb rate ${rate}bit ceil ${rate}bit quantum ${htbQuantum(rate)}`,
  ];
  if (o.buffer > 0) lines.push(`qdisc replace dev ${ifname} parent 1:1 handle 10: pfifo limit ${Math.round(o.buffer)}`);
  return lines;
}

/** The `numgen` threshold that drops `loss` percent of packets. */
export function lossThreshold(loss: number): number {
  return Math.round((Math.min(100, Math.max(0, loss)) / 100) * LOSS_SCALE);
}

function lossRuleset(drops: Array<{ ifname: string; loss: number }>): string {
  const chains = drops.map(
    (d, i) =>
      `  chain loss${i} {\n` +
      `    type filter hook ingress device "${d.ifname}" priority 0; policy accept;\n` +
      `    numgen random mod ${LOSS_SCALE} < ${lossThreshold(d.loss)} drop\n` +
      `  }\n`,
  );
  return `table netdev ${NFT_TABLE} {\n${chains.join('')}}\n`;
}

function wlanRuleset(allowed: Array<[string, string]>): string {
  const elements = allowed.map(([a, b]) => `"${a}" . "${b}"`).join(', ');
  return (
    `table bridge ${NFT_TABLE} {\n` +
    `  chain forward {\n` +
    `    type filter hook forward priority 0; policy drop;\n` +
    (allowed.length ? `    iifname . oifname { ${elements} } accept\n` : '') +
    `  }\n` +
    `}\n`
  );
}

const fmt = (n: number) => String(Math.round(n * 10000) / 10000);

/**
 * Builds the plan; throws ScroogeError for a bad run id or names that do not fit the kernel.
 * `overlay` (the run's --config-overlay) decides, with the scenario, which nodes are gateways.
 */
export function planRun(topology: Topology, runId: string, overlay: Record<string, unknown> | null = null): SimPlan {
  validateRunId(runId);
  const namespaces: NamespacePlan[] = [];
  for (const d of topology.devices) {
    checkNodeName('device', d.name);
    const sysctls: Array<[string, string]> = [
      // Addresses are usable at once: no duplicate address detection on an emulated link.
      ['net.ipv6.conf.all.accept_dad', '0'],
      ['net.ipv6.conf.default.accept_dad', '0'],
    ];
    if (FORWARDING_TYPES.includes(d.type)) {
      sysctls.push(['net.ipv4.ip_forward', '1'], ['net.ipv6.conf.all.forwarding', '1']);
    }
    namespaces.push({ name: namespaceName(runId, d.name), node: d.name, kind: 'device', sysctls });
  }
  for (const n of topology.networks) {
    checkNodeName('network', n.name);
    // A bridge is L2 only: no IPv6 on its ports, so it sends no RS/MLD of its own into the segment.
    const sysctls: Array<[string, string]> = [
      ['net.ipv6.conf.all.disable_ipv6', '1'],
      ['net.ipv6.conf.default.disable_ipv6', '1'],
    ];
    namespaces.push({ name: namespaceName(runId, n.name), node: n.name, kind: 'network', sysctls });
  }

  const veths: VethPlan[] = [];
  const ip = new Map<string, string[]>();
  const tc = new Map<string, string[]>();
  const drops = new Map<string, Array<{ ifname: string; loss: number }>>();
  const unapplied: Unapplied[] = [];
  const notes: string[] = [];
  const push = <T>(m: Map<string, T[]>, ns: string, ...items: T[]) => m.set(ns, [...(m.get(ns) ?? []), ...items]);
  for (const ns of namespaces) push(ip, ns.name, 'link set dev lo up');
  for (const n of topology.networks) {
    const ageing = n.type === 'HUB' ? ' ageing_time 0' : '';
    // STP off and no forward delay: ports forward at once; no multicast snooping, so ff02::
    // traffic floods to every port (CORE's LinuxNetClient.create_bridge does the same).
    push(ip, namespaceName(runId, n.name), `link add ${BRIDGE} type bridge stp_state 0 forward_delay 0 mcast_snooping 0${ageing}`);
  }

  const portsSeen = new Map<string, Set<string>>();
  for (const link of topology.links) {
    const { end1, end2, network } = linkEnds(runId, topology, link);
    for (const [end, iface] of [
      [end1, link.iface1],
      [end2, link.iface2],
    ] as const) {
      checkIfname(end.node, end.ifname);
      const seen = portsSeen.get(end.namespace) ?? new Set<string>();
      if (seen.has(end.ifname)) fail(`interface name ${end.ifname} is used twice in ${end.node}`);
      seen.add(end.ifname);
      portsSeen.set(end.namespace, seen);
      const lines: string[] = [];
      if (iface?.mac) lines.push(`link set dev ${end.ifname} address ${iface.mac}`);
      if (iface?.ip4) lines.push(`address add ${iface.ip4.address}/${iface.ip4.prefix} dev ${end.ifname}`);
      if (iface?.ip6) lines.push(`address add ${iface.ip6.address}/${iface.ip6.prefix} dev ${end.ifname} nodad`);
      lines.push(iface ? `link set dev ${end.ifname} up` : `link set dev ${end.ifname} master ${BRIDGE} up`);
      push(ip, end.namespace, ...lines);
    }
    veths.push({
      a: { namespace: end1.namespace, ifname: end1.ifname, node: end1.node },
      b: { namespace: end2.namespace, ifname: end2.ifname, node: end2.node },
    });

    const { from1, from2 } = effectiveEgress(link, network);
    // An agent's uplink is shaped by the agent itself, to the link's bandwidth (agents.ts puts
    // it in the config as the uplink's rate): a qdisc of ours there would stop it (the agent
    // never replaces a root qdisc it did not make).
    for (const [end, iface, from] of [[end1, link.iface1, from1], [end2, link.iface2, from2]] as const) {
      const agentShaped = iface !== null && runsAgent(deviceByName(topology, end.node)!) && interfaceRole(topology, end.node, end.ifname) === 'uplink';
      if (agentShaped && from.bandwidth > 0) notes.push(`${end.node}:${end.ifname}: bandwidth ${from.bandwidth} bit/s is shaped by the agent (its uplink rate), not by the harness`);
      else push(tc, end.namespace, ...shapingLines(end.ifname, from));
    }
    // Loss of what leaves one end is dropped on arrival at the other end.
    if (from1.loss > 0) push(drops, end2.namespace, { ifname: end2.ifname, loss: from1.loss });
    if (from2.loss > 0) push(drops, end1.namespace, { ifname: end1.ifname, loss: from2.loss });

    if (network?.type !== 'WIRELESS_LAN') {
      const u1 = unappliedOf(from1);
      const u2 = unappliedOf(from2);
      const same = JSON.stringify(u1) === JSON.stringify(u2);
      for (const [option, value] of u1) {
        unapplied.push({ option, value, where: same ? `${end1.label} <-> ${end2.label}` : `${end1.label} -> ${end2.label}` });
      }
      if (!same) for (const [option, value] of u2) unapplied.push({ option, value, where: `${end2.label} -> ${end1.label}` });
    }
  }
  for (const n of topology.networks) push(ip, namespaceName(runId, n.name), `link set dev ${BRIDGE} up`);

  const nft = new Map<string, string>();
  for (const [ns, list] of drops) nft.set(ns, lossRuleset(list));
  for (const segment of segments(topology)) {
    const net = segment.network;
    if (net?.type !== 'WIRELESS_LAN') continue;
    const ns = namespaceName(runId, net.name);
    if (!net.basicRange) {
      notes.push(`${net.name}: WIRELESS_LAN without a basic_range configuration passes no packets (as in CORE)`);
    } else {
      for (const [option, value] of unappliedOf({ ...net.basicRange, loss: net.basicRange.error, dup: 0, buffer: 0 })) {
        unapplied.push({ option, value, where: `${net.name} (basic_range)` });
      }
    }
    const allowed: Array<[string, string]> = [];
    for (const [a, b] of hearingPairs(segment)) {
      const pa = portName(a.device, a.iface);
      const pb = portName(b.device, b.iface);
      allowed.push([pa, pb], [pb, pa]);
    }
    nft.set(ns, (nft.get(ns) ?? '') + wlanRuleset(allowed));
  }

  const hostBatch: string[] = [
    ...namespaces.map((ns) => `netns add ${ns.name}`),
    ...namespaces.map((ns) => `netns exec ${ns.name} sysctl -q -w ${ns.sysctls.map(([k, v]) => `${k}=${v}`).join(' ')}`),
    ...veths.map(
      (v, k) =>
        `link add ${v.a.ifname} index ${VETH_INDEX_BASE + 2 * k} netns ${v.a.namespace} ` +
        `type veth peer name ${v.b.ifname} index ${VETH_INDEX_BASE + 2 * k + 1} netns ${v.b.namespace}`,
    ),
  ];
  const routeBatches: NamespaceBatch[] = [];
  for (const d of topology.devices) {
    const lines = nodeSetup(topology, d, runsAgent(d) ? nodeConfig(topology, d, '', overlay) : null);
    if (lines.length) routeBatches.push({ namespace: namespaceName(runId, d.name), lines });
  }
  const ordered = <T>(m: Map<string, T>) => namespaces.filter((ns) => m.has(ns.name)).map((ns) => [ns.name, m.get(ns.name)!] as const);
  return {
    runId,
    namespaces,
    veths,
    hostBatch,
    ipBatches: ordered(ip).map(([namespace, lines]) => ({ namespace, lines })),
    tcBatches: ordered(tc)
      .filter(([, lines]) => lines.length > 0)
      .map(([namespace, lines]) => ({ namespace, lines })),
    nftRulesets: ordered(nft).map(([namespace, ruleset]) => ({ namespace, ruleset })),
    routeBatches,
    unapplied,
    notes,
  };
}

/** One line per unapplied option, e.g. `delay 25000 us on n3:eth1 <-> n2:eth0`. */
export function describeUnapplied(u: Unapplied): string {
  const unit = u.option === 'delay' || u.option === 'jitter' ? ' us' : u.option === 'dup' ? '%' : ' packets (no shaping to queue in)';
  return `${u.option} ${fmt(u.value)}${unit} on ${u.where}`;
}
