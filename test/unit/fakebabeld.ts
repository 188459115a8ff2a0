/**
 * A stateful fake of babeld 1.12.1 and of the bits of the host the routing supervisor touches
 * (STYLE.md: a fake that keeps tables, throws or answers `bad` on what it does not know, and
 * renders sorted text), so supervisor tests check the state reached, not the calls made.
 *
 * FakeBabeld is a real unix-socket server speaking babeld's local protocol (banner, `interface`,
 * `flush interface`, `dump`, `monitor`, `unmonitor`, `quit`). It reads the config file it is
 * started with and refuses what babeld refuses (no interface, a stale pid file or socket, an
 * unknown directive). It keeps babeld's quirks that matter: a `flush interface` while a
 * neighbour is on the interface is recorded as a use-after-free (babeld 1.12.1 keeps the
 * neighbour pointing at freed memory); SIGKILL leaves the pid file, the socket file and the
 * routes it installed; a route that already exists is taken as installed (EEXIST), whatever its
 * next hop.
 *
 * FakeHost holds the kernel side: links with their link-local address, addresses on lo,
 * `proto babel` routes, sysctls; it implements the `ip` commands the supervisor runs and throws
 * on any other.
 */
import { existsSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { BabeldExit, BabeldProcess, SpawnBabeld, Sysctl } from '../../src/routing/supervisor.js';
import type { Runner, RunResult } from '../../src/system/runner.js';
import { CommandError } from '../../src/errors.js';

interface FakeNeighbour {
  id: string;
  address: string;
  ifname: string;
  /** Prefixes this neighbour announces. */
  prefixes: string[];
}

const IFACE_PARAMS: Record<string, RegExp> = {
  type: /^(auto|wired|wireless|tunnel)$/,
  'hello-interval': /^[0-9]+(\.[0-9]+)?$/,
  'update-interval': /^[0-9]+(\.[0-9]+)?$/,
  'split-horizon': /^(true|false|auto)$/,
  'link-quality': /^(true|false|auto)$/,
  'v4-via-v6': /^(true|false)$/,
  rxcost: /^[0-9]+$/,
};

const CONFIG_WORDS = new Set(['local-path-readwrite', 'pid-file', 'state-file', 'skip-kernel-setup', 'random-id', 'smoothing-half-life', 'interface', 'in', 'redistribute', 'install', 'out']);

export class FakeBabeld {
  readonly interfaces = new Map<string, string>(); // name -> its parameters as given
  readonly neighbours = new Map<string, FakeNeighbour>();
  /** Every request line, in order. */
  readonly requests: string[] = [];
  /** Requests it did not understand (answered `bad`). */
  readonly unknown: string[] = [];
  /** Interfaces flushed while a neighbour was still on them (babeld 1.12.1's use-after-free). */
  readonly useAfterFree: string[] = [];
  readonly exited: Promise<BabeldExit>;
  readonly config: Map<string, string[]>;
  dead = false;
  /** Interface names this babeld answers `bad` for (as it does when it cannot parse a line). */
  readonly refuse = new Set<string>();
  /** Control connections accepted so far. */
  connections = 0;

  private server: Server | undefined;
  readonly clients = new Set<Socket>();
  private readonly monitors = new Set<Socket>();
  private resolveExit!: (e: BabeldExit) => void;
  private nextId = 0x55aa00;
  /** Routes this babeld announces (its xroutes), e.g. a gateway's default. */
  readonly xroutes = new Set<string>();
  /** Installed routes as this babeld believes: prefix -> "via LL dev IF" (EEXIST included). */
  private readonly installed = new Map<string, string>();

  constructor(readonly host: FakeHost, readonly pid: number, configText: string, readonly socketPath: string, readonly pidFile: string) {
    this.exited = new Promise((r) => (this.resolveExit = r));
    this.config = new Map();
    for (const line of configText.split('\n')) {
      const words = line.trim().split(/\s+/);
      if (!words[0] || words[0].startsWith('#')) continue;
      const list = this.config.get(words[0]) ?? [];
      list.push(words.slice(1).join(' '));
      this.config.set(words[0], list);
    }
    for (const name of this.config.get('interface') ?? []) this.interfaces.set(name.split(' ')[0]!, name);
  }

  /** What babeld checks before it serves: returns an error line (and exits 1) or undefined. */
  preflight(): string | undefined {
    for (const word of this.config.keys()) if (!CONFIG_WORDS.has(word)) return `Couldn't parse configuration (unknown directive ${word}).`;
    if (!this.interfaces.size) return 'Eek... asked to run on no interfaces!';
    if (existsSync(this.pidFile)) return `creat(${this.pidFile}): File exists`;
    return undefined;
  }

  async listen(): Promise<void> {
    writeFileSync(this.pidFile, String(this.pid), { flag: 'wx' });
    const server = createServer((sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    this.server = server;
  }

  /** The process ends. SIGTERM: routes removed, socket and pid file unlinked. SIGKILL: nothing cleaned. */
  kill(signal: 'SIGTERM' | 'SIGKILL' = 'SIGKILL'): void {
    if (this.dead) return;
    this.dead = true;
    for (const c of this.clients) c.destroy();
    this.server?.close();
    if (signal === 'SIGTERM') {
      for (const [prefix, how] of this.installed) this.host.babelRoutes.delete(`${prefix} ${how}`);
      rmSync(this.socketPath, { force: true });
      rmSync(this.pidFile, { force: true });
      writeFileSync(this.socketPath.replace(/\.sock$/, '.state'), '12345\n');
    } else if (this.server) {
      // close() unlinks a unix socket in node; a killed babeld leaves the file behind.
      this.server.once('close', () => writeFileSync(this.socketPath, ''));
    }
    this.resolveExit(signal === 'SIGTERM' ? { code: 0, signal: null } : { code: null, signal: 'SIGKILL' });
  }

  /** babeld exits 1 at start (after its pid file, it removes it again: babeld.c fail_pid). */
  failStart(): void {
    this.dead = true;
    rmSync(this.pidFile, { force: true });
    this.resolveExit({ code: 1, signal: null });
  }

  /** The kernel gains a route babeld redistributes (a gateway's uplink default). */
  announce(prefix: string): void {
    this.xroutes.add(prefix);
    this.emit(this.xrouteLine('add', prefix));
  }

  /** That route goes: babeld flushes its xroute (and 1.12.1 forgets to retract it). */
  withdraw(prefix: string): void {
    if (!this.xroutes.delete(prefix)) throw new Error(`fake babeld: no xroute ${prefix}`);
    this.emit(this.xrouteLine('flush', prefix));
  }

  private xrouteLine(kind: string, prefix: string): string {
    const from = prefix.includes(':') ? '::/0' : '0.0.0.0/0';
    return `${kind} xroute ${prefix}-${from} prefix ${prefix} from ${from} metric 0`;
  }

  /** A neighbour appears on an interface (hellos heard), announcing `prefixes`. */
  addNeighbour(ifname: string, address: string, prefixes: string[] = []): string {
    const id = (this.nextId++).toString(16);
    this.neighbours.set(id, { id, address, ifname, prefixes });
    this.emit(`add neighbour ${id} address ${address} if ${ifname} reach ffff ureach 0000 rxcost 96 txcost 96 cost 96`);
    this.syncKernel();
    return id;
  }

  /** The neighbours on `ifname` time out (no hello for 16 intervals). */
  expireNeighbours(ifname: string): void {
    for (const n of [...this.neighbours.values()]) {
      if (n.ifname !== ifname) continue;
      this.neighbours.delete(n.id);
      this.emit(`flush neighbour ${n.id} address ${n.address} if ${ifname} reach 0000 ureach 0000 rxcost 65535 txcost 65535 cost 65535`);
    }
    this.syncKernel();
  }

  private up(name: string): { up: boolean; ll: string | undefined } {
    const ll = this.host.links.get(name);
    return { up: this.interfaces.has(name) && ll !== undefined, ll };
  }

  private interfaceLine(kind: string, name: string): string {
    const s = this.up(name);
    return s.up ? `${kind} interface ${name} up true ipv6 ${s.ll}` : `${kind} interface ${name} up false`;
  }

  /** Installs the best route per prefix over interfaces that are up; takes an existing one as its own. */
  syncKernel(): void {
    if (this.dead) return;
    const want = new Map<string, string>();
    for (const n of this.neighbours.values())
      if (this.up(n.ifname).up) for (const p of n.prefixes) if (!want.has(p)) want.set(p, `via ${n.address} dev ${n.ifname}`);
    for (const [prefix, how] of this.installed) {
      if (want.get(prefix) === how) continue;
      this.host.babelRoutes.delete(`${prefix} ${how}`);
      this.installed.delete(prefix);
    }
    for (const [prefix, how] of want) {
      if (this.installed.has(prefix)) continue;
      const existing = [...this.host.babelRoutes].find((r) => r.startsWith(`${prefix} `));
      // EEXIST counts as installed (route.c install_route), even with another next hop.
      if (existing) this.installed.set(prefix, existing.slice(prefix.length + 1));
      else {
        this.host.babelRoutes.add(`${prefix} ${how}`);
        this.installed.set(prefix, how);
      }
    }
  }

  private dumpLines(): string[] {
    const lines = [...this.interfaces.keys()].map((name) => this.interfaceLine('add', name));
    for (const x of this.xroutes) lines.push(this.xrouteLine('add', x));
    for (const n of this.neighbours.values()) lines.push(`add neighbour ${n.id} address ${n.address} if ${n.ifname} reach ffff ureach 0000 rxcost 96 txcost 96 cost ${this.up(n.ifname).up ? 96 : 65535}`);
    let r = 0;
    for (const n of this.neighbours.values()) {
      for (const p of n.prefixes) {
        const installed = this.installed.get(p) === `via ${n.address} dev ${n.ifname}` ? 'yes' : 'no';
        const metric = this.up(n.ifname).up ? 96 : 65535;
        const from = p.includes(':') ? '::/0' : '0.0.0.0/0';
        lines.push(`add route ${(0x77000 + r++).toString(16)} prefix ${p} from ${from} installed ${installed} id 02:00:00:ff:fe:00:00:01 metric ${metric} refmetric 0 via ${n.address} if ${n.ifname}`);
      }
    }
    return lines;
  }

  private emit(line: string): void {
    for (const m of this.monitors) m.write(line + '\n');
  }

  private accept(sock: Socket): void {
    if (this.dead) return void sock.destroy();
    this.clients.add(sock);
    this.connections++;
    sock.on('close', () => {
      this.clients.delete(sock);
      this.monitors.delete(sock);
    });
    sock.on('error', () => undefined);
    sock.write(`BABEL 1.0\nversion ${this.host.version}\nhost fake\nmy-id 02:00:00:ff:fe:00:00:${(this.pid % 256).toString(16).padStart(2, '0')}\nok\n`);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const reply = this.handle(sock, line);
        if (reply !== undefined && !sock.destroyed) sock.write(reply);
      }
    });
  }

  /** One request; returns what to write back (undefined for `quit`). */
  private handle(sock: Socket, line: string): string | undefined {
    this.requests.push(line);
    const w = line.trim().split(/\s+/);
    switch (w[0]) {
      case 'dump':
        if (w.length !== 1) break;
        return this.dumpLines().map((l) => l + '\n').join('') + 'ok\n';
      case 'monitor':
        if (w.length !== 1) break;
        this.monitors.add(sock);
        return this.dumpLines().map((l) => l + '\n').join('') + 'ok\n';
      case 'unmonitor':
        this.monitors.delete(sock);
        return 'ok\n';
      case 'quit':
        sock.end();
        return undefined;
      case 'interface': {
        const name = w[1];
        if (!name || w.length % 2 !== 0) break;
        if (this.refuse.has(name)) return 'bad\n';
        for (let i = 2; i < w.length; i += 2) if (!IFACE_PARAMS[w[i]!]?.test(w[i + 1]!)) return this.bad(line);
        if (!this.interfaces.has(name)) {
          this.interfaces.set(name, w.slice(2).join(' '));
          this.emit(this.interfaceLine('add', name));
          this.syncKernel();
        } // else: "new configuration ignored", as babeld does
        return 'ok\n';
      }
      case 'flush': {
        if (w[1] !== 'interface' || !w[2] || w.length !== 3) break;
        const name = w[2];
        if (!this.interfaces.has(name)) return 'no No such interface\n';
        if ([...this.neighbours.values()].some((n) => n.ifname === name)) this.useAfterFree.push(name);
        this.emit(`flush interface ${name} up false`);
        this.interfaces.delete(name);
        this.syncKernel();
        return 'ok\n';
      }
    }
    return this.bad(line);
  }

  private bad(line: string): string {
    this.unknown.push(line);
    return 'bad\n';
  }
}

