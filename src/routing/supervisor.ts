/**
 * The routing component: supervises one babeld for the node and makes the set of interfaces it
 * runs on match the tunnels the agent wants.
 *
 *   start()      config in the state directory, mesh addresses on lo, forwarding on, babeld
 *                spawned, control socket connected
 *   set(want)    adds the wanted tunnels to babeld, removes the others, and returns the state
 *                each one really reached (up / down / waiting / draining / error)
 *   routes()     babeld's routes (prefix, via, interface, metric, installed)
 *   stop()       babeld stopped; no process, socket, pid/state/config file, route or address of
 *                ours is left
 *
 * If babeld dies, it is started again (backoff 100 ms doubling to 10 s, reset after 30 s of
 * life) with every wanted tunnel re-added; the routes a killed babeld left are flushed first
 * (a new babeld takes an existing route with another next hop for its own: route.c, EEXIST).
 *
 * `flush interface` is only sent for an interface that babeld reports down and that has no
 * neighbour left: babeld 1.12.1 frees the interface but keeps its neighbours pointing at it (a
 * use-after-free, fixed in 1.14). A tunnel that goes is therefore "draining" for a few seconds
 * (its routes are gone as soon as its link is) until babeld has expired its neighbour.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync, promises as fs, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ScroogeError } from '../errors.js';
import { systemClock, type Clock } from '../system/clock.js';
import type { Runner } from '../system/runner.js';
import { BabeldClient, BabeldError, type BabeldControl } from './client.js';
import {
  DEFAULT_TIMERS, PLACEHOLDER_INTERFACE, babeldConfig, babeldPaths, checkInterfaceName, flushInterfaceCommand, interfaceCommand,
  type BabeldPaths, type TunnelTimers,
} from './config.js';
import { INFINITY, type BabeldTable } from './protocol.js';

export interface BabeldExit {
  code: number | null;
  signal: string | null;
  error?: string;
}

export interface BabeldProcess {
  readonly pid: number | undefined;
  readonly exited: Promise<BabeldExit>;
  kill(signal: 'SIGTERM' | 'SIGKILL'): void;
}

export type SpawnBabeld = (argv: readonly string[], options: { logFile: string }) => BabeldProcess;

/** Reads and writes /proc/sys keys such as `net/ipv4/ip_forward`. */
export interface Sysctl {
  read(key: string): Promise<string | undefined>;
  write(key: string, value: string): Promise<void>;
}

export interface RoutingDeps {
  /** `ip` commands: mesh addresses on lo, flushing babeld's routes. */
  run: Runner;
  logger?: Logger;
  clock?: Clock;
  spawn?: SpawnBabeld;
  connect?: (socketPath: string) => Promise<BabeldControl>;
  sysctl?: Sysctl;
  /** Full path of an executable, or undefined if it is not installed. */
  which?: (command: string) => Promise<string | undefined>;
}

export interface RoutingOptions {
  stateDir: string;
  /** The node's mesh addresses (address.ts): IPv6 always, IPv4 if configured. */
  mesh6: string;
  mesh4?: string | undefined;
  /** IPv4 /32s accepted from neighbours lie in this prefix (default: any). */
  accept4?: string | undefined;
  /** Announce this node's default routes (a gateway). */
  gateway?: { ipv6: boolean; ipv4: boolean } | undefined;
  timers?: TunnelTimers;
  /** Turn IPv4 and IPv6 forwarding on at start (restored at stop), or leave them alone. */
  forwarding?: 'enable' | 'leave';
  binary?: string;
}

/** Tunables with their why. */
export const ROUTING_DEFAULTS = {
  /** First restart soon (a crash is rare, routes should come back within seconds)... */
  restartMinMs: 100,
  /** ...but a babeld that dies at once every time must not spin. */
  restartMaxMs: 10_000,
  /** A babeld that lived this long is healthy again: its next death restarts at restartMinMs. */
  stableAfterMs: 30_000,
  /** How often a draining interface is looked at (its neighbour expires in ~9 s at 0.5 s hellos). */
  drainCheckMs: 1000,
  /** babeld opens its socket within milliseconds; on a loaded 2-core machine allow seconds. */
  startTimeoutMs: 5000,
  /** SIGTERM: babeld sends retractions and removes its routes (~50 ms), then exits. */
  stopTimeoutMs: 3000,
  /** Announced routes go in bursts (an uplink going down takes v4 and v6): one restart for them. */
  relaunchDebounceMs: 200,
} as const;

