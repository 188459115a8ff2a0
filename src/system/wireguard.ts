/**
 * WireGuard backends: the kernel module where the kernel has it, else the wireguard-go daemon
 * (these test machines have no module).
 *
 * Kernel: `ip link add ... type wireguard`, configured with `wg setconf` from wireguard-tools
 * (the private key in a 0600 file in a 0700 directory: never on argv, and `wg` reads /dev/stdin
 * with fopen, which fails on the socket pair node gives a child as stdin), read back with one
 * `wg show all dump` (netlink, scoped to this network namespace).
 *
 * Userspace: one `wireguard-go` daemon per tunnel, configured and read through its UAPI control
 * socket (https://www.wireguard.com/xplatform/), the very protocol `wg` speaks to it. Talking it
 * directly saves a process per tunnel: on a 20-node mesh (380 tunnels on one 2-core machine) the
 * `wg` processes alone cost about 1.4 s of CPU. It is also the only correct way to read: the
 * daemons of every network namespace share /var/run/wireguard, so `wg show all` would list them
 * all. Keys cross a unix socket only root can open, never argv.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { promises as fs, constants as fsConstants, openSync, closeSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ScroogeError } from '../errors.js';
import type { TunnelIntent } from '../neighbors/core.js';
import { isTunnelInterfaceName } from '../neighbors/names.js';
import { parseEndpoint, formatEndpoint, type Endpoint } from '../protocol/address.js';
import { toBase64 } from '../protocol/bytes.js';
import type { Runner } from './runner.js';

export const USERSPACE_SOCKET_DIR = '/var/run/wireguard';

/** What WireGuard says about a peer (wall-clock time, as the kernel and wireguard-go keep it). */
export interface PeerStats {
  /** Unix ms of the latest handshake, 0 if none. */
  latestHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
}

/** What a live interface carries (for adoption after a restart, and for status). */
export interface LiveTunnel {
  privateKey: Uint8Array;
  listenPort: number;
  peer: { publicKey: Uint8Array; endpoint: Endpoint | undefined; stats: PeerStats } | undefined;
}

export type ApplyOutcome = { ifname: string; generation: number; ok: true } | { ifname: string; generation: number; ok: false; portBusy: boolean; error: string };

export interface WireGuardBackend {
  readonly kind: 'kernel' | 'userspace';
  /** Scrooge tunnel interfaces present in this network namespace. */
  listTunnels(): Promise<string[]>;
  /** Creates missing interfaces and configures all given ones. Never throws for one tunnel. */
  apply(intents: readonly TunnelIntent[], existing: ReadonlySet<string>): Promise<ApplyOutcome[]>;
  /**
   * Creates the interface for a tunnel that is probably coming (a neighbor was just heard), so
   * the slow part is done while the negotiation runs. Unconfigured; apply() finishes it.
   */
  prepare(ifname: string): Promise<void>;
  remove(ifnames: readonly string[]): Promise<void>;
  read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>>;
}

function b64(bytes: Uint8Array): string {
  return toBase64(bytes);
}

function wgConfig(t: TunnelIntent): string {
  const lines = ['[Interface]', `PrivateKey = ${b64(t.privateKey)}`, `ListenPort = ${t.listenPort}`];
  if (t.peer) {
    lines.push(
      '', '[Peer]', `PublicKey = ${b64(t.peer.tunnelKey)}`,
      // Routing, not WireGuard, decides what goes into which tunnel (PROTOCOL.md §6).
      'AllowedIPs = ::/0, 0.0.0.0/0',
      `Endpoint = ${formatEndpoint(t.peer.endpoint)}`,
      `PersistentKeepalive = ${t.peer.keepaliveSeconds}`,
    );
  }
  return lines.join('\n') + '\n';
}

/**
 * `ip -batch` lines that give a tunnel its one address and bring it up. addrgenmode none: the
 * kernel would otherwise add a random link-local of its own; the tunnel's address is the one
 * derived from the node's key (PROTOCOL.md §6).
 */
function linkCommands(t: TunnelIntent): string[] {
  return [
    `link set dev ${t.ifname} addrgenmode none`,
    `address replace ${t.address}/64 dev ${t.ifname}`,
    `link set dev ${t.ifname} mtu ${t.mtu} up`,
  ];
}

