/**
 * The daemon (`scrooge run`): wires the pure mesh core to its edges (UDP socket, WireGuard
 * backend, state directory, control socket) and runs the loops: a 100 ms tick for hellos and
 * timers, a 1 s look at the interfaces, and a reconcile step that makes the kernel's tunnels
 * match what the core wants. Components take (deps, options); start()/stop() are safe twice.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { formatRate, parseRate } from '../config/units.js';
import { ScroogeError } from '../errors.js';
import { MeshCore, type Action, type CoreOptions } from '../neighbors/core.js';
import { tunnelInterfaceName } from '../neighbors/names.js';
import { ReplayMemory } from '../neighbors/replay.js';
import { formatEndpoint, withZone } from '../protocol/address.js';
import { fromBase64Strict, toBase64 } from '../protocol/bytes.js';
import { Verifier, type Identity } from '../protocol/crypto.js';
import { nextEpoch, SequenceSource } from '../protocol/sequence.js';
import { loadIdentity, readPassphraseFile } from '../system/keystore.js';
import { interfaceNamesNow, meshInterfacesNow } from '../system/netif.js';
import type { Runner } from '../system/runner.js';
import { UdpTransport } from '../system/transport.js';
import { TrafficControl } from '../system/traffic.js';
import { detectBackend, type LiveTunnel, type WireGuardBackend } from '../system/wireguard.js';
import { ControlServer } from './control.js';
import { Settings } from './settings.js';
import { StateDir, type StoredTunnel } from './state.js';

const TICK_MS = 100;
const INTERFACE_POLL_MS = 1000;
const WATCH_POLL_MS = 100;
/** Tunnel changes come in bursts; traffic control is applied once per burst. */
const TRAFFIC_DEBOUNCE_MS = 100;
/**
 * How often the per-sender sequence marks are saved (when they changed; no fsync: the page
 * cache survives the agent crashing). After a crash, only messages sent in the last two seconds
 * before it could be replayed once (PROTOCOL.md §5).
 */
const REPLAY_SAVE_MS = 2000;

export interface AgentDeps {
  run: Runner;
  logger: Logger;
  /** Monotonic clock (ms) for the core's timers; performance.now unless a test drives it. */
  now?: () => number;
}

export function coreOptionsFrom(config: Config): Partial<CoreOptions> {
  const d = config.discovery;
  const t = config.tunnels;
  return {
    port: d.port,
    group: d.group,
    helloIntervalMs: d.helloInterval,
    deadIntervalMs: d.deadInterval,
    maxNeighbors: d.maxNeighbors,
    tunnels: {
      enabled: t.enabled,
      portMin: t.portRange[0],
      portMax: t.portRange[1],
      mtu: t.mtu,
      keepaliveSeconds: Math.max(1, Math.round(t.keepalive / 1000)),
      deadAfterMs: t.deadAfter,
      handshakeTimeoutMs: t.handshakeTimeout,
      rekeyAfterMs: t.rekeyAfter,
      retryMinMs: 1000,
      retryMaxMs: 8000,
    },
  };
}

export class Agent {
  private readonly log: Logger;
  private readonly now: () => number;
  private identity!: Identity;
  private core!: MeshCore;
  private replay!: ReplayMemory;
  private state!: StateDir;
  private settings!: Settings;
  private transport: UdpTransport | undefined;
  private backend: WireGuardBackend | undefined;
  private traffic: TrafficControl | undefined;
  private trafficRunning: Promise<void> | undefined;
  private trafficAgain = false;
  private lastTrafficKey = '';
  private control: ControlServer | undefined;
  private metrics: { stop(): Promise<void> } | undefined;
  private timers: NodeJS.Timeout[] = [];
  private started = false;
  private stopping: Promise<void> | undefined;
  private startedAt = 0;
  /** ifname -> generation the kernel has. */
  private readonly applied = new Map<string, number>();
  /** Interfaces created ahead of their tunnel (prepareTunnel), not configured yet: their start. */
  private readonly prepared = new Map<string, Promise<void>>();
  private readonly inflightApply = new Set<string>();
  private readonly inflightRemove = new Set<string>();
  private reconciling = false;
  /** A tunnel whose setup failed waits until `at` before it is tried again. */
  private readonly retryAt = new Map<string, { at: number; delay: number }>();
  private reconcileAgain = false;
  private lastTunnelsSaved = '';
  private lastReplaySaved = '';
  private missingWarned = new Set<string>();