/** The kernel and process side the supervisor sees. */
export class FakeHost {
  /** Links (tunnels) that exist, with their fe80 address (undefined: none yet). */
  readonly links = new Map<string, string | undefined>();
  loUp = false;
  readonly loAddresses = new Set<string>();
  /** `proto babel` routes: "PREFIX via LL dev IF". */
  readonly babelRoutes = new Set<string>();
  readonly sysctls = new Map<string, string>([['net/ipv4/ip_forward', '0'], ['net/ipv6/conf/all/forwarding', '0']]);
  readonly daemons: FakeBabeld[] = [];
  readonly ipLog: string[] = [];
  /** What the fake babelds say they are (the supervisor works around bugs by version). */
  version = 'babeld-1.12.1';
  /** When set, the next spawn fails like a missing binary would. */
  failNextSpawn: string | undefined;
  private nextPid = 4000;

  constructor(initialLo: string[] = ['127.0.0.1/8', '::1/128']) {
    for (const a of initialLo) this.loAddresses.add(a);
  }

  get current(): FakeBabeld | undefined {
    const d = this.daemons[this.daemons.length - 1];
    return d && !d.dead ? d : undefined;
  }

  setLink(name: string, linkLocal: string | undefined): void {
    this.links.set(name, linkLocal);
    for (const d of this.daemons) d.syncKernel();
  }

