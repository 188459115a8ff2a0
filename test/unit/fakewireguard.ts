/**
 * A stateful fake of what the WireGuard backends ask of the system (their host interface,
 * src/system/wireguard/backend.ts): the links of one network namespace, wireguard-go daemons
 * and their UAPI, `wg setconf` / `wg show all dump` for the kernel backend, `ip -batch` for
 * links and addresses, and which UDP ports are held. It keeps tables, throws on any command it
 * does not understand, and prints itself as sorted text (`render`), so tests check the state
 * reached, not the calls made (STYLE.md; Tailscale's fakeOS).
 *
 * Hosts on one FakeWireGuardNet handshake: two configured ends whose keys name each other have
 * a handshake and receive keepalives, as real WireGuard peers would.
 */
import { CommandError } from '../../src/errors.js';
import { x25519PublicKey } from '../../src/protocol/crypto.js';
import type { RunOptions, RunResult } from '../../src/system/runner.js';
import type { KernelHost } from '../../src/system/wireguard/kernel.js';
import type { UserspaceHost } from '../../src/system/wireguard/userspace.js';

interface PeerConfig {
  publicKey: string; // hex
  endpoint: string;
  keepalive: number;
  allowed: string[];
}

interface FakeLink {
  ifindex: number;
  /** 'daemon': a wireguard-go process serves it; 'kernel': made with ip link add. */
  kind: 'daemon' | 'kernel';
  up: boolean;
  mtu: number;
  addrgenmode: string;
  addresses: Set<string>;
  privateKey: string | undefined; // hex
  listenPort: number;
  peer: PeerConfig | undefined;
}

const hexOf = (b64: string) => Buffer.from(b64, 'base64').toString('hex');
const b64Of = (hex: string) => Buffer.from(hex, 'hex').toString('base64');

export class FakeWireGuardNet {
  readonly hosts: FakeWireGuard[] = [];
  /** First handshake per "host/ifname/local public key", in wall-clock ms. */
  private readonly handshakes = new Map<string, number>();
  constructor(readonly wall: () => number) {}

  host(name: string, otherLinks: string[] = ['lo', 'eth0']): FakeWireGuard {
    const h = new FakeWireGuard(this, name, otherLinks);
    this.hosts.push(h);
    return h;
  }

  /** The peer end of `link` on another host, if both are configured for each other. */
  private matching(host: FakeWireGuard, link: FakeLink): FakeLink | undefined {
    if (!link.privateKey || !link.peer) return undefined;
    const mine = Buffer.from(x25519PublicKey(Buffer.from(link.privateKey, 'hex'))).toString('hex');
    for (const other of this.hosts) {
      if (other === host) continue;
      for (const l of other.linkTable.values()) {
        if (!l.privateKey || !l.peer || l.peer.publicKey !== mine) continue;
        if (Buffer.from(x25519PublicKey(Buffer.from(l.privateKey, 'hex'))).toString('hex') === link.peer.publicKey) return l;
      }
    }
    return undefined;
  }

  /** Latest handshake (unix ms, 0 if none) and bytes received, as WireGuard would report them. */
  stats(host: FakeWireGuard, ifname: string, link: FakeLink): { handshakeMs: number; rx: number } {
    const key = `${host.name}/${ifname}/${link.privateKey}/${link.peer?.publicKey}`;
    if (!this.matching(host, link)) return { handshakeMs: this.handshakes.get(key) ?? 0, rx: 0 };
    if (!this.handshakes.has(key)) this.handshakes.set(key, this.wall());
    const since = this.handshakes.get(key)!;
    // Keepalives: 32 bytes every keepalive interval since the handshake.
    return { handshakeMs: this.wall(), rx: 148 + 32 * Math.floor((this.wall() - since) / 1000 / (link.peer!.keepalive || 5)) };
  }
}

