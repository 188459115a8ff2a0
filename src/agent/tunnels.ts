/**
 * The tunnel reconciler: makes the kernel's WireGuard interfaces match what the core wants
 * (after Tailscale's wgengine/router `Set`). `set(desired)` creates what is missing, configures
 * what the core has not seen applied, rebuilds what vanished (deleted by hand, its wireguard-go
 * killed), and removes what is not wanted — adding before removing — and reports the state it
 * really reached per tunnel. It keeps no record of what the kernel holds: the core does (its
 * `applied` / `configured` flags, from the outcomes reported back), and which interfaces exist
 * is asked of the system each time (a directory listing).
 * What it does keep is its own work in flight: interfaces being made ahead of their tunnel.
 */
import type { Logger } from 'pino';
import type { AdoptedTunnel, DesiredTunnel, TunnelStats } from '../neighbors/core.js';
import { tunnelInterfaceName } from '../neighbors/names.js';
import { fromBase64Strict } from '../protocol/bytes.js';
import { withZone } from '../protocol/address.js';
import type { ApplyOutcome, LiveTunnel, WireGuardBackend } from '../system/wireguard/index.js';
import type { StoredTunnel } from './state.js';

export interface TunnelsReached {
  /** One outcome per tunnel set up in this pass. */
  applied: ApplyOutcome[];
  /** Configured tunnels whose interface had vanished, set up again (their tc tree is new). */
  rebuilt: string[];
  /** Interfaces removed: nobody wants them. */
  removed: string[];
}

export class TunnelReconciler {
  private readonly log: Logger | undefined;
  /** Interfaces being made in the background (prepare), so stop() can wait for them. */
  private readonly preparing = new Map<string, Promise<void>>();
  /** Interfaces of new tunnels whose making failed, to report on the next pass. */
  private readonly startFailures = new Map<string, string>();
  private running = false;

  constructor(
    private readonly deps: {
      backend: WireGuardBackend;
      logger?: Logger;
      /** Called when work started by set() in the background has finished (look again). */
      changed?: () => void;
    },
  ) {
    this.log = deps.logger?.child({ component: 'tunnels' });
  }

  get backend(): WireGuardBackend {
    return this.deps.backend;
  }

  /**
   * Tunnels a previous run left that the state file vouches for, as the core adopts them:
   * the interface name must be ours for the neighbor the file names. The rest are not
   * desired, so the next set() removes them.
   */
  async adoptable(stored: Readonly<Record<string, StoredTunnel>>, ownKey: Uint8Array): Promise<AdoptedTunnel[]> {
    const live = await this.deps.backend.listTunnels();
    if (!live.length) return [];
    const configs = await this.deps.backend.read(live);
    const out: AdoptedTunnel[] = [];
    for (const ifname of live) {
      const rec = stored[ifname];
      const cfg = configs.get(ifname);
      const neighbor = rec && fromBase64Strict(rec.neighbor, 32);
      if (!rec || !cfg || !neighbor || tunnelInterfaceName(ownKey, neighbor) !== ifname) continue;
      out.push({
        ifname, neighbor, role: rec.role, privateKey: cfg.privateKey, listenPort: cfg.listenPort, iface: rec.iface,
        // wireguard-go reports a link-local endpoint without its zone; the state file knows it.
        peer: cfg.peer?.endpoint ? { tunnelKey: cfg.peer.publicKey, endpoint: withZone(cfg.peer.endpoint, cfg.peer.endpoint.zone ?? rec.iface) } : undefined,
      });
    }
    return out;
  }

  /** Makes the kernel match `desired`. Not reentrant: the agent serializes calls. */
  async set(desired: readonly DesiredTunnel[]): Promise<TunnelsReached> {
    if (this.running) throw new TypeError('TunnelReconciler.set() is already running');
    this.running = true;
    try {
      return await this.reconcile(desired);
    } finally {
      this.running = false;
    }
  }

