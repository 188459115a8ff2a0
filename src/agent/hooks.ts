/**
 * Hooks for operators who run another routing daemon (bird, olsrd, ...) over the tunnels: an
 * executable run when a tunnel comes up (`hooks.tunnelUp`) and when it goes (`hooks.tunnelDown`),
 * with what it needs in its environment:
 *   SCROOGE_EVENT        tunnel-up | tunnel-down
 *   SCROOGE_IFNAME       the tunnel interface (sc...)
 *   SCROOGE_NEIGHBOR     the neighbor's public key (base64)
 *   SCROOGE_ALIAS        its alias, or empty
 *   SCROOGE_ADDRESS      this node's address on the tunnel (fe80::/64, PROTOCOL.md §6)
 *   SCROOGE_PEER_ADDRESS the neighbor's address on it
 * A hook that fails or hangs (10 s) is logged and never stops the agent. Hooks run one at a
 * time, in the order the tunnels changed.
 */
import type { Logger } from 'pino';
import type { Runner } from '../system/runner.js';

export interface HookTunnel {
  ifname: string;
  neighbor: string;
  alias: string | undefined;
  address: string;
  peerAddress: string;
}

const HOOK_TIMEOUT_MS = 10_000;

export class TunnelHooks {
  /** The tunnels the tunnelUp hook was last told about (so each change is told once). */
  private told = new Map<string, HookTunnel>();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: { run: Runner; logger: Logger },
    private readonly options: { tunnelUp?: string | undefined; tunnelDown?: string | undefined },
  ) {}

  get enabled(): boolean {
    return this.options.tunnelUp !== undefined || this.options.tunnelDown !== undefined;
  }

  /** The tunnels up now: hooks run for the ones that came and the ones that went. */
  set(up: readonly HookTunnel[]): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const now = new Map(up.map((t) => [t.ifname, t]));
    const gone = [...this.told.values()].filter((t) => !now.has(t.ifname));
    const came = up.filter((t) => !this.told.has(t.ifname));
    this.told = now;
    for (const t of gone) this.queue('tunnel-down', this.options.tunnelDown, t);
    for (const t of came) this.queue('tunnel-up', this.options.tunnelUp, t);
    return this.idle();
  }

  /** Tells the tunnelDown hook that every tunnel goes (the agent stops and removes them). */
  stop(): Promise<void> {
    return this.set([]);
  }

  idle(): Promise<void> {
    return this.chain.then(() => undefined);
  }

  private queue(event: string, file: string | undefined, t: HookTunnel): void {
    if (file === undefined) return;
    this.chain = this.chain.then(async () => {
      const env = {
        SCROOGE_EVENT: event, SCROOGE_IFNAME: t.ifname, SCROOGE_NEIGHBOR: t.neighbor, SCROOGE_ALIAS: t.alias ?? '',
        SCROOGE_ADDRESS: t.address, SCROOGE_PEER_ADDRESS: t.peerAddress,
      };
      try {
        await this.deps.run([file], { env, timeoutMs: HOOK_TIMEOUT_MS });
        this.deps.logger.info({ hook: file, event, ifname: t.ifname, neighbor: t.neighbor }, `hook ${event} ran`);
      } catch (err) {
        this.deps.logger.warn({ hook: file, event, ifname: t.ifname, err: (err as Error).message }, `hook ${event} failed (the agent goes on)`);
      }
    });
  }
}