/** True if nothing else holds UDP `port` (v4 or v6). */
export async function udpPortFree(port: number): Promise<boolean> {
  const s = createSocket({ type: 'udp6', ipv6Only: false });
  return new Promise((resolve) => {
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, '::', () => s.close(() => resolve(true)));
  });
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

abstract class BaseBackend implements WireGuardBackend {
  abstract readonly kind: 'kernel' | 'userspace';

  constructor(protected readonly run: Runner, protected readonly log: Logger | undefined) {}

  async listTunnels(): Promise<string[]> {
    // sysfs lists this network namespace's links (`ip netns exec` mounts it for the namespace);
    // cheaper than a process, and it sees links that have no address yet.
    try {
      return (await fs.readdir('/sys/class/net')).filter(isTunnelInterfaceName);
    } catch {
      const { stdout } = await this.run(['ip', '-j', 'link', 'show']);
      return (JSON.parse(stdout || '[]') as { ifname: string }[]).map((l) => l.ifname).filter(isTunnelInterfaceName);
    }
  }

  /** Creates the interfaces in `missing`; returns an error per interface that failed. */
  protected abstract create(missing: readonly TunnelIntent[]): Promise<Map<string, string>>;

  abstract prepare(ifname: string): Promise<void>;

  /** Resolves once the interface can be configured (a prepared daemon may still be starting). */
  protected async ready(_ifname: string): Promise<void> {}

  /** Writes the whole configuration of one tunnel (replacing its peer). */
  protected abstract configure(t: TunnelIntent): Promise<void>;

