/**
 * The agent's traffic-control component: keeps the kernel's packet filter and tc trees in step
 * with the agent's tunnels and settings (the planner is src/traffic, the applier
 * src/system/traffic.ts). Applies are serialized; tunnel changes come in bursts and are applied
 * once per burst; an operator's change is applied at once and reported: refused by the kernel,
 * it is undone and the caller hears why (the setting is then not kept).
 */
import type { Logger } from 'pino';
import { ScroogeError } from '../errors.js';
import type { ApplyReport, FilterBackend, LiveTree, TrafficControl } from '../system/traffic.js';
import type { TrafficInput } from '../traffic/plan.js';
import type { Clock } from '../system/clock.js';

type Input = Omit<TrafficInput, 'leaf'>;

export interface TrafficDriverOptions {
  /** How long a burst of tunnel changes is waited for before one apply. */
  debounceMs: number;
  /** A failed background apply is tried again after this. */
  retryMs: number;
  /** Remove the filter and the trees on stop. */
  removeOnStop: boolean;
}

export class TrafficDriver {
  private readonly log: Logger | undefined;
  /** Applies run one after another on this chain. */
  private chain: Promise<unknown> = Promise.resolve();
  /** The input last applied, as text: an apply with the same input changes nothing. */
  private appliedKey = '';
  private timer: { at: number; cancel: () => void } | undefined;
  private forceNext = false;
  private state: 'new' | 'started' | 'stopped' = 'new';

  constructor(
    private readonly deps: {
      control: TrafficControl;
      clock: Clock;
      logger?: Logger;
      /** What the kernel should hold now (tunnels, settings, interfaces). */
      input: () => Input;
    },
    private readonly options: TrafficDriverOptions,
  ) {
    this.log = deps.logger?.child({ component: 'traffic' });
  }

  get backend(): FilterBackend {
    return this.deps.control.backend;
  }

  /** Picks the filter backend and installs the filter: nothing is forwarded untunneled from here on. */
  async start(): Promise<void> {
    if (this.state !== 'new') return;
    this.state = 'started';
    await this.deps.control.start();
    await this.serialized(() => this.applyInput(this.deps.input()));
  }

  /**
   * Applies the current input after `delayMs` (once for a whole burst; an earlier request
   * wins). `force`: even if the input looks unchanged (a tunnel interface was rebuilt: its tree
   * went with it).
   */
  schedule(force = false, delayMs = this.options.debounceMs): void {
    if (this.state !== 'started') return;
    this.forceNext ||= force;
    const at = this.deps.clock.now() + delayMs;
    if (this.timer && this.timer.at <= at) return;
    this.timer?.cancel();
    const cancel = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      void this.serialized(async () => {
        const force = this.forceNext;
        this.forceNext = false;
        try {
          await this.applyInput(this.deps.input(), force);
        } catch (err) {
          this.log?.error({ err: (err as Error).message }, 'applying traffic control failed; will retry');
          this.deps.clock.setTimeout(() => this.schedule(true), this.options.retryMs);
        }
      });
    }, delayMs);
    this.timer = { at, cancel };
  }

  /**
   * An operator's change: applies `input` (the current one with the change) at once, after any
   * apply in progress, and runs `commit` once the kernel holds it. If the kernel refuses, what
   * it held before is put back, `commit` does not run, and the error says why.
   */
  change(input: Input, commit: () => void): Promise<void> {
    return this.serialized(async () => {
      if (this.state !== 'started') {
        commit();
        return;
      }
      try {
        await this.applyInput(input);
      } catch (err) {
        this.log?.warn({ err: (err as Error).message }, 'the kernel refused a traffic change; putting back what it had');
        await this.applyInput(this.deps.input(), true).catch((e) => {
          this.log?.error({ err: (e as Error).message }, 'putting back the traffic rules failed; will retry');
          this.schedule(true);
        });
        throw new ScroogeError('ETRAFFIC', `the kernel refused the change: ${(err as Error).message}`, 'nothing was changed; see the agent log');
      }
      commit();
    });
  }

  untunneledDrops(): Promise<number> {
    return this.deps.control.untunneledDrops();
  }

  discoveryDrops(): Promise<number> {
    return this.deps.control.discoveryDrops();
  }

  liveClasses(): Promise<LiveTree[]> {
    return this.deps.control.liveClasses();
  }

  /** Waits for applies in progress; removes the filter and the trees if configured to. */
  async stop(): Promise<void> {
    if (this.state !== 'started') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopped';
    this.timer?.cancel();
    this.timer = undefined;
    await this.chain.catch(() => {});
    if (!this.options.removeOnStop) return;
    await this.deps.control.stop().catch((err) => this.log?.error({ err: (err as Error).message }, 'removing traffic rules failed'));
    this.log?.info('removed packet filter and shaping');
  }

  private async applyInput(input: Input, force = false): Promise<ApplyReport | undefined> {
    const key = JSON.stringify(input);
    if (!force && key === this.appliedKey) return undefined;
    this.appliedKey = '';
    const report = await this.deps.control.apply(input);
    this.appliedKey = key;
    if (report.filterChanged || report.tcCommands) this.log?.debug({ ...report, tunnels: input.tunnels.length }, 'traffic applied');
    return report;
  }

  private serialized<T>(job: () => Promise<T>): Promise<T> {
    const next = this.chain.then(job, job);
    this.chain = next.catch(() => {});
    return next;
  }
}
