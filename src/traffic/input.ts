/**
 * The one way the planner's input is built (pure): from the node's interfaces and uplinks, its
 * share, and the tunnels the kernel holds with each neighbor's priority and cap. The agent and
 * `scrooge tc plan` both call it, so what `tc plan` prints is what the agent would install.
 */
import type { Config } from '../config/config.js';
import type { TrafficInput } from './plan.js';

export interface TrafficSettings {
  share: number;
  neighbor(key: string): { priority: number; cap: number | undefined };
}

export interface TrafficTopology {
  interfaces: readonly { name: string; rate?: number | undefined }[];
  uplinks: readonly { interface: string; rate: number }[];
  /** Capacity of a mesh interface that has no `rate`. */
  defaultRate: number;
  /** Routing is on: the router relays between tunnels (see TrafficInput.relay). */
  relay: boolean;
  /** A gateway that masquerades what the mesh sends out of its uplinks. */
  masquerade: boolean;
  tunnelMtu: number;
}

/** What of the config shapes the traffic plan. */
export function trafficTopology(c: Pick<Config, 'interfaces' | 'uplinks' | 'traffic' | 'routing' | 'tunnels'>): TrafficTopology {
  const routing = c.routing.mode === 'babeld';
  const gateway = routing && (c.routing.gateway.ipv4 || c.routing.gateway.ipv6);
  return { interfaces: c.interfaces, uplinks: c.uplinks, defaultRate: c.traffic.defaultRate, relay: routing, masquerade: gateway && c.routing.masquerade, tunnelMtu: c.tunnels.mtu };
}

export interface TunnelOnLink {
  ifname: string;
  neighbor: string;
  /** The mesh interface it runs over. */
  meshIface: string;
}

export function trafficInput(topology: TrafficTopology, settings: TrafficSettings, tunnels: readonly TunnelOnLink[]): Omit<TrafficInput, 'leaf'> {
  return {
    share: settings.share,
    relay: topology.relay,
    masquerade: topology.masquerade,
    tunnelMtu: topology.tunnelMtu,
    meshInterfaces: topology.interfaces.map((i) => ({ name: i.name, rate: i.rate ?? topology.defaultRate })),
    uplinks: topology.uplinks.map((u) => ({ name: u.interface, rate: u.rate })),
    tunnels: tunnels.map((t) => {
      const s = settings.neighbor(t.neighbor);
      return { ...t, priority: s.priority, cap: s.cap };
    }),
  };
}
