/**
 * The userspace backend: one `wireguard-go` daemon per tunnel, configured and read through its
 * UAPI control socket (https://www.wireguard.com/xplatform/), the very protocol `wg` speaks to
 * it. Talking it directly saves a process per tunnel: on a 20-node mesh (380 tunnels on one
 * 2-core machine) the `wg` processes alone cost about 1.4 s of CPU. It is also the only correct
 * way to read: the daemons of every network namespace share /var/run/wireguard, so `wg show
 * all` would list them all. Keys cross a unix socket only root can open, never argv.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, watch, type FSWatcher } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ScroogeError } from '../../errors.js';
import type { TunnelIntent } from '../../neighbors/core.js';
import { exists } from '../helpers.js';
import type { Runner } from '../runner.js';
import { BaseBackend, type WireGuardHost } from './backend.js';
import { systemHost } from './host.js';
import { parseUapi, uapiErrno, uapiSet, type LiveTunnel } from './text.js';

/** Where wireguard-go keeps its control sockets: one directory for every network namespace. */
export const USERSPACE_SOCKET_DIR = '/var/run/wireguard';
/** How long wireguard-go gets to start and to answer, from the config's commandTimeout. */
export interface UserspaceTimeouts {
  /** A daemon that has no control socket after this did not start. */
  startMs: number;
  /** A UAPI exchange that takes longer than this has a hung daemon behind it. */
  uapiMs: number;
}

/**
 * One and a half and one commandTimeout, and never less than 15 s and 10 s (the budgets at the
 * default 10 s). Slow is not failed: a daemon that is alive but has no socket yet, or has not
 * answered yet, is nearly always a starved one (the kernel's rtnl lock is one for the whole
 * machine: on grid-100, 100 agents and 360 daemons starting on 2 cores, `ip -batch` took 3.3 s
 * in the median and daemons up to 5.7 s to show their socket). Giving up sooner (it was 5 s and
 * 3 s) made a retry, with its back-off, of a third of those tunnels, and more load. A router
 * starved for longer (a VM under TCG) raises commandTimeout and these follow.
 */
export function userspaceTimeouts(commandTimeoutMs: number): UserspaceTimeouts {
  return { startMs: Math.max(15_000, Math.round(commandTimeoutMs * 1.5)), uapiMs: Math.max(10_000, commandTimeoutMs) };
}

export interface UserspaceHost extends WireGuardHost {
  /** Starts wireguard-go for `ifname`; resolves once its control socket exists. */
  startDaemon(ifname: string): Promise<void>;
  /** One UAPI exchange with `ifname`'s daemon (errors carry the socket's errno code). */
  uapi(ifname: string, request: string): Promise<string>;
}

export class UserspaceBackend extends BaseBackend {
  readonly kind = 'userspace' as const;
  readonly slowToCreate = true;
  /** Daemons being started, so prepare() and create() never start two for one interface. */
  private readonly starting = new Map<string, Promise<void>>();

  constructor(protected override readonly host: UserspaceHost, log: Logger | undefined) {
    super(host, log);
  }

  override prepare(ifname: string): Promise<void> {
    return this.daemon(ifname);
  }

  protected override async ready(ifname: string): Promise<void> {
    await this.starting.get(ifname);
  }

  private daemon(ifname: string): Promise<void> {
    let p = this.starting.get(ifname);
    if (!p) {
      const started = performance.now();
      p = this.host.startDaemon(ifname).then(
        () => this.log?.debug({ ifname, ms: Math.round(performance.now() - started) }, 'wireguard-go started'),
      ).finally(() => this.starting.delete(ifname));
      this.starting.set(ifname, p);
    }
    return p;
  }

  protected async create(missing: readonly TunnelIntent[]): Promise<Map<string, string>> {
    const failed = new Map<string, string>();
    await Promise.all(missing.map(async (t) => {
      try {
        await this.daemon(t.ifname);
      } catch (err) {
        failed.set(t.ifname, (err as Error).message);
      }
    }));
    return failed;
  }

