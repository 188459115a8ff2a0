/**
 * What the agent answers on its control socket (and what its metrics read): status, neighbors,
 * tunnels, traffic, and `set`. Every request is validated by the config's own schemas
 * (src/config/config.ts), so a value the config file would refuse is refused here too, with one
 * line naming the field, and nothing changes. The field names are the stable `--json` output
 * (README "Output for scripts").
 */
import { parseSetRequest, readRequestSchema } from '../config/config.js';
import { formatRate } from '../config/units.js';
import { ScroogeError } from '../errors.js';
import type { MeshCore } from '../neighbors/core.js';
import { formatEndpoint } from '../protocol/address.js';
import type { LiveTunnel } from '../system/wireguard/index.js';
import type { Transport } from '../system/transport.js';
import type { RoutingSupervisor } from '../routing/supervisor.js';
import { tunnelLinkLocal } from '../neighbors/names.js';
import { fromBase64Strict } from '../protocol/bytes.js';
import type { Clock } from '../system/clock.js';
import type { MetricsSource } from './metrics.js';
import type { Settings } from './settings.js';
import type { TrafficDriver } from './traffic.js';
import type { TunnelReconciler } from './tunnels.js';

/** The parts of the agent the commands look at, and the one way they change something. */
export interface AgentView {
  core: MeshCore;
  clock: Clock;
  startedAt: number;
  configInterfaces: readonly string[];
  settings(): Settings;
  tunnels(): TunnelReconciler | undefined;
  traffic(): TrafficDriver | undefined;
  transport(): Transport | undefined;
  routing(): RoutingSupervisor | undefined;
  /** Puts new settings in force (the kernel first, then settings.json); throws if refused. */
  change(next: Settings): Promise<void>;
}

export class AgentCommands {
  constructor(private readonly v: AgentView) {}

  /** The control socket's handler. */
  handle = async (cmd: string, args: Record<string, unknown>): Promise<unknown> => {
    switch (cmd) {
      case 'status': {
        // {stats: false}: no kernel counters and no babeld dump, so it answers at once however
        // busy the kernel is (the sim's readiness probe: under TCG one `nft list` takes seconds).
        const stats = this.stats(args);
        return { ...this.status(), traffic: await this.trafficSummary(stats), routing: await this.routingSummary(stats) };
      }
      case 'neighbors':
        return { neighbors: await this.neighborRows(this.stats(args)) };
      case 'tunnels':
        // {stats: false}: what the agent already knows, without asking WireGuard (cheap: for
        // pollers like `sim wait`, which would otherwise cost every tunnel a UAPI read per poll).
        return { tunnels: (await this.neighborRows(this.stats(args))).filter((n) => n.tunnel).map((n) => ({ neighbor: n.key, alias: n.alias, ...n.tunnel })) };
      case 'set':
        return this.set(args);
      case 'traffic':
        this.stats(args);
        return this.trafficStatus();
      case 'routes':
        this.stats(args);
        return { routes: await this.routeRows() };
      default:
        throw new ScroogeError('EUNKNOWNCMD', `the agent does not know the command "${cmd}"`);
    }
  };

  /** babeld's routes, each with the neighbor (and tunnel) it goes through. */
  async routeRows() {
    const routing = this.v.routing();
    if (!routing) return [];
    const settings = this.v.settings();
    const byTunnel = new Map<string, string>();
    const byAddress = new Map<string, string>();
    for (const n of this.v.core.neighborList()) {
      if (n.tunnel) byTunnel.set(n.tunnel.ifname, n.key);
      const key = fromBase64Strict(n.key, 32);
      if (key) byAddress.set(tunnelLinkLocal(key), n.key);
    }
    return (await routing.routes()).map((r) => {
      const neighbor = byTunnel.get(r.ifname) ?? byAddress.get(r.via) ?? null;
      return {
        prefix: r.prefix, via: r.via, tunnel: r.ifname, neighbor, alias: neighbor ? (settings.neighbor(neighbor).alias ?? null) : null,
        metric: r.metric, installed: r.installed, reachable: r.reachable, routerId: r.routerId,
      };
    });
  }

  private async routingSummary(stats: boolean) {
    const routing = this.v.routing();
    if (!routing) return null;
    const s = routing.status();
    const routes = stats ? await this.routeRows().catch(() => []) : undefined;
    return {
      mode: 'babeld', running: s.running, pid: s.pid ?? null, restarts: s.restarts, relaunches: s.relaunches,
      interfaces: s.interfaces.filter((i) => i.state === 'up').length,
      routes: routes ? routes.filter((r) => r.installed && r.reachable).length : null,
    };
  }

  private async trafficSummary(stats: boolean) {
    const traffic = this.v.traffic();
    if (!traffic) return null;
    if (!stats) return { backend: traffic.backend, untunneledDrops: null, discoveryDrops: null };
    return { backend: traffic.backend, untunneledDrops: await traffic.untunneledDrops().catch(() => null), discoveryDrops: await traffic.discoveryDrops().catch(() => null) };
  }

  private stats(args: Record<string, unknown>): boolean {
    const r = readRequestSchema.safeParse(args);
    if (!r.success) throw new ScroogeError('EREQUEST', `unknown field${Object.keys(args).length > 1 ? 's' : ''} ${Object.keys(args).map((k) => `"${k}"`).join(', ')}`);
    return r.data.stats !== false;
  }