export interface DesiredInterface {
  ifname: string;
}

export type InterfaceStateName =
  /** babeld runs on it (it has its fe80 address). */
  | 'up'
  /** babeld has it but cannot use it yet: no link, or no link-local address. */
  | 'down'
  /** babeld is not running (being restarted); added when it is back. */
  | 'waiting'
  /** Not wanted any more; kept until babeld has dropped its neighbour (see header). */
  | 'draining'
  /** babeld refused it. */
  | 'error';

export interface InterfaceState {
  ifname: string;
  state: InterfaceStateName;
  linkLocal?: string | undefined;
  neighbours: number;
  error?: string | undefined;
}

export interface RouteRow {
  prefix: string;
  /** Neighbour's link-local address (the next hop). */
  via: string;
  ifname: string;
  /** 65535 (INFINITY): retracted. babeld 1.12.1 keeps such a route in the kernel until it expires. */
  metric: number;
  refmetric: number;
  installed: boolean;
  /** metric < INFINITY: traffic can use it. */
  reachable: boolean;
  routerId: string;
}

export interface RoutingStatus {
  running: boolean;
  pid: number | undefined;
  /** babeld died and was started again. */
  restarts: number;
  /** babeld was stopped and started on purpose (an announced route went; see relaunch). */
  relaunches: number;
  lastExit: BabeldExit | undefined;
  interfaces: InterfaceState[];
}

const PROC_SYS = '/proc/sys';

export const procSysctl: Sysctl = {
  async read(key) {
    try {
      return (await fs.readFile(join(PROC_SYS, key), 'utf8')).trim();
    } catch {
      return undefined;
    }
  },
  async write(key, value) {
    await fs.writeFile(join(PROC_SYS, key), value);
  },
};

/** Starts babeld in a session of its own, output to its log file (never a pipe that could fill). */
export const spawnBabeld: SpawnBabeld = (argv, { logFile }) => {
  const fd = openSync(logFile, 'a', 0o600);
  try {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, LC_ALL: 'C' } });
    const exited = new Promise<BabeldExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => resolve({ code: null, signal: null, error: err.message }));
    });
    child.unref();
    return {
      pid: child.pid,
      exited,
      kill: (signal) => {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      },
    };
  } finally {
    closeSync(fd);
  }
};

/** PATH plus the sbin folders (babeld is /usr/sbin/babeld; sudo and cron often drop sbin). */
export async function which(command: string): Promise<string | undefined> {
  if (command.includes('/')) return (await executable(command)) ? command : undefined;
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean);
  for (const d of dirs) if (await executable(join(d, command))) return join(d, command);
  return undefined;
}