export class FakeWireGuard implements UserspaceHost, KernelHost {
  readonly linkTable = new Map<string, FakeLink>();
  /** UDP ports held by some other program. */
  readonly heldPorts = new Set<number>();
  /** Daemon starts that fail (the next N), and whether the kernel has the module. */
  failDaemonStarts = 0;
  /** Called when a link appears or goes (the FakeKernel follows along in agent tests). */
  onLink: ((event: 'add' | 'del', ifname: string) => void) | undefined;
  private nextIndex = 100;
  private readonly secrets = new Map<string, string>();
  private secretSeq = 0;

  constructor(private readonly net: FakeWireGuardNet, readonly name: string, private readonly otherLinks: string[]) {}

  // ---------------------------------------------------------------- the host interface

  run = async (argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> => {
    const ok = (stdout = '') => ({ argv, exitCode: 0, stdout, stderr: '' });
    const cmd = argv.join(' ');
    if (cmd === 'ip -batch -' || cmd === 'ip -force -batch -') {
      const force = cmd.includes('-force');
      let failed: string | undefined;
      for (const line of (opts.input ?? '').split('\n').filter(Boolean)) {
        try {
          this.ipLine(line);
        } catch (err) {
          failed ??= (err as Error).message;
          if (!force) break;
        }
      }
      if (failed) {
        if (force && (opts.okExitCodes ?? [0]).includes(1)) return { argv, exitCode: 1, stdout: '', stderr: failed };
        throw new CommandError(argv, 1, failed);
      }
      return ok();
    }
    if (argv[0] === 'ip' && argv[1] === 'link' && argv[2] === 'add') {
      this.ipLine(argv.slice(1).join(' '));
      return ok();
    }
    if (argv[0] === 'wg' && argv[1] === 'setconf' && argv.length === 4) {
      const text = this.secrets.get(argv[3]!);
      if (text === undefined) throw new CommandError(argv, 1, `Unable to open configuration file: ${argv[3]}`);
      this.setconf(argv[2]!, text, argv);
      return ok();
    }
    if (cmd === 'wg show all dump') return ok(this.dump());
    throw new Error(`fake wireguard: unexpected command: ${cmd}`);
  };

  async links(): Promise<string[]> {
    return [...this.otherLinks, ...this.linkTable.keys()];
  }

  async portFree(port: number): Promise<boolean> {
    return !this.heldPorts.has(port) && ![...this.linkTable.values()].some((l) => l.privateKey !== undefined && l.listenPort === port);
  }

  async startDaemon(ifname: string): Promise<void> {
    if (this.failDaemonStarts > 0) {
      this.failDaemonStarts--;
      throw new Error(`wireguard-go ${ifname} exited 1 (fake)`);
    }
    if (this.linkTable.has(ifname)) throw new Error(`wireguard-go ${ifname} exited 1: interface exists (fake)`);
    this.addLink(ifname, 'daemon');
  }

  async uapi(ifname: string, request: string): Promise<string> {
    const link = this.linkTable.get(ifname);
    if (!link || link.kind !== 'daemon') throw Object.assign(new Error(`connect ENOENT /var/run/wireguard/${ifname}.sock`), { code: 'ENOENT' });
    const lines = request.split('\n');
    if (lines[0] === 'get=1') return this.uapiGet(ifname, link);
    if (lines[0] !== 'set=1') throw new Error(`fake wireguard: bad UAPI request ${JSON.stringify(request)}`);
    let port = link.listenPort;
    let privateKey = link.privateKey;
    let peer: PeerConfig | undefined = link.peer;
    for (const line of lines.slice(1).filter(Boolean)) {
      const [k, v] = [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)];
      switch (k) {
        case 'private_key': privateKey = v; break;
        case 'listen_port': port = Number(v); break;
        case 'replace_peers': peer = undefined; break;
        case 'public_key': peer = { publicKey: v, endpoint: '', keepalive: 0, allowed: [] }; break;
        case 'endpoint': peer!.endpoint = v; break;
        case 'persistent_keepalive_interval': peer!.keepalive = Number(v); break;
        case 'replace_allowed_ips': peer!.allowed = []; break;
        case 'allowed_ip': peer!.allowed.push(v); break;
        default: throw new Error(`fake wireguard: unknown UAPI key ${k}`);
      }
    }
    if (port !== link.listenPort && !(await this.portFree(port))) return 'errno=98\n\n';
    Object.assign(link, { privateKey, listenPort: port, peer });
    return 'errno=0\n\n';
  }