  /** `set`: validated, resolved, applied (the kernel first), then stored; answers the result. */
  private async set(args: Record<string, unknown>) {
    const request = parseSetRequest(args);
    const { settings, neighbor } = this.v.settings().with(request, this.v.core.neighborList().map((n) => n.key));
    await this.v.change(settings);
    if (neighbor === undefined) return { share: settings.share };
    const s = settings.neighbor(neighbor);
    return { neighbor, alias: s.alias ?? null, priority: s.priority, cap: s.cap === undefined ? null : formatRate(s.cap) };
  }

  status() {
    const core = this.v.core;
    const c = core.counters;
    return {
      publicKey: core.ownKey,
      tunnelAddress: core.tunnelAddress,
      uptimeSeconds: Math.round((this.v.clock.now() - this.v.startedAt) / 1000),
      pid: process.pid,
      interfaces: this.v.configInterfaces.map((name) => {
        const live = core.interfaceList().find((x) => x.name === name);
        return { name, up: !!live?.linkLocal, linkLocal: live?.linkLocal ?? null };
      }),
      backend: this.v.tunnels()?.backend.kind ?? null,
      neighbors: core.neighborList().length,
      tunnels: core.neighborList().filter((n) => n.tunnel?.configured).length,
      share: this.v.settings().share,
      counters: { sent: c.sent, received: c.received, redundant: c.redundant, dropped: c.dropped, evicted: c.evicted, sendErrors: this.v.transport()?.sendErrors ?? 0 },
    };
  }

  async neighborRows(withStats: boolean) {
    const list = this.v.core.neighborList();
    const settings = this.v.settings();
    const names = list.flatMap((n) => (n.tunnel?.configured ? [n.tunnel.ifname] : []));
    const tunnels = this.v.tunnels();
    const live = withStats && tunnels ? await tunnels.read(names).catch(() => new Map<string, LiveTunnel>()) : new Map<string, LiveTunnel>();
    const now = this.v.clock.now();
    const wall = this.v.clock.wall();
    return list.map((n) => {
      const s = settings.neighbor(n.key);
      const t = n.tunnel;
      const stats = t ? live.get(t.ifname)?.peer?.stats : undefined;
      // WireGuard's times are wall-clock; the core's are monotonic: both become ages.
      const handshakeAgo = stats && stats.latestHandshakeMs > 0 ? Math.max(0, wall - stats.latestHandshakeMs) : t?.handshakeAt === undefined ? undefined : now - t.handshakeAt;
      return {
        key: n.key,
        alias: s.alias ?? null,
        state: n.state,
        iface: n.iface ?? null,
        linkLocal: n.linkLocal ?? null,
        control: n.control ? formatEndpoint(n.control) : null,
        lastSeq: n.lastSeq?.toString() ?? null,
        firstHeardAgoMs: now - n.firstHeard,
        lastHeardAgoMs: now - n.lastHeard,
        priority: s.priority,
        cap: s.cap === undefined ? null : formatRate(s.cap),
        capBitsPerSecond: s.cap ?? null,
        tunnel: t
          ? {
              ifname: t.ifname,
              state: !t.applied ? 'configuring' : t.phase === 'up' ? (handshakeAgo !== undefined ? 'up' : 'handshaking') : t.phase,
              role: t.role,
              listenPort: t.listenPort,
              peerEndpoint: t.peerEndpoint ? formatEndpoint(t.peerEndpoint) : null,
              latestHandshakeAgoMs: handshakeAgo === undefined ? null : Math.round(handshakeAgo),
              rxBytes: stats?.rxBytes ?? 0,
              txBytes: stats?.txBytes ?? 0,
            }
          : null,
      };
    });
  }

  async trafficStatus() {
    const traffic = this.v.traffic();
    if (!traffic) return { enabled: false };
    const settings = this.v.settings();
    const alias = (key: string | null | undefined) => (key ? (settings.neighbor(key).alias ?? null) : null);
    const trees = await traffic.liveClasses();
    return {
      enabled: true,
      backend: traffic.backend,
      share: settings.share,
      untunneledDrops: await traffic.untunneledDrops(),
      discoveryDrops: await traffic.discoveryDrops(),
      trees: trees.map((t) => ({ ...t, alias: alias(t.neighbor), classes: t.classes.map((c) => ({ ...c, alias: alias(c.neighbor) })) })),
    };
  }

  /** What the Prometheus endpoint reads at scrape time. */
  metricsSource(): MetricsSource {
    return {
      counters: () => this.v.core.counters,
      neighbors: () => this.v.core.neighborList(),
      tunnels: async () =>
        (await this.neighborRows(true)).flatMap((n) => (n.tunnel ? [{
          neighbor: n.key, alias: n.alias, ifname: n.tunnel.ifname, rxBytes: n.tunnel.rxBytes, txBytes: n.tunnel.txBytes,
          handshakeAgeSeconds: n.tunnel.latestHandshakeAgoMs === null ? null : n.tunnel.latestHandshakeAgoMs / 1000,
        }] : [])),
      classes: async () => {
        const t = await this.trafficStatus();
        if (!t.enabled) return [];
        return t.trees!.flatMap((tree) => tree.classes.map((c) => ({ dev: tree.dev, classid: c.classid, neighbor: c.neighbor, alias: c.alias, rateBits: c.rate, bytes: c.bytes, packets: c.packets, drops: c.drops })));
      },
      untunneledDrops: async () => (await this.trafficSummary(true))?.untunneledDrops ?? null,
      discoveryDrops: async () => (await this.trafficSummary(true))?.discoveryDrops ?? null,
      routing: async () => {
        const r = await this.routingSummary(true);
        return r && { ...r, routes: r.routes ?? 0 };
      },
    };
  }
}
