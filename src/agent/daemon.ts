/**
 * The daemon (`scrooge run`): wiring only. It builds the components — the pure mesh core, the
 * discovery socket, the tunnel reconciler over a WireGuard backend, traffic control, the
 * control socket — hands each its deps, starts and stops them, and moves the core's actions to
 * the edges and the edges' reports back to the core. It keeps no tables of its own: the core
 * owns the neighbors and tunnels (including what the kernel holds), the settings live in one
 * Settings value, and the kernel is asked which interfaces exist.
 * Every timer runs on the injected clock, so a test drives whole agents through fake time.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { coreOptionsFrom, type Config } from '../config/config.js';
import * as T from '../config/tunables.js';
import { MeshCore, type Action, type MeshInterface } from '../neighbors/core.js';
import { ReplayMemory } from '../neighbors/replay.js';
import { fromBase64Strict, toBase64 } from '../protocol/bytes.js';
import { tunnelLinkLocal } from '../neighbors/names.js';
import { meshAddress6 } from '../routing/address.js';
import { RoutingSupervisor } from '../routing/supervisor.js';
import { Verifier, type Identity } from '../protocol/crypto.js';
import { nextEpoch, SequenceSource } from '../protocol/sequence.js';
import { loadIdentity, readPassphraseFile } from '../system/keystore.js';
import { interfaceNamesNow, meshInterfacesNow } from '../system/netif.js';
import type { Runner } from '../system/runner.js';
import { TrafficControl } from '../system/traffic.js';
import { UdpTransport, type Transport, type TransportOptions } from '../system/transport.js';
import { detectBackend, type WireGuardBackend } from '../system/wireguard/index.js';
import { trafficInput, trafficTopology } from '../traffic/input.js';
import { coalescing, every, systemClock, type Clock } from '../system/clock.js';
import { AgentCommands } from './commands.js';
import { ControlServer } from './control.js';
import { logEvent } from './events.js';
import { TunnelHooks, type HookTunnel } from './hooks.js';
import { InterfaceWatch } from './interfaces.js';
import { Settings } from './settings.js';
import { StateDir, type StoredTunnel } from './state.js';
import { TrafficDriver } from './traffic.js';
import { TunnelReconciler, type TunnelsReached } from './tunnels.js';

export interface AgentDeps {
  run: Runner;
  logger: Logger;
  clock?: Clock;
  /** Cryptographically secure random bytes (tunnel keys, jitter). */
  random?: (n: number) => Uint8Array;
  /** The discovery socket (UDP unless a test brings its own). */
  openTransport?: (opts: TransportOptions) => Promise<Transport>;
  /** Mesh interfaces present now, with their link-local addresses (getifaddrs unless a test's). */
  interfaces?: (names: readonly string[]) => MeshInterface[];
  /** The WireGuard backend (detected unless a test brings a fake). */
  wireguard?: (opts: { prefer: 'auto' | 'kernel' | 'userspace'; logFile: string; secretDir: string; commandTimeoutMs?: number }) => Promise<WireGuardBackend>;
  /** A device's ifindex, for traffic control (sysfs unless a test's). */
  deviceIndex?: (dev: string) => Promise<number | undefined>;
  /** The routing component (babeld unless a test brings a fake). */
  routing?: (options: ConstructorParameters<typeof RoutingSupervisor>[1]) => RoutingSupervisor;
  /** A full garbage collection, run every FULL_GC_MS (`scrooge run` brings V8's; none in tests). */
  collectGarbage?: (() => void) | undefined;
}

