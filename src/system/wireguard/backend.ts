/**
 * What a WireGuard backend does for the agent, and the part both backends share: create the
 * missing interfaces, configure each, give them their address in one `ip -batch`, remove them.
 * Everything they ask of the system goes through a small host interface (`WireGuardHost`), so
 * a stateful fake (test/unit/fakewireguard.ts) can stand in for the kernel and wireguard-go.
 */
import type { Logger } from 'pino';
import type { TunnelIntent } from '../../neighbors/core.js';
import { isTunnelInterfaceName } from '../../neighbors/names.js';
import { mapLimited } from '../helpers.js';
import type { Runner } from '../runner.js';
import { linkCommands, type LiveTunnel } from './text.js';

export type BackendKind = 'kernel' | 'userspace';

export type ApplyOutcome =
  | { ifname: string; generation: number; ok: true }
  | { ifname: string; generation: number; ok: false; portBusy: boolean; error: string };

export interface WireGuardBackend {
  readonly kind: BackendKind;
  /**
   * Making an interface takes long (a wireguard-go process start: tens of ms, seconds on a
   * busy machine), so new ones are made in the background (prepare) and configured once they
   * exist, never holding up the tunnels that are ready. A kernel interface is made at once.
   */
  readonly slowToCreate: boolean;
  /** Scrooge tunnel interfaces present in this network namespace. */
  listTunnels(): Promise<string[]>;
  /**
   * Creates missing interfaces and configures all given ones. `owned`: interfaces that hold
   * a configuration of ours already (their port is their own: no need to check it is free).
   * Never throws for one tunnel: each gets an outcome.
   */
  apply(intents: readonly TunnelIntent[], owned: ReadonlySet<string>): Promise<ApplyOutcome[]>;
  /**
   * Creates the interface for a tunnel that is probably coming, so the slow part is done while
   * the negotiation runs. Unconfigured; apply() finishes it.
   */
  prepare(ifname: string): Promise<void>;
  remove(ifnames: readonly string[]): Promise<void>;
  read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>>;
  /** True if nothing holds UDP `port` (a tunnel's listen port). */
  portFree(port: number): Promise<boolean>;
}

/** What both backends ask of the system. */
export interface WireGuardHost {
  run: Runner;
  /** Names of the links in this network namespace. */
  links(): Promise<string[]>;
  /** True if nothing holds UDP `port` (v4 or v6). */
  portFree(port: number): Promise<boolean>;
}

/** Interfaces configured at once (each is a UAPI exchange or a `wg setconf`). */
const CONFIGURE_PARALLEL = 8;

export abstract class BaseBackend implements WireGuardBackend {
  abstract readonly kind: BackendKind;
  abstract readonly slowToCreate: boolean;

  constructor(protected readonly host: WireGuardHost, protected readonly log: Logger | undefined) {}

  async listTunnels(): Promise<string[]> {
    return (await this.host.links()).filter(isTunnelInterfaceName);
  }

  portFree(port: number): Promise<boolean> {
    return this.host.portFree(port);
  }

  /** Creates the interfaces in `missing`; returns an error per interface that failed. */
  protected abstract create(missing: readonly TunnelIntent[]): Promise<Map<string, string>>;

  abstract prepare(ifname: string): Promise<void>;

  /** Resolves once the interface can be configured (a prepared daemon may still be starting). */
  protected async ready(_ifname: string): Promise<void> {}

  /** Writes the whole configuration of one tunnel (replacing its peer). */
  protected abstract configure(t: TunnelIntent): Promise<void>;

  abstract read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>>;

  async apply(intents: readonly TunnelIntent[], owned: ReadonlySet<string>): Promise<ApplyOutcome[]> {
    const failed = new Map<string, { error: string; portBusy: boolean }>();
    const missing: TunnelIntent[] = [];
    // What exists is reconfigured, what does not is created: the system decides, not what the
    // caller believed (an interface may have been prepared, or may have vanished).
    const existing = new Set(await this.listTunnels());
    await Promise.all(intents.map(async (t) => {
      if (owned.has(t.ifname) && existing.has(t.ifname)) return; // its port is its own
      if (!(await this.host.portFree(t.listenPort))) failed.set(t.ifname, { error: `UDP port ${t.listenPort} is in use`, portBusy: true });
      else if (!existing.has(t.ifname)) missing.push(t); // else prepared: only configuring is left
    }));
    for (const [ifname, error] of await this.create(missing)) failed.set(ifname, { error, portBusy: false });
    const ready = intents.filter((t) => !failed.has(t.ifname));
    await mapLimited(ready, CONFIGURE_PARALLEL, async (t) => {
      try {
        await this.ready(t.ifname);
        await this.configure(t);
      } catch (err) {
        failed.set(t.ifname, { error: (err as Error).message, portBusy: /in use/.test((err as Error).message) });
      }
    });
    const configured = ready.filter((t) => !failed.has(t.ifname));
    if (configured.length) {
      try {
        await this.host.run(['ip', '-batch', '-'], { input: configured.flatMap(linkCommands).join('\n') + '\n' });
      } catch (err) {
        // One bad line stops the batch: fall back to one interface at a time to find it.
        for (const t of configured) {
          try {
            await this.host.run(['ip', '-batch', '-'], { input: linkCommands(t).join('\n') + '\n' });
          } catch (e) {
            failed.set(t.ifname, { error: (e as Error).message, portBusy: false });
          }
        }
        this.log?.debug({ err: (err as Error).message }, 'address batch failed, applied one by one');
      }
    }
    return intents.map((t) => {
      const f = failed.get(t.ifname);
      return f ? { ifname: t.ifname, generation: t.generation, ok: false, ...f } : { ifname: t.ifname, generation: t.generation, ok: true };
    });
  }

  async remove(ifnames: readonly string[]): Promise<void> {
    if (!ifnames.length) return;
    // Deleting the link also ends a wireguard-go daemon (it watches its TUN device).
    // -force: keep going past interfaces that are already gone.
    await this.host.run(['ip', '-force', '-batch', '-'], { input: ifnames.map((n) => `link del dev ${n}`).join('\n') + '\n', okExitCodes: [0, 1] });
  }
}