  async withSecretFile<T>(text: string, use: (path: string) => Promise<T>): Promise<T> {
    const path = `/fake/${this.name}/secret${this.secretSeq++}`;
    this.secrets.set(path, text);
    try {
      return await use(path);
    } finally {
      this.secrets.delete(path);
    }
  }

  // ---------------------------------------------------------------- what tests do to it

  /** The interface disappears (deleted by hand, or its wireguard-go was killed). */
  vanish(ifname: string): void {
    if (!this.linkTable.delete(ifname)) throw new Error(`fake wireguard: no link ${ifname}`);
    this.onLink?.('del', ifname);
  }

  ifindex(ifname: string): number | undefined {
    return this.linkTable.get(ifname)?.ifindex;
  }

  /** Latest handshake per interface (unix ms, 0 if none), as WireGuard reports it. */
  handshake(ifname: string): number {
    const l = this.linkTable.get(ifname);
    return l ? this.net.stats(this, ifname, l).handshakeMs : 0;
  }

  /** The whole state as sorted text (private keys shown by their public keys). */
  render(): string {
    const out: string[] = [];
    for (const [name, l] of [...this.linkTable].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const pub = l.privateKey ? Buffer.from(x25519PublicKey(Buffer.from(l.privateKey, 'hex'))).toString('base64') : '-';
      out.push(`${name} ${l.kind} ${l.up ? 'up' : 'down'} mtu ${l.mtu} addrgenmode ${l.addrgenmode} addr ${[...l.addresses].sort().join(',') || '-'} key ${pub} port ${l.listenPort}`);
      if (l.peer) out.push(`  peer ${b64Of(l.peer.publicKey)} endpoint ${l.peer.endpoint} keepalive ${l.peer.keepalive} allowed ${[...l.peer.allowed].sort().join(',')}`);
    }
    if (this.heldPorts.size) out.push(`held ports ${[...this.heldPorts].sort().join(',')}`);
    return out.join('\n');
  }

  // ---------------------------------------------------------------- internals

  private addLink(ifname: string, kind: FakeLink['kind']): void {
    this.linkTable.set(ifname, { ifindex: this.nextIndex++, kind, up: false, mtu: 1420, addrgenmode: 'eui64', addresses: new Set(), privateKey: undefined, listenPort: 0, peer: undefined });
    this.onLink?.('add', ifname);
  }

  private ipLine(line: string): void {
    const w = line.trim().split(/\s+/);
    const get = (dev: string) => {
      const l = this.linkTable.get(dev);
      if (!l) throw new Error(`Cannot find device "${dev}"`);
      return l;
    };
    if (w[0] === 'link' && w[1] === 'add' && w[2] === 'dev' && w[4] === 'type' && w[5] === 'wireguard' && w.length === 6) {
      if (this.linkTable.has(w[3]!)) throw new Error('RTNETLINK answers: File exists');
      this.addLink(w[3]!, 'kernel');
    } else if (w[0] === 'link' && w[1] === 'del' && w[2] === 'dev' && w.length === 4) {
      get(w[3]!);
      this.linkTable.delete(w[3]!);
      this.onLink?.('del', w[3]!);
    } else if (w[0] === 'link' && w[1] === 'set' && w[2] === 'dev' && w[4] === 'addrgenmode' && w.length === 6) {
      get(w[3]!).addrgenmode = w[5]!;
    } else if (w[0] === 'link' && w[1] === 'set' && w[2] === 'dev' && w[4] === 'mtu' && w[6] === 'up' && w.length === 7) {
      const l = get(w[3]!);
      l.mtu = Number(w[5]);
      l.up = true;
    } else if (w[0] === 'address' && w[1] === 'replace' && w[3] === 'dev' && w.length === 5) {
      get(w[4]!).addresses.add(w[2]!);
    } else {
      throw new Error(`fake ip: cannot parse: ${line}`);
    }
  }