export class Agent {
  private readonly log: Logger;
  private readonly clock: Clock;
  private identity!: Identity;
  private core!: MeshCore;
  private replay!: ReplayMemory;
  private state!: StateDir;
  private settings!: Settings;
  private transport: Transport | undefined;
  private tunnels: TunnelReconciler | undefined;
  private traffic: TrafficDriver | undefined;
  private control: ControlServer | undefined;
  private routing: RoutingSupervisor | undefined;
  private hooks!: TunnelHooks;
  private metrics: { stop(): Promise<void> } | undefined;
  private commands!: AgentCommands;
  private interfaces!: InterfaceWatch;
  private readonly timers: (() => void)[] = [];
  private started = false;
  private stopping: Promise<void> | undefined;
  private startedAt = 0;
  /** The desired tunnels last handed to the reconciler, as text: unchanged, a pass is skipped. */
  private lastDesired = '';
  /** The mesh interfaces and their link-locals at the last poll, as text. */
  private lastInterfaces: string | undefined;
  /** The proven neighbors' sources the kernel's guard was last asked to know. */
  private lastProven = '';
  private watching = false;
  /** The core's next deadline, armed on the clock (no fixed beat: see scheduleTick). */
  private tickTimer: { at: number; cancel: () => void } | undefined;
  private ticking = false;
  private cancelWatch: (() => void) | undefined;
  /** babeld and the hooks follow the tunnels that are up (serialized: one pass at a time). */
  private readonly syncRouting = coalescing(() => this.routeTunnels(), (err) => this.log.error({ err: (err as Error).message }, 'updating routing failed; will retry'));
  private readonly reconcile = coalescing(() => this.reconcileTunnels(), (err) => {
    this.log.error({ err: (err as Error).message }, 'tunnel reconcile failed; will retry');
    this.lastDesired = '';
  });