  async apply(intents: readonly TunnelIntent[], known: ReadonlySet<string>): Promise<ApplyOutcome[]> {
    const failed = new Map<string, { error: string; portBusy: boolean }>();
    const missing: TunnelIntent[] = [];
    // What exists is reconfigured, what does not is created: the system decides, not what the
    // caller believed (an interface may have been prepared, or may have vanished).
    const existing = new Set(await this.listTunnels());
    await Promise.all(intents.map(async (t) => {
      if (known.has(t.ifname)) return; // ours and configured: its port is its own
      if (!(await udpPortFree(t.listenPort))) failed.set(t.ifname, { error: `UDP port ${t.listenPort} is in use`, portBusy: true });
      else if (!existing.has(t.ifname)) missing.push(t); // else prepared: only configuring is left
    }));
    for (const [ifname, error] of await this.create(missing)) failed.set(ifname, { error, portBusy: false });
    const ready = intents.filter((t) => !failed.has(t.ifname));
    await mapLimit(ready, 8, async (t) => {
      try {
        await this.ready(t.ifname);
        await this.configure(t);
      } catch (err) {
        failed.set(t.ifname, { error: (err as Error).message, portBusy: /in use/.test((err as Error).message) });
      }
    });
    const configured = ready.filter((t) => !failed.has(t.ifname));
    if (configured.length) {
      const batch = configured.flatMap((t) => linkCommands(t));
      try {
        await this.run(['ip', '-batch', '-'], { input: batch.join('\n') + '\n' });
      } catch (err) {
        // One bad line stops the batch: fall back to one interface at a time to find it.
        for (const t of configured) {
          try {
            await this.run(['ip', '-batch', '-'], { input: linkCommands(t).join('\n') + '\n' });
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
    await this.run(['ip', '-force', '-batch', '-'], { input: ifnames.map((n) => `link del dev ${n}`).join('\n') + '\n', okExitCodes: [0, 1] });
  }

  abstract read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>>;
}

/** Parses `wg show ... dump` / `wg show all dump` output (tab-separated). */
export function parseWgDump(text: string, withInterfaceColumn: boolean): Map<string, LiveTunnel> {
  const out = new Map<string, LiveTunnel>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split('\t');
    const ifname = withInterfaceColumn ? f.shift()! : '';
    if (f.length === 4) {
      out.set(ifname, { privateKey: Uint8Array.from(Buffer.from(f[0]!, 'base64')), listenPort: Number(f[2]), peer: undefined });
    } else if (f.length === 8) {
      const t = out.get(ifname);
      if (!t) continue;
      const ep = f[2] === '(none)' ? undefined : parseEndpoint(f[2]!);
      t.peer = {
        publicKey: Uint8Array.from(Buffer.from(f[0]!, 'base64')),
        endpoint: ep?.ok ? ep.endpoint : undefined,
        stats: { latestHandshakeMs: Number(f[4]) * 1000, rxBytes: Number(f[5]), txBytes: Number(f[6]) },
      };
    }
  }
  return out;
}

/** Parses a UAPI `get=1` answer (key=value lines, keys hex, one peer). */
export function parseUapi(text: string): LiveTunnel | undefined {
  let privateKey: Uint8Array | undefined;
  let listenPort = 0;
  let peer: LiveTunnel['peer'];
  let sec = 0;
  let nsec = 0;
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    switch (k) {
      case 'private_key': privateKey = Uint8Array.from(Buffer.from(v, 'hex')); break;
      case 'listen_port': listenPort = Number(v); break;
      case 'public_key': peer = { publicKey: Uint8Array.from(Buffer.from(v, 'hex')), endpoint: undefined, stats: { latestHandshakeMs: 0, rxBytes: 0, txBytes: 0 } }; break;
      case 'endpoint': if (peer) { const r = parseEndpoint(v); peer.endpoint = r.ok ? r.endpoint : undefined; } break;
      case 'last_handshake_time_sec': sec = Number(v); break;
      case 'last_handshake_time_nsec': nsec = Number(v); if (peer) peer.stats.latestHandshakeMs = sec * 1000 + Math.floor(nsec / 1e6); break;
      case 'rx_bytes': if (peer) peer.stats.rxBytes = Number(v); break;
      case 'tx_bytes': if (peer) peer.stats.txBytes = Number(v); break;
      case 'errno': if (v !== '0') return undefined; break;
    }
  }
  return privateKey ? { privateKey, listenPort, peer } : undefined;
}

class KernelBackend extends BaseBackend {
  readonly kind = 'kernel' as const;

  /** Creating a kernel interface is cheap: nothing to prepare. */
  override async prepare(_ifname: string): Promise<void> {}
  /** Key files live for one `wg setconf` in the agent's state directory (0700), never in /tmp. */
  constructor(run: Runner, log: Logger | undefined, private readonly secretDir: string) {
    super(run, log);
  }

  private async secrets(): Promise<string> {
    await fs.mkdir(this.secretDir, { recursive: true, mode: 0o700 });
    return this.secretDir;
  }

  protected async configure(t: TunnelIntent): Promise<void> {
    const file = join(await this.secrets(), `${t.ifname}.${randomBytes(4).toString('hex')}.conf`);
    const handle = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    try {
      await handle.writeFile(wgConfig(t));
      await handle.close();
      await this.run(['wg', 'setconf', t.ifname, file]);
    } finally {
      await fs.rm(file, { force: true });
    }
  }

  protected async create(missing: readonly TunnelIntent[]): Promise<Map<string, string>> {
    const failed = new Map<string, string>();
    if (!missing.length) return failed;
    try {
      await this.run(['ip', '-batch', '-'], { input: missing.map((t) => `link add dev ${t.ifname} type wireguard`).join('\n') + '\n' });
    } catch {
      for (const t of missing) {
        try {
          await this.run(['ip', 'link', 'add', 'dev', t.ifname, 'type', 'wireguard']);
        } catch (err) {
          failed.set(t.ifname, (err as Error).message);
        }
      }
    }
    return failed;
  }

  async read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>> {
    if (!ifnames.length) return new Map();
    const { stdout } = await this.run(['wg', 'show', 'all', 'dump']);
    const all = parseWgDump(stdout, true);
    return new Map([...all].filter(([k]) => ifnames.includes(k)));
  }
}

class UserspaceBackend extends BaseBackend {
  readonly kind = 'userspace' as const;

  constructor(run: Runner, log: Logger | undefined, private readonly logFile: string) {
    super(run, log);
  }

  /** Daemons being started, so prepare() and create() never start two for one interface. */
  private readonly starting = new Map<string, Promise<void>>();

  override prepare(ifname: string): Promise<void> {
    return this.daemon(ifname);
  }

  protected override async ready(ifname: string): Promise<void> {
    await this.starting.get(ifname);
  }

  private daemon(ifname: string): Promise<void> {
    let p = this.starting.get(ifname);
    if (!p) {
      p = this.startDaemon(ifname).finally(() => this.starting.delete(ifname));
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

  /**
   * Starts `wireguard-go -f IFNAME` in its own session, so it outlives an agent killed with -9
   * (like a kernel interface would) and the next agent adopts the tunnel. Its output goes to a
   * log file, never to a pipe that would break when the agent exits.
   */
  private async startDaemon(ifname: string): Promise<void> {
    const socket = join(USERSPACE_SOCKET_DIR, `${ifname}.sock`);
    const fd = openSync(this.logFile, 'a', 0o600);
    let exited: string | undefined;
    try {
      const child = spawn('wireguard-go', ['-f', ifname], {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, LOG_LEVEL: 'error', WG_PROCESS_FOREGROUND: '1' },
      });
      child.once('error', (err) => { exited = err.message; });
      child.once('exit', (code, signal) => { exited ??= `exited ${code ?? signal}`; });
      child.unref();
    } finally {
      closeSync(fd);
    }
    // Wait for its control socket: one inotify watch on the directory for all daemons, with a
    // slow poll as a safety net (hundreds of daemons polled every few ms would eat the CPU
    // they need to start).
    const deadline = Date.now() + 5000;
    for (;;) {
      if (await exists(socket)) return;
      if (exited) throw new ScroogeError('EWIREGUARD', `wireguard-go ${ifname} ${exited} (see ${this.logFile})`);
      if (Date.now() > deadline) throw new ScroogeError('EWIREGUARD', `wireguard-go ${ifname} did not start within 5 s (see ${this.logFile})`);
      await this.socketEvent(`${ifname}.sock`, 100);
    }
  }

  private watcher: FSWatcher | undefined;
  private readonly waiters = new Map<string, Set<() => void>>();

  /** Resolves when `name` appears in the socket directory, or after `ms`. */
  private socketEvent(name: string, ms: number): Promise<void> {
    if (!this.watcher) {
      try {
        mkdirSync(USERSPACE_SOCKET_DIR, { recursive: true, mode: 0o755 });
        this.watcher = watch(USERSPACE_SOCKET_DIR, (_event, file) => {
          const ws = file ? this.waiters.get(file.toString()) : undefined;
          if (ws) for (const w of ws) w();
        });
        this.watcher.unref();
      } catch {
        // No inotify: the timeout below turns this into a poll.
      }
    }
    return new Promise((resolve) => {
      const set = this.waiters.get(name) ?? new Set<() => void>();
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (!set.size) this.waiters.delete(name);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      this.waiters.set(name, set);
    });
  }

  protected async configure(t: TunnelIntent): Promise<void> {
    const socket = join(USERSPACE_SOCKET_DIR, `${t.ifname}.sock`);
    // A daemon that is just starting may show its socket file a moment before it accepts (or a
    // stale file of a killed one may still be there): retry briefly, not a second later.
    let answer: string | undefined;
    for (let attempt = 0; answer === undefined; attempt++) {
      try {
        answer = await uapi(socket, uapiSet(t));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || attempt >= 100) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const errno = /^errno=(\d+)$/m.exec(answer)?.[1];
    if (errno !== '0') throw new ScroogeError('EWIREGUARD', `wireguard-go ${t.ifname} refused the configuration (errno ${errno ?? 'missing'})`);
  }

  async read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>> {
    const out = new Map<string, LiveTunnel>();
    await Promise.all(ifnames.map(async (ifname) => {
      const text = await uapi(join(USERSPACE_SOCKET_DIR, `${ifname}.sock`), 'get=1\n\n').catch(() => undefined);
      const t = text === undefined ? undefined : parseUapi(text);
      if (t) out.set(ifname, t);
    }));
    return out;
  }
}

/**
 * wireguard-go watches its control socket with inotify: one inotify instance per tunnel, and the
 * kernel's default allows 128 per user for the whole machine. Past that, daemons fail with
 * "too many open files" and tunnels never come up. Raise the limit (root only) when it is low.
 */
export const INOTIFY_INSTANCES_WANTED = 8192;
const INOTIFY_FILE = '/proc/sys/fs/inotify/max_user_instances';
async function ensureInotifyInstances(log: Logger | undefined): Promise<void> {
  try {
    const current = Number((await fs.readFile(INOTIFY_FILE, 'utf8')).trim());
    if (current >= INOTIFY_INSTANCES_WANTED) return;
    await fs.writeFile(INOTIFY_FILE, String(INOTIFY_INSTANCES_WANTED));
    log?.info({ from: current, to: INOTIFY_INSTANCES_WANTED }, 'raised fs.inotify.max_user_instances: wireguard-go needs one per tunnel');
  } catch (err) {
    log?.warn({ err: (err as Error).message }, `cannot read or raise fs.inotify.max_user_instances; with many tunnels wireguard-go may fail with "too many open files"`);
  }
}

/** The UAPI `set=1` request for a tunnel: keys in hex, the whole peer list replaced. */
export function uapiSet(t: TunnelIntent): string {
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const lines = ['set=1', `private_key=${hex(t.privateKey)}`, `listen_port=${t.listenPort}`, 'replace_peers=true'];
  if (t.peer) {
    lines.push(
      `public_key=${hex(t.peer.tunnelKey)}`,
      `endpoint=${formatEndpoint(t.peer.endpoint)}`,
      `persistent_keepalive_interval=${t.peer.keepaliveSeconds}`,
      'replace_allowed_ips=true', 'allowed_ip=::/0', 'allowed_ip=0.0.0.0/0',
    );
  }
  return lines.join('\n') + '\n\n';
}

/** One UAPI exchange: write the request, read until the blank line that ends the answer. */
function uapi(path: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path });
    let buf = '';
    const timer = setTimeout(() => sock.destroy(new Error('UAPI timeout')), 3000);
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

async function exists(path: string): Promise<boolean> {
  try {
    await fs.access(path);
    return true;
  } catch {
    return false;
  }
}

async function onPath(command: string): Promise<boolean> {
  const dirs = (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter(Boolean);
  for (const d of dirs) {
    try {
      await fs.access(join(d, command), fsConstants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

async function kernelMayHaveWireGuard(): Promise<boolean> {
  try {
    await fs.access('/sys/module/wireguard');
    return true;
  } catch {
    // not loaded (or built in without a sysfs entry): is a module installed?
  }
  let release: string;
  try {
    release = (await fs.readFile('/proc/sys/kernel/osrelease', 'utf8')).trim();
  } catch {
    return true; // cannot tell: let the probe decide
  }
  try {
    const dep = await fs.readFile(`/lib/modules/${release}/modules.dep`, 'utf8');
    return /\/wireguard\.ko/.test(dep);
  } catch {
    // No modules for this kernel, and none loaded or built in (built-ins show in /sys/module).
    return false;
  }
}

/**
 * Picks the backend: `kernel` if `ip link add ... type wireguard` works (probed with a throwaway
 * interface), else `userspace` if wireguard-go is installed, else a clear error.
 */
export async function detectBackend(
  deps: { run: Runner; logger?: Logger },
  opts: { prefer: 'auto' | 'kernel' | 'userspace'; logFile: string; secretDir: string },
): Promise<WireGuardBackend> {
  const log = deps.logger?.child({ component: 'wireguard' });
  const kernel = async () => {
    // Only try (a throwaway interface) where a wireguard module can exist at all: loaded, or
    // installed for this kernel. Saves a process at every start on kernels without it.
    if (!(await kernelMayHaveWireGuard())) return false;
    const probe = `scprobe${randomBytes(3).toString('hex')}`;
    try {
      await deps.run(['ip', 'link', 'add', 'dev', probe, 'type', 'wireguard']);
      await deps.run(['ip', 'link', 'del', 'dev', probe]);
      return true;
    } catch {
      return false;
    }
  };
  const userspace = () => onPath('wireguard-go');
  const wgTool = async () => {
    if (!(await onPath('wg')))
      throw new ScroogeError('ENOWG', '`wg` (wireguard-tools) is not installed', 'install it: apt-get install --no-install-recommends wireguard-tools');
  };
  await wgTool();
  if (opts.prefer !== 'userspace' && (await kernel())) {
    log?.info({ backend: 'kernel' }, 'WireGuard backend: kernel module');
    return new KernelBackend(deps.run, log, opts.secretDir);
  }
  if (opts.prefer === 'kernel')
    throw new ScroogeError('ENOWG', 'tunnels.backend is "kernel" but this kernel cannot create WireGuard interfaces', 'load the wireguard module, or set tunnels.backend to "auto"');
  if (await userspace()) {
    log?.info({ backend: 'userspace' }, 'WireGuard backend: wireguard-go (no kernel module)');
    await ensureInotifyInstances(log);
    return new UserspaceBackend(deps.run, log, opts.logFile);
  }
  throw new ScroogeError('ENOWG', 'no WireGuard: this kernel has no wireguard module and wireguard-go is not installed',
    'install it: apt-get install --no-install-recommends wireguard-go (or load the kernel module)');
}