async function executable(path: string): Promise<boolean> {
  try {
    await fs.access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves with `p`'s value, or with undefined after `ms` (real time: a bound on I/O). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * True for babeld versions whose check_xroutes never retracts a route it stops announcing
 * (fixed in 1.12.2, "Reinstall the right route in check_xroutes"). Unknown versions: assume so.
 */
export function dropsRetractions(version: string | undefined): boolean {
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(version ?? '');
  if (!m) return true;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
  return major < 1 || (major === 1 && (minor < 12 || (minor === 12 && patch < 2)));
}

export class RoutingSupervisor {
  private readonly log: Logger | undefined;
  private readonly clock: Clock;
  private readonly spawnFn: SpawnBabeld;
  private readonly connectFn: (path: string) => Promise<BabeldControl>;
  private readonly sysctl: Sysctl;
  private readonly whichFn: (command: string) => Promise<string | undefined>;
  private readonly timers: TunnelTimers;
  readonly paths: BabeldPaths;

  private startPromise: Promise<void> | undefined;
  private stopping = false;
  private binaryPath = '';
  private proc: BabeldProcess | undefined;
  private control: BabeldControl | undefined;
  private launchedAt = 0;
  private restartAttempts = 0;
  private restarts = 0;
  private lastExit: BabeldExit | undefined;
  private cancelRestart: (() => void) | undefined;
  private cancelDrain: (() => void) | undefined;
  /** Interfaces the running babeld was given (cleared when it dies). */
  private readonly added = new Set<string>();
  private readonly refused = new Map<string, string>();
  private desired = new Map<string, DesiredInterface>();
  private lastStates: InterfaceState[] = [];
  private addedAddresses: string[] = [];
  private restoreSysctls: Array<[string, string]> = [];
  private serialTail: Promise<unknown> = Promise.resolve();
  /** True while launch() waits for a new babeld: its death is launch()'s failure, not a crash. */
  private launching = false;
  /** A second connection in monitor mode, to see babeld drop an announced route (see relaunch). */
  private monitorConn: BabeldControl | undefined;
  private cancelRelaunch: (() => void) | undefined;
  private relaunches = 0;
  /** A babeld was spawned since start: stop() must flush what it may have left. */
  private spawned = false;

  constructor(private readonly deps: RoutingDeps, private readonly options: RoutingOptions) {
    this.log = deps.logger?.child({ component: 'routing' });
    this.clock = deps.clock ?? systemClock;
    this.spawnFn = deps.spawn ?? spawnBabeld;
    this.connectFn = deps.connect ?? ((path) => BabeldClient.connect(path));
    this.sysctl = deps.sysctl ?? procSysctl;
    this.whichFn = deps.which ?? which;
    this.timers = options.timers ?? DEFAULT_TIMERS;
    this.paths = babeldPaths(options.stateDir);
  }

  /** The babeld.conf this supervisor writes (validates the options; throws TypeError). */
  configText(): string {
    return babeldConfig({ paths: this.paths, mesh6: this.options.mesh6, mesh4: this.options.mesh4, accept4: this.options.accept4, gateway: this.options.gateway });
  }

  start(): Promise<void> {
    this.startPromise ??= this.doStart().catch(async (err) => {
      await this.teardown();
      this.startPromise = undefined;
      throw err;
    });
    return this.startPromise;
  }

  async stop(): Promise<void> {
    if (!this.startPromise) return;
    const starting = this.startPromise;
    this.stopping = true;
    try {
      await starting.catch(() => undefined);
      await this.serial(() => this.teardown());
    } finally {
      this.startPromise = undefined;
      this.stopping = false;
    }
  }

  /**
   * Makes babeld's interfaces match `want` and returns the state of each wanted interface,
   * plus the draining ones. Safe to call at any time, as often as wanted.
   */
  set(want: readonly DesiredInterface[]): Promise<InterfaceState[]> {
    const next = new Map<string, DesiredInterface>();
    for (const d of want) next.set(checkInterfaceName(d.ifname), d);
    if (next.has(PLACEHOLDER_INTERFACE)) throw new TypeError(`"${PLACEHOLDER_INTERFACE}" is reserved`);
    this.desired = next;
    return this.serial(() => this.reconcile());
  }

  async routes(): Promise<RouteRow[]> {
    const ctl = this.control;
    if (!ctl) throw new ScroogeError('EROUTING', this.startPromise ? 'babeld is not running (it is being restarted)' : 'routing is not started');
    const table = await ctl.dump();
    return [...table.routes.values()]
      .map((r) => ({ prefix: r.prefix, via: r.via, ifname: r.ifname, metric: r.metric, refmetric: r.refmetric, installed: r.installed, reachable: r.metric < INFINITY, routerId: r.routerId }))
      .sort((a, b) => (a.prefix === b.prefix ? Number(b.installed) - Number(a.installed) || a.metric - b.metric : a.prefix < b.prefix ? -1 : 1));
  }

  status(): RoutingStatus {
    return { running: this.control !== undefined, pid: this.proc?.pid, restarts: this.restarts, relaunches: this.relaunches, lastExit: this.lastExit, interfaces: this.lastStates };
  }

  // ---------------------------------------------------------------- start and stop

  private async doStart(): Promise<void> {
    const config = this.configText();
    const binary = await this.whichFn(this.options.binary ?? 'babeld');
    if (!binary)
      throw new ScroogeError('ENOBABELD', 'routing is "babeld" but babeld is not installed', 'install it: apt-get install --no-install-recommends babeld (or set routing to "off")');
    this.binaryPath = binary;
    await fs.mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
    await this.stopLeftover();
    await this.flushRoutes();
    await this.addAddresses();
    if ((this.options.forwarding ?? 'enable') === 'enable') await this.enableForwarding();
    await fs.writeFile(this.paths.config, config, { mode: 0o600 });
    await this.serial(async () => {
      await this.launch();
      if (this.desired.size) await this.reconcile();
    });
  }

  /** A babeld of this state directory left by an agent that was killed: stop it. */
  private async stopLeftover(): Promise<void> {
    const text = await fs.readFile(this.paths.pid, 'utf8').catch(() => '');
    const pid = Number(text.trim());
    if (Number.isInteger(pid) && pid > 1 && alive(pid)) {
      const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (/babeld/.test(cmdline) && cmdline.includes(this.paths.config)) {
        this.log?.warn({ pid }, 'stopping a babeld left by an earlier agent');
        process.kill(pid, 'SIGTERM');
        for (let i = 0; i < ROUTING_DEFAULTS.stopTimeoutMs / 20 && alive(pid); i++) await realSleep(20);
        if (alive(pid)) process.kill(pid, 'SIGKILL');
      }
    }
    await this.removeFiles([this.paths.pid, this.paths.socket]);
  }

  private async teardown(): Promise<void> {
    this.cancelRestart?.();
    this.cancelRestart = undefined;
    this.cancelDrain?.();
    this.cancelDrain = undefined;
    this.cancelRelaunch?.();
    this.cancelRelaunch = undefined;
    const proc = this.proc;
    this.proc = undefined;
    this.control?.close();
    this.control = undefined;
    this.monitorConn?.close();
    this.monitorConn = undefined;
    if (proc) {
      proc.kill('SIGTERM');
      if (!(await within(proc.exited, ROUTING_DEFAULTS.stopTimeoutMs))) {
        this.log?.warn({ pid: proc.pid }, 'babeld did not stop on SIGTERM; killing it');
        proc.kill('SIGKILL');
        await within(proc.exited, ROUTING_DEFAULTS.stopTimeoutMs);
      }
    }
    this.added.clear();
    this.refused.clear();
    this.lastStates = [];
    // After a clean SIGTERM babeld has removed its routes; after a kill it has not.
    if (this.spawned) {
      await this.flushRoutes().catch((err) => this.log?.warn({ err: (err as Error).message }, 'could not flush babel routes'));
      await this.removeFiles([this.paths.pid, this.paths.socket, this.paths.state, this.paths.config]);
    }
    this.spawned = false;
    await this.removeAddresses();
    await this.restoreForwarding();
  }

  private async removeFiles(paths: string[]): Promise<void> {
    await Promise.all(paths.map((p) => fs.rm(p, { force: true })));
  }

  /** Routes a babeld installs carry `proto babel` (42); in this namespace they are all ours. */
  private async flushRoutes(): Promise<void> {
    await this.deps.run(['ip', '-4', 'route', 'flush', 'proto', 'babel']);
    await this.deps.run(['ip', '-6', 'route', 'flush', 'proto', 'babel']);
  }

  private wantedAddresses(): string[] {
    return [`${this.options.mesh6}/128`, ...(this.options.mesh4 ? [`${this.options.mesh4}/32`] : [])];
  }

  private async addAddresses(): Promise<void> {
    const { stdout } = await this.deps.run(['ip', '-j', 'address', 'show', 'dev', 'lo']);
    const present = new Set<string>();
    for (const link of JSON.parse(stdout || '[]') as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number }> }>)
      for (const a of link.addr_info ?? []) if (a.local) present.add(`${a.local}/${a.prefixlen}`);
    const missing = this.wantedAddresses().filter((a) => !present.has(a));
    // lo starts down in a new network namespace; addresses on a down lo are not usable.
    await this.deps.run(['ip', '-batch', '-'], { input: ['link set dev lo up', ...missing.map((a) => `address add ${a} dev lo`)].join('\n') + '\n' });
    this.addedAddresses = missing;
  }

  private async removeAddresses(): Promise<void> {
    if (!this.addedAddresses.length) return;
    await this.deps
      .run(['ip', '-force', '-batch', '-'], { input: this.addedAddresses.map((a) => `address del ${a} dev lo`).join('\n') + '\n', okExitCodes: [0, 1] })
      .catch((err) => this.log?.warn({ err: (err as Error).message }, 'could not remove mesh addresses from lo'));
    this.addedAddresses = [];
  }

  /**
   * A mesh router forwards. The agent, not babeld, turns forwarding on (once, for its lifetime),
   * so a babeld that crashes and restarts never mistakes its own change for the original.
   */
  private async enableForwarding(): Promise<void> {
    for (const key of ['net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding']) {
      const was = await this.sysctl.read(key);
      if (was === '1') continue;
      await this.sysctl.write(key, '1');
      if (was !== undefined) this.restoreSysctls.push([key, was]);
      this.log?.info({ key, was }, 'turned forwarding on (routing is on)');
    }
  }

  private async restoreForwarding(): Promise<void> {
    for (const [key, value] of this.restoreSysctls.splice(0))
      await this.sysctl.write(key, value).catch((err) => this.log?.warn({ key, err: (err as Error).message }, 'could not restore sysctl'));
  }

  // ---------------------------------------------------------------- babeld's life

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.serialTail.then(fn, fn);
    this.serialTail = p.catch(() => undefined);
    return p;
  }

  private async launch(): Promise<void> {
    await this.removeFiles([this.paths.pid, this.paths.socket]);
    this.added.clear();
    this.refused.clear();
    this.launching = true;
    try {
      await this.connectNew();
    } finally {
      this.launching = false;
    }
  }

  private async connectNew(): Promise<void> {
    this.spawned = true;
    const proc = this.spawnFn([this.binaryPath, '-c', this.paths.config], { logFile: this.paths.log });
    this.proc = proc;
    this.launchedAt = this.clock.now();
    let exit: BabeldExit | undefined;
    void proc.exited.then((e) => {
      exit = e;
      this.onExit(proc, e);
    });
    let control: BabeldControl | undefined;
    for (let i = 0; !control; i++) {
      if (exit) {
        this.proc = undefined;
        throw await this.startFailure(exit);
      }
      try {
        control = await this.connectFn(this.paths.socket);
      } catch (err) {
        if (i * 20 >= ROUTING_DEFAULTS.startTimeoutMs) {
          proc.kill('SIGKILL');
          await within(proc.exited, ROUTING_DEFAULTS.stopTimeoutMs);
          this.proc = undefined;
          throw new BabeldError(`babeld did not open its control socket ${this.paths.socket} within ${ROUTING_DEFAULTS.startTimeoutMs} ms: ${(err as Error).message}`);
        }
        await realSleep(20);
      }
    }
    if (dropsRetractions(control.banner.version)) await this.openMonitor(proc);
    // It may have died while we connected: then this launch failed (the caller retries).
    if (exit || this.proc !== proc) {
      control.close();
      this.monitorConn?.close();
      this.monitorConn = undefined;
      this.proc = undefined;
      throw await this.startFailure(exit ?? { code: null, signal: null });
    }
    this.control = control;
    void control.closed.then(() => this.onControlClosed(control!));
    this.log?.info({ pid: proc.pid, version: control.banner.version, id: control.banner.myId }, 'babeld running');
  }

  private async startFailure(exit: BabeldExit): Promise<Error> {
    const log = await fs.readFile(this.paths.log, 'utf8').catch(() => '');
    const tail = log.trim().split('\n').slice(-3).join(' | ');
    const how = exit.error ?? (exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`);
    return new BabeldError(`babeld ${how} at start${tail ? `: ${tail}` : ''} (log: ${this.paths.log})`);
  }

  private onExit(proc: BabeldProcess, exit: BabeldExit): void {
    if (this.proc !== proc) return; // stopped on purpose, or an older one
    this.proc = undefined;
    this.lastExit = exit;
    this.control?.close();
    this.control = undefined;
    this.monitorConn?.close();
    this.monitorConn = undefined;
    this.added.clear();
    if (this.stopping || this.launching) return;
    this.log?.warn({ pid: proc.pid, ...exit }, 'babeld exited; restarting it');
    this.scheduleRestart();
  }

  /** babeld closed our connection but may still run (it drops a client it cannot write to). */
  private onControlClosed(control: BabeldControl): void {
    if (this.control !== control || this.stopping) return;
    this.control = undefined;
    const proc = this.proc;
    void this.serial(async () => {
      if (this.proc !== proc || !proc || this.stopping) return;
      try {
        this.control = await this.connectFn(this.paths.socket);
        const c = this.control;
        void c.closed.then(() => this.onControlClosed(c));
        this.log?.info('reconnected to babeld');
      } catch {
        this.log?.warn({ pid: proc.pid }, 'babeld no longer answers on its socket; killing it');
        proc.kill('SIGKILL'); // onExit restarts it
      }
    });
  }

  private scheduleRestart(): void {
    if (this.clock.now() - this.launchedAt >= ROUTING_DEFAULTS.stableAfterMs) this.restartAttempts = 0;
    const delay = Math.min(ROUTING_DEFAULTS.restartMaxMs, ROUTING_DEFAULTS.restartMinMs * 2 ** this.restartAttempts);
    this.restartAttempts++;
    this.cancelRestart?.();
    this.cancelRestart = this.clock.setTimeout(() => {
      this.cancelRestart = undefined;
      void this.serial(async () => {
        if (this.stopping || this.proc || !this.startPromise) return;
        try {
          // A killed babeld leaves its routes: the new one would take them for its own.
          await this.flushRoutes();
          await this.launch();
          this.restarts++;
          await this.reconcile();
        } catch (err) {
          this.log?.error({ err: (err as Error).message }, 'babeld restart failed');
          if (!this.proc) this.scheduleRestart();
        }
      });
    }, delay);
  }

  /**
   * babeld before 1.12.2 does not retract a route it stops announcing (check_xroutes sends the
   * update for `xroutes[i]`, not the flushed `xroutes[j]`): when a gateway's uplink loses its
   * default route, neighbours keep using it until it expires, measured ~22 s. A monitor
   * connection sees the `flush xroute` and babeld is restarted cleanly: on SIGTERM it retracts
   * everything it announced, and the new one announces what is left.
   */
  private async openMonitor(proc: BabeldProcess): Promise<void> {
    try {
      const conn = await this.connectFn(this.paths.socket);
      this.monitorConn = conn;
      void conn.closed.then(() => {
        if (this.monitorConn === conn) this.monitorConn = undefined; // reopened at the next reconcile
      });
      let initial = true;
      await conn.monitor((e) => {
        if (!initial && e.type === 'xroute' && e.kind === 'flush' && this.proc === proc) this.scheduleRelaunch(proc, e.entry.prefix);
      });
      initial = false;
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'no babeld monitor connection; a withdrawn announcement will only expire');
    }
  }

  private scheduleRelaunch(proc: BabeldProcess, prefix: string): void {
    if (this.cancelRelaunch) return;
    this.log?.info({ prefix }, 'babeld stopped announcing a route it will not retract (babeld < 1.12.2): restarting it');
    this.cancelRelaunch = this.clock.setTimeout(() => {
      this.cancelRelaunch = undefined;
      void this.serial(async () => {
        if (this.stopping || this.proc !== proc) return;
        this.proc = undefined; // a stop on purpose: onExit stays out of it
        this.control?.close();
        this.control = undefined;
        this.monitorConn?.close();
        this.monitorConn = undefined;
        proc.kill('SIGTERM');
        if (!(await within(proc.exited, ROUTING_DEFAULTS.stopTimeoutMs))) {
          proc.kill('SIGKILL');
          await within(proc.exited, ROUTING_DEFAULTS.stopTimeoutMs);
          await this.flushRoutes();
        }
        try {
          await this.launch();
          this.relaunches++;
          await this.reconcile();
        } catch (err) {
          this.log?.error({ err: (err as Error).message }, 'babeld relaunch failed');
          if (!this.proc) this.scheduleRestart();
        }
      });
    }, ROUTING_DEFAULTS.relaunchDebounceMs);
  }

  // ---------------------------------------------------------------- interfaces

  private async reconcile(): Promise<InterfaceState[]> {
    const ctl = this.control;
    const want = [...this.desired.values()];
    if (ctl && !this.monitorConn && this.proc && dropsRetractions(ctl.banner.version)) await this.openMonitor(this.proc);
    if (!ctl) return (this.lastStates = want.map((d) => ({ ifname: d.ifname, state: 'waiting', neighbours: 0 })));
    let table: BabeldTable;
    try {
      for (const d of want) {
        await this.looseRpFilter(d.ifname);
        if (this.added.has(d.ifname)) continue;
        const reply = await ctl.request(interfaceCommand(d.ifname, this.timers));
        if (reply.status === 'ok') {
          this.added.add(d.ifname);
          this.refused.delete(d.ifname);
        } else this.refused.set(d.ifname, `babeld answered "${reply.status}${reply.message ? ' ' + reply.message : ''}" to the interface line`);
      }
      table = await ctl.dump();
      const states: InterfaceState[] = want.map((d) => {
        const entry = table.interfaces.get(d.ifname);
        const neighbours = table.neighboursOn(d.ifname).length;
        const error = this.refused.get(d.ifname);
        if (error) return { ifname: d.ifname, state: 'error', neighbours, error };
        if (!entry) return { ifname: d.ifname, state: 'waiting', neighbours }; // babeld restarted under us
        return entry.up ? { ifname: d.ifname, state: 'up', linkLocal: entry.ipv6, neighbours } : { ifname: d.ifname, state: 'down', neighbours };
      });
      let draining = false;
      for (const entry of table.interfaces.values()) {
        if (entry.name === PLACEHOLDER_INTERFACE || this.desired.has(entry.name)) continue;
        const neighbours = table.neighboursOn(entry.name).length;
        if (entry.up || neighbours > 0) {
          states.push({ ifname: entry.name, state: 'draining', neighbours });
          draining = true;
          continue;
        }
        // Down, and no neighbour left pointing at it: the one safe moment (see the header).
        const reply = await ctl.request(flushInterfaceCommand(entry.name));
        if (reply.status !== 'ok' && !/no such interface/i.test(reply.message))
          this.log?.warn({ ifname: entry.name, status: reply.status, message: reply.message }, 'babeld refused to flush an interface');
        this.added.delete(entry.name);
      }
      this.cancelDrain?.();
      this.cancelDrain = draining
        ? this.clock.setTimeout(() => {
          this.cancelDrain = undefined;
          void this.serial(() => this.reconcile()).catch(() => undefined);
        }, ROUTING_DEFAULTS.drainCheckMs)
        : undefined;
      return (this.lastStates = states);
    } catch (err) {
      // The connection broke (babeld died or hung): the exit handler restarts it and re-adds.
      this.log?.warn({ err: (err as Error).message }, 'babeld control request failed');
      return (this.lastStates = want.map((d) => ({ ifname: d.ifname, state: 'waiting', neighbours: 0 })));
    }
  }

  /**
   * IPv4 reverse-path filtering uses max(conf/all, conf/IF): setting a tunnel to 2 (loose)
   * makes it loose whatever `all` says. Strict mode (1) would drop packets whose way back
   * leaves by another tunnel, which is normal in a mesh. The setting goes with the interface.
   */
  private async looseRpFilter(ifname: string): Promise<void> {
    const key = `net/ipv4/conf/${ifname}/rp_filter`;
    const v = await this.sysctl.read(key);
    if (v === '1') await this.sysctl.write(key, '2').catch((err) => this.log?.warn({ ifname, err: (err as Error).message }, 'could not loosen rp_filter'));
  }
}