  protected async configure(t: TunnelIntent): Promise<void> {
    // A daemon that is just starting may show its socket file a moment before it accepts (or a
    // stale file of a killed one may still be there): retry briefly, not a second later.
    let answer: string | undefined;
    for (let attempt = 0; answer === undefined; attempt++) {
      try {
        answer = await this.host.uapi(t.ifname, uapiSet(t));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || attempt >= 100) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const errno = uapiErrno(answer);
    if (errno !== '0') throw new ScroogeError('EWIREGUARD', `wireguard-go ${t.ifname} refused the configuration (errno ${errno ?? 'missing'})`);
  }

  async read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>> {
    const out = new Map<string, LiveTunnel>();
    await Promise.all(ifnames.map(async (ifname) => {
      const text = await this.host.uapi(ifname, 'get=1\n\n').catch(() => undefined);
      const t = text === undefined ? undefined : parseUapi(text);
      if (t) out.set(ifname, t);
    }));
    return out;
  }
}

/** The real system: wireguard-go processes and their sockets in USERSPACE_SOCKET_DIR. */
export function userspaceHost(run: Runner, logFile: string, timeouts: UserspaceTimeouts = userspaceTimeouts(0)): UserspaceHost {
  let watcher: FSWatcher | undefined;
  const waiters = new Map<string, Set<() => void>>();

  /** Resolves when `name` appears in the socket directory, or after `ms`. */
  const socketEvent = (name: string, ms: number): Promise<void> => {
    if (!watcher) {
      try {
        mkdirSync(USERSPACE_SOCKET_DIR, { recursive: true, mode: 0o755 });
        watcher = watch(USERSPACE_SOCKET_DIR, (_event, file) => {
          const ws = file ? waiters.get(file.toString()) : undefined;
          if (ws) for (const w of ws) w();
        });
        watcher.unref();
      } catch {
        // No inotify: the timeout below turns this into a poll.
      }
    }
    return new Promise((resolve) => {
      const set = waiters.get(name) ?? new Set<() => void>();
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (!set.size) waiters.delete(name);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      waiters.set(name, set);
    });
  };

  return {
    ...systemHost(run),
    /**
     * Starts `wireguard-go -f IFNAME` in its own session, so it outlives an agent killed with
     * -9 (like a kernel interface would) and the next agent adopts the tunnel. Its output goes
     * to a log file, never to a pipe that would break when the agent exits.
     */
    async startDaemon(ifname) {
      const socket = join(USERSPACE_SOCKET_DIR, `${ifname}.sock`);
      const fd = openSync(logFile, 'a', 0o600);
      let exited: string | undefined;
      let pid: number | undefined;
      try {
        const child = spawn('wireguard-go', ['-f', ifname], {
          detached: true,
          stdio: ['ignore', fd, fd],
          env: { ...process.env, LOG_LEVEL: 'error', WG_PROCESS_FOREGROUND: '1' },
        });
        child.once('error', (err) => { exited = err.message; });
        child.once('exit', (code, signal) => { exited ??= `exited ${code ?? signal}`; });
        child.unref();
        pid = child.pid;
      } finally {
        closeSync(fd);
      }
      // Wait for its control socket: one inotify watch on the directory for all daemons, with
      // a slow poll as a safety net (hundreds of daemons polled every few ms would eat the CPU
      // they need to start).
      const deadline = Date.now() + timeouts.startMs;
      for (;;) {
        if (await exists(socket)) return;
        if (exited) throw new ScroogeError('EWIREGUARD', `wireguard-go ${ifname} ${exited} (see ${logFile})`);
        if (Date.now() > deadline) {
          // Gone for good: a late socket would only race the next attempt's daemon.
          if (pid !== undefined) {
            try {
              process.kill(-pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
          throw new ScroogeError('EWIREGUARD', `wireguard-go ${ifname} did not start within ${timeouts.startMs / 1000} s (see ${logFile})`);
        }
        await socketEvent(`${ifname}.sock`, 100);
      }
    },
    uapi: (ifname, request) => uapiExchange(join(USERSPACE_SOCKET_DIR, `${ifname}.sock`), request, timeouts.uapiMs),
  };
}

/** One UAPI exchange: write the request, read until the blank line that ends the answer. */
function uapiExchange(path: string, request: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path });
    let buf = '';
    const timer = setTimeout(() => sock.destroy(new Error('UAPI timeout')), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.endsWith('\n\n')) sock.end();
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(buf);
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