  removeLink(name: string): void {
    this.links.delete(name);
    for (const r of [...this.babelRoutes]) if (r.endsWith(` dev ${name}`)) this.babelRoutes.delete(r);
    for (const [k] of this.sysctls) if (k.startsWith(`net/ipv4/conf/${name}/`)) this.sysctls.delete(k);
    for (const d of this.daemons) d.syncKernel();
  }

  readonly sysctl: Sysctl = {
    read: async (key) => {
      const m = /^net\/ipv4\/conf\/([^/]+)\/rp_filter$/.exec(key);
      if (m && this.links.has(m[1]!) && !this.sysctls.has(key)) return '1'; // a strict distro default
      return this.sysctls.get(key);
    },
    write: async (key, value) => {
      const m = /^net\/ipv4\/conf\/([^/]+)\//.exec(key);
      if (m && !this.links.has(m[1]!)) throw new Error(`fake sysctl: no interface ${m[1]}`);
      if (!m && !this.sysctls.has(key)) throw new Error(`fake sysctl: unknown key ${key}`);
      this.sysctls.set(key, value);
    },
  };

  readonly spawn: SpawnBabeld = (argv, { logFile }) => {
    if (argv[1] !== '-c' || !argv[2] || argv.length !== 3) throw new Error(`fake spawn: unexpected argv ${argv.join(' ')}`);
    const pid = this.nextPid++;
    appendFileSync(logFile, ''); // the real spawn opens it for babeld's output
    if (this.failNextSpawn) {
      const error = this.failNextSpawn;
      this.failNextSpawn = undefined;
      return { pid: undefined, exited: Promise.resolve({ code: null, signal: null, error }), kill: () => undefined };
    }
    const text = readFileSync(argv[2], 'utf8');
    const get = (k: string) => text.split('\n').find((l) => l.startsWith(`${k} `))?.slice(k.length + 1);
    const socket = get('local-path-readwrite');
    const pidFile = get('pid-file');
    if (!socket || !pidFile) throw new Error('fake spawn: config has no socket or pid file');
    const d = new FakeBabeld(this, pid, text, socket, pidFile);
    this.daemons.push(d);
    const exitWith = (line: string) => {
      appendFileSync(logFile, line + '\n');
      d.dead = true;
      return { pid, exited: Promise.resolve({ code: 1, signal: null }), kill: () => undefined };
    };
    const refused = d.preflight();
    if (refused) return exitWith(refused);
    d.listen().catch((err: Error) => {
      appendFileSync(logFile, `local_server_socket: ${err.message}\n`);
      d.failStart();
    });
    const proc: BabeldProcess = { pid, exited: d.exited, kill: (signal) => d.kill(signal) };
    return proc;
  };