  private async reconcile(desired: readonly DesiredTunnel[]): Promise<TunnelsReached> {
    const backend = this.deps.backend;
    const live = new Set(await backend.listTunnels());
    const wanted = new Set(desired.map((d) => d.ifname));

    const rebuilt = desired.filter((d) => d.intent && d.configured && !live.has(d.ifname) && !this.preparing.has(d.ifname)).map((d) => d.ifname);
    for (const ifname of rebuilt) this.log?.warn({ ifname }, 'tunnel interface vanished; rebuilding it');
    const needed = desired.filter((d) => d.intent && ((!d.applied && d.due) || rebuilt.includes(d.ifname)));
    // Where making an interface is slow, a new tunnel's interface is made in the background and
    // the tunnel configured on a later pass, once it exists: one slow start never holds up the
    // tunnels that are ready. A vanished one is rebuilt here and now (the core thinks it is set).
    const early: ApplyOutcome[] = [];
    const todo: DesiredTunnel[] = [];
    for (const d of needed) {
      if (!backend.slowToCreate || live.has(d.ifname) || rebuilt.includes(d.ifname)) todo.push(d);
      else {
        const failed = this.startFailures.get(d.ifname);
        this.startFailures.delete(d.ifname);
        if (failed !== undefined) early.push({ ifname: d.ifname, generation: d.intent!.generation, ok: false, portBusy: false, error: failed });
        else if (!this.preparing.has(d.ifname) && !(await backend.portFree(d.intent!.listenPort)))
          early.push({ ifname: d.ifname, generation: d.intent!.generation, ok: false, portBusy: true, error: `UDP port ${d.intent!.listenPort} is in use` });
      }
    }
    const reported = new Set(early.map((o) => o.ifname));
    await this.makeAhead(desired.filter((d) => !reported.has(d.ifname)), live);
    const owned = new Set(desired.filter((d) => d.configured).map((d) => d.ifname));
    const applied = [...early, ...(todo.length ? await backend.apply(todo.map((d) => d.intent!), owned) : [])];

    // Removed last, and not while being made (it is removed once it exists, on a later pass).
    const removed = [...live].filter((n) => !wanted.has(n) && !this.preparing.has(n));
    if (removed.length) await backend.remove(removed);
    return { applied, rebuilt, removed };
  }

  /**
   * Starts making every desired interface that does not exist yet, in the background: those
   * made ahead for two-way neighbors and, where that is slow, those of new tunnels (whose port is
   * free). Cheap and safe to call at any time, also while a pass runs: the agent calls it as
   * soon as the core wants something new. A configured tunnel that vanished is left to the pass.
   */
  async makeAhead(desired: readonly DesiredTunnel[], live?: ReadonlySet<string>): Promise<void> {
    const slow = this.deps.backend.slowToCreate;
    const wanted = desired.filter((d) => !this.preparing.has(d.ifname) && (!d.intent || (slow && !d.configured && !d.applied && d.due)));
    if (!wanted.length) return;
    const have = live ?? new Set(await this.deps.backend.listTunnels());
    for (const d of wanted) {
      if (have.has(d.ifname) || this.preparing.has(d.ifname)) continue;
      if (d.intent && !(await this.deps.backend.portFree(d.intent.listenPort))) continue; // the pass reports it
      this.prepare(d.ifname, d.intent !== undefined);
    }
  }

  private prepare(ifname: string, forTunnel: boolean): void {
    if (this.preparing.has(ifname)) return;
    const p = this.deps.backend.prepare(ifname).then(
      () => undefined,
      (err: Error) => {
        // A tunnel waiting for it hears of the failure on the next pass (the core backs off).
        if (forTunnel) this.startFailures.set(ifname, err.message);
        this.log?.debug({ ifname, err: err.message }, 'making a tunnel interface failed');
      },
    ).finally(() => {
      this.preparing.delete(ifname);
      this.deps.changed?.();
    });
    this.preparing.set(ifname, p);
  }

  read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>> {
    return ifnames.length ? this.deps.backend.read(ifnames) : Promise.resolve(new Map());
  }

  /**
   * What WireGuard says about these tunnels, for the core: handshake ages (WireGuard's times
   * are wall-clock, the core's monotonic: an age means the same on both) and bytes received.
   */
  async observe(ifnames: readonly string[], wallNow: number): Promise<[string, TunnelStats][]> {
    const live = await this.read(ifnames);
    return [...live].flatMap(([ifname, t]) => {
      if (!t.peer) return [];
      const { latestHandshakeMs, rxBytes, txBytes } = t.peer.stats;
      return [[ifname, { handshakeAgoMs: latestHandshakeMs > 0 ? Math.max(0, wallNow - latestHandshakeMs) : undefined, rxBytes, txBytes, peerKey: t.peer.publicKey }]];
    });
  }

  /** Removes every tunnel interface but those in `keep`, once nothing is being made. */
  async removeAll(keep: ReadonlySet<string> = new Set()): Promise<string[]> {
    while (this.preparing.size) await Promise.allSettled([...this.preparing.values()]);
    const gone = (await this.deps.backend.listTunnels()).filter((n) => !keep.has(n));
    if (gone.length) await this.deps.backend.remove(gone);
    return gone;
  }
}