  /** `wg setconf IFNAME FILE`: the whole interface replaced by the file's (wg-quick's INI subset). */
  private setconf(ifname: string, text: string, argv: readonly string[]): void {
    const link = this.linkTable.get(ifname);
    if (!link || link.kind !== 'kernel') throw new CommandError(argv, 1, `Unable to modify interface: No such device`);
    let privateKey: string | undefined;
    let port = 0;
    let peer: PeerConfig | undefined;
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line === '[Interface]') continue;
      if (line === '[Peer]') {
        peer = { publicKey: '', endpoint: '', keepalive: 0, allowed: [] };
        continue;
      }
      const m = /^(\w+) = (.*)$/.exec(line);
      if (!m) throw new CommandError(argv, 1, `Line unrecognized: \`${line}'`);
      const [, k, v] = m as unknown as [string, string, string];
      if (k === 'PrivateKey') privateKey = hexOf(v);
      else if (k === 'ListenPort') port = Number(v);
      else if (k === 'PublicKey' && peer) peer.publicKey = hexOf(v);
      else if (k === 'AllowedIPs' && peer) peer.allowed = v.split(', ');
      else if (k === 'Endpoint' && peer) peer.endpoint = v;
      else if (k === 'PersistentKeepalive' && peer) peer.keepalive = Number(v);
      else throw new CommandError(argv, 1, `Line unrecognized: \`${line}'`);
    }
    Object.assign(link, { privateKey, listenPort: port, peer });
  }

  private uapiGet(ifname: string, l: FakeLink): string {
    const lines = [`private_key=${l.privateKey ?? '0'.repeat(64)}`, `listen_port=${l.listenPort}`];
    if (l.peer) {
      const s = this.net.stats(this, ifname, l);
      lines.push(
        `public_key=${l.peer.publicKey}`, `endpoint=${l.peer.endpoint.replace(/%[^\]]*/, '')}`,
        `last_handshake_time_sec=${Math.floor(s.handshakeMs / 1000)}`, `last_handshake_time_nsec=${(s.handshakeMs % 1000) * 1e6}`,
        `rx_bytes=${s.rx}`, 'tx_bytes=0', `persistent_keepalive_interval=${l.peer.keepalive}`, ...l.peer.allowed.map((a) => `allowed_ip=${a}`),
      );
    }
    return [...lines, 'errno=0', '', ''].join('\n');
  }

  private dump(): string {
    const out: string[] = [];
    for (const [name, l] of this.linkTable) {
      if (l.kind !== 'kernel') continue;
      const priv = l.privateKey ? b64Of(l.privateKey) : '(none)';
      const pub = l.privateKey ? Buffer.from(x25519PublicKey(Buffer.from(l.privateKey, 'hex'))).toString('base64') : '(none)';
      out.push([name, priv, pub, String(l.listenPort), 'off'].join('\t'));
      if (l.peer) {
        const s = this.net.stats(this, name, l);
        out.push([name, b64Of(l.peer.publicKey), '(none)', l.peer.endpoint || '(none)', l.peer.allowed.join(','), String(Math.floor(s.handshakeMs / 1000)), String(s.rx), '0', String(l.peer.keepalive || 'off')].join('\t'));
      }
    }
    return out.join('\n') + (out.length ? '\n' : '');
  }
}