  constructor(private readonly deps: AgentDeps, private readonly config: Config) {
    this.log = deps.logger.child({ component: 'agent' });
    this.clock = deps.clock ?? systemClock;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const c = this.config;
    const passphrase = c.passphraseFile ? await readPassphraseFile(c.passphraseFile) : undefined;
    const loaded = await loadIdentity(c.keyFile, passphrase);
    if (loaded.warning) this.log.warn(loaded.warning);
    this.identity = loaded.identity;

    this.state = new StateDir(c.stateDir);
    this.state.ensure();
    this.settings = new Settings({ share: c.share, neighbors: c.neighbors }, this.state.readSettings());
    // The epoch must be durable before the first message (PROTOCOL.md §5).
    const epoch = nextEpoch(this.state.readEpoch(), this.clock.wall() / 1000);
    this.state.writeEpoch(epoch);
    this.replay = ReplayMemory.fromJSON(this.state.readReplay());
    const random = this.deps.random ?? ((n: number) => new Uint8Array(randomBytes(n)));
    this.core = new MeshCore(
      { identity: this.identity, seq: new SequenceSource(epoch, (e) => this.state.writeEpoch(e)), verifier: new Verifier(), replay: this.replay, random },
      coreOptionsFrom(c),
    );
    this.startedAt = this.clock.now();
    this.commands = new AgentCommands({
      core: this.core, clock: this.clock, startedAt: this.startedAt, configInterfaces: c.interfaces.map((i) => i.name),
      settings: () => this.settings, tunnels: () => this.tunnels, traffic: () => this.traffic, transport: () => this.transport, routing: () => this.routing,
      change: (next) => this.changeSettings(next),
    });
    this.interfaces = new InterfaceWatch({ list: this.deps.interfaces ?? meshInterfacesNow, allNames: interfaceNamesNow, logger: this.log }, { names: c.interfaces.map((i) => i.name) });
    this.log.info({ publicKey: this.core.ownKey, interfaces: c.interfaces.map((i) => i.name), epoch: epoch.toString() }, 'starting');

    // Both before the first hello: the filter, so nothing is forwarded untunneled; the
    // tunnels of a previous run, so a neighbor's hello finds them adopted, not renegotiated.
    this.hooks = new TunnelHooks({ run: this.deps.run, logger: this.log.child({ component: 'hooks' }) }, c.hooks);
    await Promise.all([c.traffic.enabled && this.startTraffic(), c.tunnels.enabled && this.startTunnels()]);
    this.traffic?.schedule(); // adopted tunnels get their classes
    await this.startRouting();

    this.transport = await (this.deps.openTransport ?? UdpTransport.open)({ port: c.discovery.port, group: c.discovery.group, logger: this.deps.logger });
    this.transport.onDatagram((bytes, source) => {
      try {
        this.handle(this.core.receive(bytes, source, this.clock.now()));
      } catch (err) {
        // Untrusted bytes never throw by design; if a bug does, one datagram is lost, not the agent.
        this.log.error({ err, from: `${source.address}%${source.iface ?? ''}` }, 'handling a datagram failed (a bug): dropped');
      }
    });
    this.control = new ControlServer(c.controlSocket, this.commands.handle, this.log);
    await this.control.start();
    if (c.metrics.listen) await this.startMetrics(c.metrics.listen);

    this.pollInterfaces();
    // One housekeeping wakeup a second (each wakeup of a Node process costs more than the work).
    let beats = 0;
    const every = (ms: number) => beats % Math.max(1, Math.round(ms / T.INTERFACE_POLL_MS)) === 0;
    this.every(T.INTERFACE_POLL_MS, () => {
      beats++;
      this.pollInterfaces();
      if (every(T.REPLAY_SAVE_MS)) this.state.writeReplay(this.replay.toJSON());
      if (every(T.FULL_GC_MS) && this.deps.collectGarbage) {
        this.deps.collectGarbage();
        this.log.debug({ rssMiB: Math.round(process.memoryUsage.rss() / 104857.6) / 10 }, 'collected garbage');
      }
      // Whatever changed: a tunnel interface that vanished (its wireguard-go killed) is rebuilt.
      if (every(T.TUNNEL_CHECK_MS) && this.tunnels && !this.stopping) void this.reconcile.kick();
    });
    this.scheduleTick();
    const cpu = process.cpuUsage();
    this.log.info({ controlSocket: c.controlSocket, backend: this.tunnels?.backend.kind ?? 'none', cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, 'running');
  }

  private async startTraffic(): Promise<void> {
    const c = this.config;
    const control = new TrafficControl({ run: this.deps.run, logger: this.deps.logger, ...(this.deps.deviceIndex ? { deviceIndex: this.deps.deviceIndex } : {}) }, { backend: c.traffic.backend });
    this.traffic = new TrafficDriver(
      { control, clock: this.clock, logger: this.deps.logger, input: () => this.trafficInput(this.settings) },
      { debounceMs: T.TRAFFIC_DEBOUNCE_MS, retryMs: T.TRAFFIC_RETRY_MS, removeOnStop: c.traffic.removeOnStop },
    );
    await this.traffic.start();
  }

  private async startTunnels(): Promise<void> {
    const c = this.config;
    const backend = await (this.deps.wireguard ?? ((o) => detectBackend({ run: this.deps.run, logger: this.deps.logger }, o)))(
      { prefer: c.tunnels.backend, logFile: join(c.stateDir, 'wireguard-go.log'), secretDir: join(c.stateDir, 'keys'), commandTimeoutMs: c.commandTimeout },
    );
    this.tunnels = new TunnelReconciler({ backend, logger: this.deps.logger, changed: () => void this.reconcile.kick() });
    // Adopt what a previous run left (the state file vouches for it); the first pass removes the rest.
    const { adopted, actions } = this.core.adoptTunnels(await this.tunnels.adoptable(this.state.readTunnels(), this.identity.publicKey), this.clock.now());
    if (adopted.length) this.log.info({ tunnels: adopted }, 'adopted tunnels from the previous run');
    await this.reconcile.kick();
    this.handle(actions);
  }

  /** babeld, on the tunnels only (README "Routing"); its failure to start is the agent's. */
  private async startRouting(): Promise<void> {
    const c = this.config;
    if (c.routing.mode !== 'babeld') return;
    if (!c.tunnels.enabled) {
      this.log.warn('routing is "babeld" but tunnels are disabled: there is nothing to route over');
      return;
    }
    const options = {
      stateDir: join(c.stateDir, 'babeld'), mesh6: meshAddress6(this.identity.publicKey), mesh4: c.routing.meshAddress4, accept4: c.routing.accept4,
      gateway: c.routing.gateway,
    };
    this.routing = this.deps.routing?.(options) ?? new RoutingSupervisor({ run: this.deps.run, logger: this.deps.logger, clock: this.clock }, options);
    await this.routing.start();
    this.log.info({ mesh6: options.mesh6, mesh4: options.mesh4 ?? null, gateway: options.gateway }, 'routing with babeld');
    void this.syncRouting.kick();
  }

  /** The tunnels babeld and the hooks should know: configured, with a peer (their fe80 is on). */
  private tunnelsUp(): HookTunnel[] {
    return this.core.neighborList().flatMap((n) => {
      const t = n.tunnel;
      const key = fromBase64Strict(n.key, 32);
      if (!t?.configured || !t.peerKey || !key) return [];
      return [{ ifname: t.ifname, neighbor: n.key, alias: this.settings.neighbor(n.key).alias, address: this.core.tunnelAddress, peerAddress: tunnelLinkLocal(key) }];
    });
  }

  private async routeTunnels(): Promise<void> {
    if (this.stopping) return;
    const up = this.tunnelsUp();
    await Promise.all([this.routing?.set(up.map((t) => ({ ifname: t.ifname }))), this.hooks.set(up)]);
  }

  private every(ms: number, fn: () => void): void {
    this.timers.push(every(this.clock, ms, () => {
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, 'periodic task failed');
      }
    }));
  }

  /** Stops the loops; removes tunnels and rules unless configured to leave them. Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    for (const cancel of this.timers.splice(0)) cancel();
    this.tickTimer?.cancel();
    this.tickTimer = undefined;
    this.cancelWatch?.();
    this.cancelWatch = undefined;
    await this.transport?.close();
    await this.control?.stop();
    await this.metrics?.stop();
    if (!this.core) return; // start() failed before there was anything to undo
    this.state.writeReplay(this.replay.toJSON());
    await this.syncRouting.idle();
    // babeld first: it retracts its routes and removes them while the tunnels still carry them.
    await this.routing?.stop().catch((err) => this.log.error({ err: (err as Error).message }, 'stopping babeld failed'));
    if (this.config.tunnels.removeOnStop) await this.hooks?.stop();
    await this.traffic?.stop();
    if (this.tunnels) {
      await this.reconcile.idle();
      if (this.config.tunnels.removeOnStop) {
        const removed = await this.tunnels.removeAll().catch((err) => {
          this.log.error({ err: (err as Error).message }, 'removing tunnels failed');
          return [];
        });
        this.state.writeTunnels({}, true);
        if (removed.length) this.log.info({ tunnels: removed.length }, 'removed tunnels');
      } else {
        const kept = this.saveTunnels(true);
        await this.tunnels.removeAll(new Set(Object.keys(kept))).catch(() => []); // interfaces made ahead go
        this.log.info({ tunnels: Object.keys(kept).length }, 'left tunnels in place (tunnels.removeOnStop is false)');
      }
    }
    this.log.info('stopped');
  }

  // ------------------------------------------------------------------ core <-> edges

  private handle(actions: readonly Action[]): void {
    let events = false;
    for (const a of actions) {
      if (a.kind === 'send') this.transport?.send(a.iface, a.to, a.bytes);
      else {
        events = true;
        logEvent(this.log, a, (key) => this.settings.neighbor(key).alias);
      }
    }
    // The table changed: the kernel's guard learns who is proven now. Not urgent (strangers
    // still get their budget): once a second at most, and only if the proven sources moved.
    if (events && this.traffic) {
      const proven = JSON.stringify(this.core.provenSources());
      if (proven !== this.lastProven) {
        this.lastProven = proven;
        this.traffic.schedule(false, T.GUARD_DEBOUNCE_MS);
      }
    }
    // Nothing happened (a known neighbor's hello, the common case): nothing can have moved a
    // deadline earlier or changed the tunnels wanted (reached() looks itself after a setup).
    if (actions.length) this.afterChange();
  }

  /**
   * The core's state may have changed: its next deadline, tunnels to watch, tunnels wanted.
   * Looked at once per turn of the event loop, after every datagram that arrived in it: while
   * a LAN converges, datagrams come in bursts, and these looks (the next deadline, the wanted
   * tunnels and the interfaces missing) took 8 % of the agents' CPU on lan-20 (a profile), once
   * per datagram. Measured, lan-20 to convergence, alternating runs: agents' CPU 9.2/9.9/10.3
   * and 9.2/9.5/10.1 s against 11.4/11.7/11.7 and 11.8/11.5/10.9 s; convergence 8.7-9.7 s
   * against 10.3-10.8 s.
   */
  private afterChange(): void {
    // Inside a tick at once: the tick re-arms its own timer after it, never in a loop.
    if (this.ticking) return this.afterChangeNow();
    if (this.afterChangeQueued) return;
    this.afterChangeQueued = true;
    setImmediate(() => {
      this.afterChangeQueued = false;
      this.afterChangeNow();
    });
  }
  /** An afterChange is waiting for the end of this turn of the event loop. */
  private afterChangeQueued = false;

  private afterChangeNow(): void {
    if (this.stopping || !this.started) return;
    if (!this.ticking) this.scheduleTick();
    this.scheduleWatch();
    if (this.tunnels && this.desiredChanged()) {
      // New interfaces start at once, in the background, even while a pass runs.
      void this.tunnels.makeAhead(this.core.desiredTunnels(this.clock.now())).catch(() => {});
      void this.reconcile.kick();
    }
  }

  /** Cheap test (a string compare) that the tunnels the core wants differ from the last pass. */
  private desiredChanged(): boolean {
    return this.desiredKey() !== this.lastDesired;
  }

  private desiredKey(): string {
    return this.core.desiredTunnels(this.clock.now()).map((d) => `${d.ifname}:${d.intent?.generation ?? '-'}:${d.applied}:${d.due}`).join(',');
  }

  /** One reconcile pass: the core's desired tunnels onto the kernel, the outcomes back to the core. */
  private async reconcileTunnels(): Promise<void> {
    if (!this.tunnels || this.stopping) return;
    this.lastDesired = this.desiredKey();
    const started = performance.now();
    const reached = await this.tunnels.set(this.core.desiredTunnels(this.clock.now()));
    this.reached(reached, performance.now() - started);
  }

  private reached(r: TunnelsReached, ms: number): void {
    const now = this.clock.now();
    const actions: Action[] = [];
    for (const o of r.applied) {
      actions.push(...(o.ok ? this.core.tunnelApplied(o.ifname, o.generation, now) : this.core.tunnelFailed(o.ifname, o.generation, { portBusy: o.portBusy, error: o.error }, now)));
    }
    if (r.applied.length) {
      const cpu = process.cpuUsage();
      this.log.debug({ tunnels: r.applied.length, ms: Math.round(ms), cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, 'applied tunnels');
    }
    if (r.removed.length) this.log.debug({ tunnels: r.removed }, 'removed tunnel interfaces');
    this.saveTunnels(false);
    if (r.applied.length || r.removed.length || r.rebuilt.length) this.traffic?.schedule(r.rebuilt.length > 0);
    this.handle(actions);
    this.afterChange(); // a setup can change what is wanted with nothing to send (a port moved)
    void this.syncRouting.kick();
  }

  private pollInterfaces(): void {
    const present = this.interfaces.poll();
    this.transport?.setInterfaces(present.filter((p) => p.linkLocal).map((p) => p.name));
    // The same interfaces with the same addresses as a second ago (nearly every poll): nothing
    // for the core to learn; a hello due now goes out on its own tick.
    const key = present.map((p) => `${p.name}=${p.linkLocal ?? ''}`).join(',');
    if (key === this.lastInterfaces) return;
    this.lastInterfaces = key;
    this.handle(this.core.setInterfaces(present, this.clock.now()));
    this.afterChange(); // an interface that went moves deadlines with nothing to send
  }

  /**
   * Arms the clock for the core's next deadline (a hello, an expiry, a retry): nothing runs on a
   * fixed beat when nothing is due. Called after everything that can bring a deadline forward.
   * A deadline tick did not clear (work waiting on something else) is looked at again a tick
   * interval later, never in a loop.
   */
  private scheduleTick(afterTick = false): void {
    if (this.stopping) return;
    const now = this.clock.now();
    let at = this.core.nextDeadline(now);
    if (afterTick && at <= now) at = now + T.TICK_MS;
    if (this.tickTimer && this.tickTimer.at <= at) return;
    this.tickTimer?.cancel();
    const cancel = this.clock.setTimeout(() => {
      this.tickTimer = undefined;
      this.ticking = true;
      try {
        this.handle(this.core.tick(this.clock.now()));
        this.scheduleWatch();
      } catch (err) {
        this.log.error({ err }, 'tick failed');
      } finally {
        this.ticking = false;
      }
      this.scheduleTick(true);
    }, at - now);
    this.tickTimer = { at, cancel };
  }

  /** Fresh and quiet tunnels are asked for handshakes every WATCH_POLL_MS; none: no timer. */
  private scheduleWatch(): void {
    if (this.cancelWatch || this.stopping || !this.tunnels || !this.core.tunnelsToWatch().length) return;
    this.cancelWatch = this.clock.setTimeout(() => {
      this.cancelWatch = undefined;
      void this.watchTunnels().finally(() => this.scheduleWatch());
    }, T.WATCH_POLL_MS);
  }

  /** Fresh and quiet tunnels: does WireGuard report a handshake, and traffic? */
  private async watchTunnels(): Promise<void> {
    if (!this.tunnels || this.watching) return;
    const names = this.core.tunnelsToWatch();
    if (!names.length) return;
    this.watching = true;
    try {
      for (const [ifname, stats] of await this.tunnels.observe(names, this.clock.wall())) this.handle(this.core.tunnelObserved(ifname, stats, this.clock.now()));
      // Observations move deadlines (a quiet tunnel's liveness) without a word: look again.
      this.afterChange();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'reading tunnel stats failed');
    } finally {
      this.watching = false;
    }
  }

  // ------------------------------------------------------------------ settings and traffic

  private trafficInput(settings: Settings) {
    const c = this.config;
    const tunnels = this.core.neighborList().flatMap((n) =>
      n.tunnel?.configured ? [{ ifname: n.tunnel.ifname, neighbor: n.key, meshIface: n.tunnel.peerEndpoint?.zone ?? n.iface ?? '' }] : []);
    return { ...trafficInput(trafficTopology(c), settings, tunnels), discovery: { port: c.discovery.port, known: this.core.provenSources() } };
  }

  /** An operator's change: the kernel first (refused: nothing changes), then settings.json. */
  private async changeSettings(next: Settings): Promise<void> {
    const commit = () => {
      this.state.writeSettings(next.stored);
      this.settings = next;
      this.log.info({ share: next.share, neighbors: next.stored.neighbors }, 'settings changed');
    };
    if (this.traffic) await this.traffic.change(this.trafficInput(next), commit);
    else commit();
  }

  // ------------------------------------------------------------------ state files

  /** tunnels.json: which interface is which neighbor's, for adoption after a crash. */
  private saveTunnels(force: boolean): Record<string, StoredTunnel> {
    const records: Record<string, StoredTunnel> = {};
    for (const n of this.core.neighborList()) {
      const t = n.tunnel;
      if (t?.configured) records[t.ifname] = { neighbor: n.key, role: t.role, listenPort: t.listenPort, iface: t.peerEndpoint?.zone ?? n.iface ?? '' };
    }
    this.state.writeTunnels(records, force);
    return records;
  }

  /** Loaded only when configured: prom-client costs start-up time nobody else should pay. */
  private async startMetrics(listen: { host: string; port: number }): Promise<void> {
    const { buildRegistry, MetricsServer } = await import('./metrics.js');
    const server = new MetricsServer(buildRegistry(this.commands.metricsSource()), listen, this.log);
    await server.start();
    this.metrics = server;
  }

  /** The control socket's handler, for tests that drive an agent in-process. */
  command(cmd: string, args: Record<string, unknown> = {}): Promise<unknown> {
    return this.commands.handle(cmd, args);
  }

  /** Our identity key, base64. */
  get publicKey(): string {
    return toBase64(this.identity.publicKey);
  }
}
