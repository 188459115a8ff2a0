/**
 * What `sim status` and `sim list` show, computed from run.json plus two facts from the system
 * that the caller passes in (which namespaces exist, which pids are alive), so it stays pure.
 */
import { describeUnapplied } from './plan.js';
import type { SimRun } from './run.js';
import {
  type LinkOptions,
  type Topology,
  deviceById,
  deviceInterfaces,
  interfaceRole,
  networkById,
  runsAgent,
} from './scenario.js';

export interface InterfaceStatus {
  name: string;
  role: 'mesh' | 'uplink' | 'none';
  /** Network name, or `n1:eth0-n2:eth0` for a direct link. */
  segment: string;
  mac: string | null;
  addresses: string[];
}

export interface NodeStatus {
  name: string;
  type: string;
  namespace: string;
  namespaceExists: boolean;
  agent: boolean;
  pid: number | null;
  alive: boolean | null;
  interfaces: InterfaceStatus[];
}

export interface NetworkStatus {
  name: string;
  type: string;
  namespace: string;
  namespaceExists: boolean;
  members: string[];
  /** basic_range settings of a WLAN, e.g. `range 250 px, 54 Mbit/s`. */
  config: string;
}

export interface LinkStatus {
  from: string;
  to: string;
  options: string;
}

export interface RunStatus {
  id: string;
  scenarioPath: string;
  createdAt: string;
  state: SimRun['state'];
  agentsEnabled: boolean;
  nodes: NodeStatus[];
  networks: NetworkStatus[];
  links: LinkStatus[];
  unapplied: string[];
  notes: string[];
}

export function describeOptions(o: LinkOptions): string {
  const parts: string[] = [];
  if (o.bandwidth > 0) parts.push(`${o.bandwidth / 1e6} Mbit/s`);
  if (o.loss > 0) parts.push(`loss ${o.loss}%`);
  if (o.delay > 0) parts.push(`delay ${o.delay} us`);
  if (o.jitter > 0) parts.push(`jitter ${o.jitter} us`);
  if (o.dup > 0) parts.push(`dup ${o.dup}%`);
  if (o.buffer > 0) parts.push(`buffer ${o.buffer}`);
  return parts.join(', ');
}

function endLabel(topology: Topology, node: number, iface: { name: string } | null): string {
  const d = deviceById(topology, node);
  return d ? `${d.name}:${iface?.name ?? '?'}` : (networkById(topology, node)?.name ?? String(node));
}

export function runStatus(run: SimRun, facts: { namespaces: readonly string[]; alive: (pid: number) => boolean }): RunStatus {
  const t = run.topology;
  const nodes: NodeStatus[] = t.devices.map((d) => {
    const agent = runsAgent(d);
    const rec = run.agents.pids[d.name];
    const ns = run.nodes[d.name] ?? '';
    return {
      name: d.name,
      type: d.type,
      namespace: ns,
      namespaceExists: facts.namespaces.includes(ns),
      agent,
      pid: rec?.pid ?? null,
      alive: rec ? facts.alive(rec.pid) : null,
      interfaces: deviceInterfaces(t, d).map(({ iface, segment }) => ({
        name: iface.name,
        role: interfaceRole(t, d, iface.name),
        segment: segment.id,
        mac: iface.mac,
        addresses: [iface.ip4, iface.ip6].filter((a) => a !== null).map((a) => `${a.address}/${a.prefix}`),
      })),
    };
  });
  const networks: NetworkStatus[] = t.networks.map((n) => {
    const ns = run.namespaces.find((x) => x === `${run.id}-${n.name}`) ?? `${run.id}-${n.name}`;
    const members = t.links
      .filter((l) => l.node1 === n.id || l.node2 === n.id)
      .map((l) => (l.node1 === n.id ? endLabel(t, l.node2, l.iface2) : endLabel(t, l.node1, l.iface1)));
    const br = n.basicRange;
    const config =
      n.type !== 'WIRELESS_LAN'
        ? ''
        : br
          ? [`range ${br.range} px`, describeOptions({ bandwidth: br.bandwidth, delay: br.delay, jitter: br.jitter, loss: br.error, dup: 0, buffer: 0 })]
              .filter((x) => x)
              .join(', ')
          : 'no basic_range: passes nothing';
    return { name: n.name, type: n.type, namespace: ns, namespaceExists: facts.namespaces.includes(ns), members, config };
  });
  const links: LinkStatus[] = t.links.map((l) => {
    const from = endLabel(t, l.node1, l.iface1);
    const to = endLabel(t, l.node2, l.iface2);
    const o1 = describeOptions(l.egress.node1);
    const o2 = describeOptions(l.egress.node2);
    const options = o1 === o2 ? o1 : `${from}->: ${o1 || 'none'}; ${to}->: ${o2 || 'none'}`;
    return { from, to, options };
  });
  return {
    id: run.id,
    scenarioPath: run.scenarioPath,
    createdAt: run.createdAt,
    state: run.state,
    agentsEnabled: run.agents.enabled,
    nodes,
    networks,
    links,
    unapplied: run.unapplied.map(describeUnapplied),
    notes: run.notes,
  };
}