  readonly run: Runner = async (argv, options = {}) => {
    const line = argv.join(' ');
    this.ipLog.push(options.input ? `${line} <<< ${options.input.trim().replace(/\n/g, '; ')}` : line);
    const ok = (stdout = ''): RunResult => ({ argv, exitCode: 0, stdout, stderr: '' });
    if (/^ip -[46] route flush proto babel$/.test(line)) {
      const v6 = argv[1] === '-6';
      for (const r of [...this.babelRoutes]) if (r.split(' ')[0]!.includes(':') === v6) this.babelRoutes.delete(r);
      return ok();
    }
    if (line === 'ip -j address show dev lo') {
      const info = [...this.loAddresses].map((a) => ({ local: a.split('/')[0], prefixlen: Number(a.split('/')[1]) }));
      return ok(JSON.stringify([{ ifname: 'lo', addr_info: info }]));
    }
    if (line === 'ip -batch -' || line === 'ip -force -batch -') {
      for (const cmd of (options.input ?? '').split('\n').filter(Boolean)) {
        const w = cmd.split(' ');
        if (cmd === 'link set dev lo up') this.loUp = true;
        else if (w[0] === 'address' && w[1] === 'add' && w[3] === 'dev' && w[4] === 'lo' && w.length === 5) {
          if (this.loAddresses.has(w[2]!)) throw new CommandError(argv, 2, 'RTNETLINK answers: File exists');
          this.loAddresses.add(w[2]!);
        } else if (w[0] === 'address' && w[1] === 'del' && w[3] === 'dev' && w[4] === 'lo' && w.length === 5) {
          if (!this.loAddresses.delete(w[2]!) && line === 'ip -batch -') throw new CommandError(argv, 2, 'RTNETLINK answers: Cannot assign requested address');
        } else throw new Error(`fake ip: cannot parse batch line: ${cmd}`);
      }
      return ok();
    }
    throw new Error(`fake ip: unknown command: ${line}`);
  };

  /** The whole host as sorted text. */
  render(): string {
    const d = this.current;
    return [
      `lo ${this.loUp ? 'up' : 'down'}: ${[...this.loAddresses].sort().join(' ')}`,
      ...[...this.babelRoutes].sort().map((r) => `route ${r} proto babel`),
      ...[...this.sysctls].sort().map(([k, v]) => `sysctl ${k}=${v}`),
      `babeld: ${d ? `pid ${d.pid}, interfaces ${[...d.interfaces.keys()].sort().join(' ')}` : 'none'}`,
    ].join('\n');
  }
}