  constructor(private readonly config: Config, private readonly deps: AgentDeps) {
    this.log = deps.logger.child({ component: 'agent' });
    this.now = deps.now ?? (() => performance.now());
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const c = this.config;
    if ((c.tunnels.enabled || c.traffic.enabled) && process.getuid?.() !== 0)
      throw new ScroogeError('ENOTROOT', 'scrooge run needs root (CAP_NET_ADMIN) to build tunnels and program the kernel',
        'run it as root, or set tunnels.enabled and traffic.enabled to false for discovery only');

    const passphrase = c.passphraseFile ? await readPassphraseFile(c.passphraseFile) : undefined;
    const loaded = await loadIdentity(c.keyFile, passphrase);
    if (loaded.warning) this.log.warn(loaded.warning);
    this.identity = loaded.identity;

    this.state = new StateDir(c.stateDir);
    this.state.ensure();
    // The epoch must be durable before the first message (PROTOCOL.md §5).
    const epoch = nextEpoch(this.state.readEpoch(), Date.now() / 1000);
    this.state.writeEpoch(epoch);
    const replay = ReplayMemory.fromJSON(this.state.readReplay());
    this.replay = replay;
    this.settings = new Settings({ share: c.share, neighbors: c.neighbors }, this.state.readSettings(), (s) => this.state.writeSettings(s));

    this.core = new MeshCore(
      {
        identity: this.identity,
        seq: new SequenceSource(epoch, (e) => this.state.writeEpoch(e)),
        verifier: new Verifier(),
        replay,
        random: (n) => new Uint8Array(randomBytes(n)),
      },
      coreOptionsFrom(c),
    );
    this.startedAt = this.now();
    this.log.info({ publicKey: this.core.ownKey, interfaces: c.interfaces.map((i) => i.name), epoch: epoch.toString() }, 'starting');

    // Both before the first hello: the filter, so nothing is forwarded untunneled; the
    // tunnels of a previous run, so a neighbor's hello finds them adopted, not renegotiated.
    await Promise.all([
      c.traffic.enabled &&
        (async () => {
          this.traffic = new TrafficControl({ run: this.deps.run, logger: this.deps.logger }, { backend: c.traffic.backend });
          await this.traffic.start();
          await this.applyTraffic();
        })(),
      c.tunnels.enabled &&
        (async () => {
          this.backend = await detectBackend({ run: this.deps.run, logger: this.deps.logger }, { prefer: c.tunnels.backend, logFile: join(c.stateDir, 'wireguard-go.log'), secretDir: join(c.stateDir, 'keys') });
          await this.adoptTunnels();
        })(),
    ]);
    this.scheduleTraffic(); // adopted tunnels get their classes

    this.transport = await UdpTransport.open({ port: c.discovery.port, group: c.discovery.group, logger: this.deps.logger });
    this.transport.onDatagram((bytes, source) => {
      try {
        this.handle(this.core.receive(bytes, source, this.now()));
      } catch (err) {
        // Untrusted bytes never throw by design; if a bug does, one datagram is lost, not the agent.
        this.log.error({ err, from: `${source.address}%${source.iface ?? ''}` }, 'handling a datagram failed (a bug): dropped');
      }
    });

    this.control = new ControlServer(c.controlSocket, (cmd, args) => this.command(cmd, args), this.log);
    await this.control.start();
    if (c.metrics.listen) await this.startMetrics(c.metrics.listen);

    this.pollInterfaces();
    this.every(TICK_MS, () => this.handle(this.core.tick(this.now())));
    this.every(INTERFACE_POLL_MS, () => this.pollInterfaces());
    this.every(WATCH_POLL_MS, () => void this.watchTunnels());
    this.every(REPLAY_SAVE_MS, () => this.saveReplay());
    const cpu = process.cpuUsage();
    this.log.info({ controlSocket: c.controlSocket, backend: this.backend?.kind ?? 'none', cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, 'running');
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(() => {
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, 'periodic task failed');
      }
    }, ms);
    this.timers.push(t);
  }

  /** Stops the loops; removes tunnels unless configured to leave them. Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    if (this.trafficTimer) clearTimeout(this.trafficTimer);
    this.timers = [];
    await this.transport?.close();
    await this.control?.stop();
    await this.metrics?.stop();
    if (!this.core) return; // start() failed before there was anything to undo
    this.saveReplay();
    if (this.traffic) {
      await this.trafficRunning?.catch(() => {});
      if (this.config.traffic.removeOnStop) {
        await this.traffic.stop().catch((err) => this.log.error({ err: (err as Error).message }, 'removing traffic rules failed'));
        this.log.info('removed packet filter and shaping');
      }
    }
    if (this.backend) {
      while (this.reconciling) await new Promise((r) => setTimeout(r, 10));
      if (this.prepared.size) {
        await Promise.allSettled(this.prepared.values());
        await this.backend.remove([...this.prepared.keys()]).catch(() => {});
      }
      if (this.config.tunnels.removeOnStop) {
        const names = [...this.applied.keys()];
        await this.backend.remove(names).catch((err) => this.log.error({ err: (err as Error).message }, 'removing tunnels failed'));
        this.applied.clear();
        this.state.writeTunnels({});
        if (names.length) this.log.info({ tunnels: names.length }, 'removed tunnels');
      } else {
        this.saveTunnels(true);
        this.log.info({ tunnels: this.applied.size }, 'left tunnels in place (tunnels.removeOnStop is false)');
      }
    }
    this.log.info('stopped');
  }

  // ------------------------------------------------------------------ core <-> edges

  private handle(actions: Action[]): void {
    for (const a of actions) {
      if (a.kind === 'send') this.transport?.send(a.iface, a.to, a.bytes);
      else {
        this.logEvent(a);
        // Only once the link is known to work both ways: a stranger's bare hello costs no process.
        if (a.event === 'neighbor-two-way') this.prepareTunnel(a.neighbor);
        else if (a.event === 'neighbor-removed') this.unprepareTunnel(a.neighbor);
      }
    }
    // Cheap when nothing changed (a map comparison); keeps the kernel in step with the core.
    this.scheduleReconcile();
  }

  private logEvent(e: Action & { kind: 'event' }): void {
    const { kind: _k, event, ...fields } = e;
    const name = 'neighbor' in fields ? this.settings.neighbor(fields.neighbor).alias : undefined;
    const f = { event, ...fields, ...(name ? { alias: name } : {}) };
    switch (event) {
      case 'tunnel-offer':
      case 'tunnel-answer':
      case 'offer-crossed':
      case 'neighbor-two-way':
        this.log.debug(f, event);
        break;
      case 'tunnel-no-port':
        this.log.error(f, 'no free tunnel port: widen tunnels.portRange');
        break;
      default:
        this.log.info(f, event);
    }
  }

  private pollInterfaces(): void {
    const names = this.config.interfaces.map((i) => i.name);
    const present = meshInterfacesNow(names);
    for (const name of names) {
      const here = present.some((p) => p.name === name && p.linkLocal);
      if (!here && !this.missingWarned.has(name)) {
        this.missingWarned.add(name);
        this.log.warn({ iface: name, present: interfaceNamesNow() }, `mesh interface ${name} is missing or has no IPv6 link-local address; waiting for it`);
      } else if (here && this.missingWarned.delete(name)) {
        this.log.info({ iface: name }, `mesh interface ${name} is up`);
      }
    }
    this.transport?.setInterfaces(present.filter((p) => p.linkLocal).map((p) => p.name));
    this.handle(this.core.setInterfaces(present, this.now()));
    void this.checkTunnelsExist();
  }

  /** A tunnel interface that vanished (deleted by hand, its wireguard-go killed) is rebuilt. */
  private async checkTunnelsExist(): Promise<void> {
    if (!this.backend || !this.applied.size) return;
    const live = new Set(await this.backend.listTunnels().catch(() => [...this.applied.keys()]));
    for (const ifname of [...this.applied.keys()]) {
      // Interfaces being set up or taken down right now are not missing.
      if (live.has(ifname) || this.inflightApply.has(ifname) || this.inflightRemove.has(ifname)) continue;
      this.log.warn({ ifname }, 'tunnel interface vanished; rebuilding it');
      this.applied.delete(ifname);
      this.lastTrafficKey = ''; // its tree went with it: traffic control must look again
    }
    this.scheduleReconcile();
  }

  // ------------------------------------------------------------------ tunnels

  /**
   * A neighbor that just proved the link two-way will get a tunnel: start its interface now (for
   * wireguard-go, a process start) while the offer and its confirm are on the wire. Undone if
   * the neighbor goes before a tunnel is configured.
   */
  private prepareTunnel(neighbor: string): void {
    const key = fromBase64Strict(neighbor, 32);
    if (!this.backend || !key || this.stopping) return;
    const ifname = tunnelInterfaceName(this.identity.publicKey, key);
    if (this.applied.has(ifname) || this.prepared.has(ifname)) return;
    this.prepared.set(
      ifname,
      this.backend.prepare(ifname).catch((err) => {
        this.prepared.delete(ifname);
        this.log.debug({ ifname, err: (err as Error).message }, 'preparing a tunnel interface failed (it is created when needed)');
      }),
    );
  }

  private unprepareTunnel(neighbor: string): void {
    const key = fromBase64Strict(neighbor, 32);
    if (!this.backend || !key) return;
    const ifname = tunnelInterfaceName(this.identity.publicKey, key);
    const starting = this.prepared.get(ifname);
    if (!starting || !this.prepared.delete(ifname) || this.applied.has(ifname) || this.inflightApply.has(ifname)) return;
    // Only once its daemon is up: removing a link that does not exist yet would leave it behind.
    void starting.then(() => this.backend!.remove([ifname])).catch(() => {});
  }

  /** Tunnels left by a previous run: adopt the ones the state file vouches for, remove the rest. */
  private async adoptTunnels(): Promise<void> {
    const backend = this.backend!;
    const live = await backend.listTunnels();
    if (!live.length) return;
    const stored = this.state.readTunnels();
    const configs = await backend.read(live);
    const adopt: { ifname: string; rec: StoredTunnel; cfg: LiveTunnel }[] = [];
    const remove: string[] = [];
    for (const ifname of live) {
      const rec = stored[ifname];
      const cfg = configs.get(ifname);
      const neighbor = rec && fromBase64Strict(rec.neighbor, 32);
      if (rec && cfg && neighbor && tunnelInterfaceName(this.identity.publicKey, neighbor) === ifname) adopt.push({ ifname, rec, cfg });
      else remove.push(ifname);
    }
    if (remove.length) {
      await backend.remove(remove);
      this.log.info({ tunnels: remove }, 'removed tunnels this agent cannot vouch for');
    }
    const now = this.now();
    this.core.adoptTunnels(adopt.map(({ ifname, rec, cfg }) => ({
      ifname, neighbor: fromBase64Strict(rec.neighbor, 32)!, role: rec.role, privateKey: cfg.privateKey, listenPort: cfg.listenPort, iface: rec.iface,
      // wireguard-go reports a link-local endpoint without its zone; the state file knows it.
      peer: cfg.peer?.endpoint ? { tunnelKey: cfg.peer.publicKey, endpoint: withZone(cfg.peer.endpoint, cfg.peer.endpoint.zone ?? rec.iface) } : undefined,
    })), now);
    // What is live already matches what the core now wants: mark it all applied (before
    // anything can start a reconcile), then tell the core.
    const adopted = this.core.desiredTunnels().filter((intent) => adopt.some((a) => a.ifname === intent.ifname));
    for (const intent of adopted) this.applied.set(intent.ifname, intent.generation);
    for (const intent of adopted) this.handle(this.core.tunnelApplied(intent.ifname, intent.generation, now));
    if (adopt.length) this.log.info({ tunnels: adopt.map((a) => a.ifname) }, 'adopted tunnels from the previous run');
  }

  private scheduleReconcile(): void {
    if (!this.backend || this.stopping) return;
    if (this.reconciling) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = true;
    void this.reconcile().finally(() => {
      this.reconciling = false;
      if (this.reconcileAgain && !this.stopping) {
        this.reconcileAgain = false;
        this.scheduleReconcile();
      }
    });
  }

  /** Makes the kernel's tunnels match core.desiredTunnels(); adds before it removes. */
  private async reconcile(): Promise<void> {
    const backend = this.backend!;
    const desired = this.core.desiredTunnels();
    const now = this.now();
    const todo = desired.filter((d) => this.applied.get(d.ifname) !== d.generation && (this.retryAt.get(d.ifname)?.at ?? 0) <= now);
    const wanted = new Set(desired.map((d) => d.ifname));
    const gone = [...this.applied.keys()].filter((n) => !wanted.has(n));
    if (!todo.length && !gone.length) return;
    try {
      if (todo.length) {
        const started = performance.now();
        for (const t of todo) this.inflightApply.add(t.ifname);
        const outcomes = await backend.apply(todo, new Set(this.applied.keys())).finally(() => this.inflightApply.clear());
        const now = this.now();
        for (const o of outcomes) {
          if (o.ok) {
            this.prepared.delete(o.ifname);
            this.retryAt.delete(o.ifname);
            this.applied.set(o.ifname, o.generation);
            this.handle(this.core.tunnelApplied(o.ifname, o.generation, now));
          } else {
            // Back off (1 s, doubling to 30 s): a persistent failure must not spawn a process a tick.
            const delay = Math.min(30_000, (this.retryAt.get(o.ifname)?.delay ?? 500) * 2);
            this.retryAt.set(o.ifname, { at: now + delay, delay });
            this.log.warn({ ifname: o.ifname, err: o.error, retryInMs: delay }, 'tunnel setup failed; will retry');
            this.handle(this.core.tunnelFailed(o.ifname, o.generation, { portBusy: o.portBusy }, now));
          }
        }
        const cpu = process.cpuUsage();
        this.log.debug({ tunnels: todo.length, ms: Math.round(performance.now() - started), cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, 'applied tunnels');
      }
      if (gone.length) {
        for (const n of gone) this.inflightRemove.add(n);
        await backend.remove(gone).finally(() => this.inflightRemove.clear());
        for (const n of gone) this.applied.delete(n);
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'tunnel reconcile failed; will retry');
      setTimeout(() => this.scheduleReconcile(), 1000).unref();
    }
    this.saveTunnels(false);
    this.scheduleTraffic();
  }

  // ------------------------------------------------------------------ traffic control

  private trafficInput() {
    const c = this.config;
    const tunnels = this.core.neighborList().flatMap((n) => {
      const t = n.tunnel;
      if (!t || !this.applied.has(t.ifname)) return [];
      const s = this.settings.neighbor(n.key);
      return [{ ifname: t.ifname, neighbor: n.key, meshIface: t.peerEndpoint?.zone ?? n.iface ?? '', priority: s.priority, cap: s.cap }];
    });
    return {
      share: this.settings.share,
      meshInterfaces: c.interfaces.map((i) => ({ name: i.name, rate: i.rate ?? c.traffic.defaultRate })),
      uplinks: c.uplinks.map((u) => ({ name: u.interface, rate: u.rate })),
      tunnels,
    };
  }

  /** Applies the traffic plan if its inputs changed; serialized; the promise ends when applied. */
  private applyTraffic(force = false): Promise<void> {
    if (!this.traffic || this.stopping) return Promise.resolve();
    if (this.trafficRunning) {
      this.trafficAgain = true;
      return this.trafficRunning.then(() => this.applyTraffic(force));
    }
    const input = this.trafficInput();
    const key = JSON.stringify(input);
    if (!force && key === this.lastTrafficKey) return Promise.resolve();
    this.trafficRunning = this.traffic
      .apply(input)
      .then((r) => {
        this.lastTrafficKey = key;
        if (r.filterChanged || r.tcCommands) this.log.debug({ ...r, tunnels: input.tunnels.length }, 'traffic applied');
      })
      .catch((err) => {
        this.lastTrafficKey = '';
        this.log.error({ err: (err as Error).message }, 'applying traffic control failed; will retry');
        setTimeout(() => this.scheduleTraffic(), 1000).unref();
      })
      .finally(() => {
        this.trafficRunning = undefined;
        if (this.trafficAgain) {
          this.trafficAgain = false;
          this.scheduleTraffic();
        }
      });
    return this.trafficRunning;
  }

  /**
   * Tunnel changes come in bursts (a node meeting 19 neighbors at once): one apply for the
   * burst, 100 ms later, instead of an nft and a tc process per tunnel. Operator changes do not
   * wait (the `set` command applies at once).
   */
  private trafficTimer: NodeJS.Timeout | undefined;
  private scheduleTraffic(): void {
    if (this.trafficTimer || !this.traffic) return;
    this.trafficTimer = setTimeout(() => {
      this.trafficTimer = undefined;
      void this.applyTraffic();
    }, TRAFFIC_DEBOUNCE_MS);
    this.trafficTimer.unref();
  }

  private saveTunnels(force: boolean): void {
    const records: Record<string, StoredTunnel> = {};
    for (const n of this.core.neighborList()) {
      const t = n.tunnel;
      if (!t || !this.applied.has(t.ifname)) continue;
      records[t.ifname] = { neighbor: n.key, role: t.role, listenPort: t.listenPort, iface: t.peerEndpoint?.zone ?? n.iface ?? '' };
    }
    const text = JSON.stringify(records);
    if (!force && text === this.lastTunnelsSaved) return;
    this.lastTunnelsSaved = text;
    this.state.writeTunnels(records);
  }

  private saveReplay(): void {
    const entries = this.replay.toJSON();
    const text = JSON.stringify(entries);
    if (text === this.lastReplaySaved) return;
    this.lastReplaySaved = text;
    this.state.writeReplay(entries);
  }

  private watching = false;
  private async watchTunnels(): Promise<void> {
    if (!this.backend || this.watching) return;
    const names = this.core.tunnelsToWatch().filter((n) => this.applied.has(n));
    if (!names.length) return;
    this.watching = true;
    try {
      const live = await this.backend.read(names);
      const now = this.now();
      const wall = Date.now();
      for (const [ifname, t] of live) {
        if (!t.peer) continue;
        const { latestHandshakeMs, rxBytes, txBytes } = t.peer.stats;
        const handshakeAgoMs = latestHandshakeMs > 0 ? Math.max(0, wall - latestHandshakeMs) : undefined;
        this.handle(this.core.tunnelObserved(ifname, { handshakeAgoMs, rxBytes, txBytes, peerKey: t.peer.publicKey }, now));
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'reading tunnel stats failed');
    } finally {
      this.watching = false;
    }
  }

  // ------------------------------------------------------------------ control socket

  private async command(cmd: string, args: Record<string, unknown>): Promise<unknown> {
    switch (cmd) {
      case 'status':
        return { ...this.status(), traffic: this.traffic ? { backend: this.traffic.backend, untunneledDrops: await this.traffic.untunneledDrops().catch(() => null) } : null };
      case 'neighbors':
        return { neighbors: await this.neighborRows(args['stats'] !== false) };
      case 'tunnels':
        // {stats: false}: what the agent already knows, without asking WireGuard (cheap: for
        // pollers like `sim wait`, which would otherwise cost every tunnel a UAPI read per poll).
        return { tunnels: (await this.neighborRows(args['stats'] !== false)).filter((n) => n.tunnel).map((n) => ({ neighbor: n.key, alias: n.alias, ...n.tunnel })) };
      case 'set': {
        const result = this.setNeighbor(args);
        // Answer once the kernel holds the new classes.
        await this.applyTraffic();
        return result;
      }
      case 'traffic':
        return this.trafficStatus();
      default:
        throw new ScroogeError('EUNKNOWNCMD', `the agent does not know the command "${cmd}"`);
    }
  }

  /** Loaded only when configured: prom-client costs start-up time nobody else should pay. */
  private async startMetrics(listen: { host: string; port: number }): Promise<void> {
    const { buildRegistry, MetricsServer } = await import('./metrics.js');
    const registry = buildRegistry({
      counters: () => this.core.counters as never,
      neighbors: () => this.core.neighborList(),
      tunnels: async () =>
        (await this.neighborRows(true)).flatMap((n) => (n.tunnel ? [{
          neighbor: n.key, alias: n.alias, ifname: n.tunnel.ifname, rxBytes: n.tunnel.rxBytes, txBytes: n.tunnel.txBytes,
          handshakeAgeSeconds: n.tunnel.latestHandshakeAgoMs === null ? null : n.tunnel.latestHandshakeAgoMs / 1000,
        }] : [])),
      classes: async () => {
        const t = await this.trafficStatus();
        if (!t.enabled) return [];
        return t.trees!.flatMap((tree) => tree.classes.map((c) => ({ dev: tree.dev, classid: c.classid, neighbor: c.neighbor ?? (tree.kind === 'tunnel' && c.classid === '5c:20' ? (tree.neighbor ?? null) : null), alias: c.alias, rateBits: c.rate, bytes: c.bytes, packets: c.packets, drops: c.drops })));
      },
      untunneledDrops: async () => (this.traffic ? this.traffic.untunneledDrops().catch(() => null) : null),
    });
    const server = new MetricsServer(registry, listen, this.log);
    await server.start();
    this.metrics = server;
  }

  private async trafficStatus() {
    if (!this.traffic) return { enabled: false };
    const aliases = new Map(this.core.neighborList().map((n) => [n.key, this.settings.neighbor(n.key).alias]));
    const neighborOfClass = new Map([...(this.traffic.lastPlan?.classOf ?? new Map<string, string>())].map(([k, c]) => [c, k]));
    const trees = await this.traffic.liveClasses();
    return {
      enabled: true,
      backend: this.traffic.backend,
      share: this.settings.share,
      untunneledDrops: await this.traffic.untunneledDrops(),
      trees: trees.map((t) => ({
        ...t,
        alias: t.neighbor ? (aliases.get(t.neighbor) ?? null) : null,
        classes: t.classes.map((c) => {
          const key = neighborOfClass.get(c.classid);
          return { ...c, neighbor: key ?? null, alias: key ? (aliases.get(key) ?? null) : null };
        }),
      })),
    };
  }

  private status() {
    const c = this.core.counters;
    return {
      publicKey: this.core.ownKey,
      tunnelAddress: this.core.tunnelAddress,
      uptimeSeconds: Math.round((this.now() - this.startedAt) / 1000),
      pid: process.pid,
      interfaces: this.config.interfaces.map((i) => {
        const live = this.core.interfaceList().find((x) => x.name === i.name);
        return { name: i.name, up: !!live?.linkLocal, linkLocal: live?.linkLocal ?? null };
      }),
      backend: this.backend?.kind ?? null,
      neighbors: this.core.neighborList().length,
      tunnels: this.applied.size,
      share: this.settings.share,
      counters: { sent: c.sent, received: c.received, dropped: c.dropped, sendErrors: this.transport?.sendErrors ?? 0 },
    };
  }

  private async neighborRows(withStats: boolean) {
    const list = this.core.neighborList();
    const names = list.map((n) => n.tunnel?.ifname).filter((n): n is string => !!n && this.applied.has(n));
    const live = withStats && this.backend && names.length ? await this.backend.read(names).catch(() => new Map<string, LiveTunnel>()) : new Map<string, LiveTunnel>();
    const now = this.now();
    return list.map((n) => {
      const s = this.settings.neighbor(n.key);
      const t = n.tunnel;
      const stats = t ? live.get(t.ifname)?.peer?.stats : undefined;
      // WireGuard's times are wall-clock; the core's are monotonic: both become ages.
      const handshakeAgo = stats && stats.latestHandshakeMs > 0 ? Math.max(0, Date.now() - stats.latestHandshakeMs) : t?.handshakeAt === undefined ? undefined : now - t.handshakeAt;
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

  private setNeighbor(args: Record<string, unknown>) {
    if (args['share'] !== undefined) {
      const share = Number(args['share']);
      if (!(share > 0 && share <= 1)) throw new ScroogeError('EVALUE', `share must be in (0, 1], got ${String(args['share'])}`);
      this.settings.setShare(share);
      this.log.info({ share }, 'share changed');
      return { share };
    }
    const key = this.settings.resolve(String(args['neighbor'] ?? ''), this.core.neighborList().map((n) => n.key));
    const change: { alias?: string; priority?: number; cap?: number | null } = {};
    if (args['alias'] !== undefined) change.alias = String(args['alias']);
    if (args['priority'] !== undefined) change.priority = Number(args['priority']);
    if (args['cap'] !== undefined) {
      if (args['cap'] === null) change.cap = null;
      else {
        const bits = parseRate(String(args['cap']));
        if (bits === undefined) throw new ScroogeError('EVALUE', `not a rate: "${String(args['cap'])}" (write e.g. "2mbit", "500kbit", or "none")`);
        change.cap = bits;
      }
    }
    const result = this.settings.update(key, change);
    this.log.info({ neighbor: key, ...change }, 'neighbor settings changed');
    return { neighbor: key, alias: result.alias ?? null, priority: result.priority, cap: result.cap === undefined ? null : formatRate(result.cap) };
  }

  /** For tests and status: our identity key, base64. */
  get publicKey(): string {
    return toBase64(this.identity.publicKey);
  }
}
