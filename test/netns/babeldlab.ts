/**
 * A small hand-built lab for the routing tests, no agent involved: routers in network
 * namespaces joined by veth pairs (the raw mesh segments, IPv4 only), a wireguard-go tunnel
 * per pair carrying one fe80 address per node like the agent's (tunnelLinkLocal of the node's
 * key, addrgenmode none), and a RoutingSupervisor per node running babeld inside the
 * namespace on the tunnels only.
 *
 * Names carry a unique id: namespaces `bl<id><node>`, tunnel interfaces `w<id><a><b>` (unique on
 * the host: wireguard-go's sockets in /var/run/wireguard are shared by every namespace).
 * `destroy()` removes every tunnel, babeld, namespace and file it made, also after a failure.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tunnelLinkLocal } from '../../src/neighbors/names.js';
import { meshAddress6 } from '../../src/routing/address.js';
import { RoutingSupervisor, spawnBabeld, type RoutingOptions, type Sysctl } from '../../src/routing/supervisor.js';
import type { Runner } from '../../src/system/runner.js';
import { runner, step, until } from './lib.js';
import { running } from './proc.js';

export interface LabNode {
  name: string;
  ns: string;
  key: Uint8Array;
  linkLocal: string;
  mesh6: string;
  mesh4: string;
  stateDir: string;
  routing: RoutingSupervisor;
  /** Tunnel interfaces of this node that exist now. */
  tunnels: Set<string>;
}

export interface LabTunnel {
  a: string;
  b: string;
  /** Interface names at a's and b's end. */
  ifA: string;
  ifB: string;
}

function wgKey(): { priv: string; pub: string } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const raw = (k: { export(o: { format: 'jwk' }): { d?: string; x?: string } }, f: 'd' | 'x') => Buffer.from(k.export({ format: 'jwk' })[f]!, 'base64url').toString('base64');
  return { priv: raw(privateKey, 'd'), pub: raw(publicKey, 'x') };
}

/** The node's view of the host, inside its namespace: commands, sysctls, babeld's process. */
function nsRunner(ns: string): Runner {
  return (argv, options = {}) => runner(argv, { ...options, netns: ns });
}

function nsSysctl(ns: string): Sysctl {
  return {
    async read(key) {
      const r = await runner(['cat', `/proc/sys/${key}`], { netns: ns, okExitCodes: [0, 1] });
      return r.exitCode === 0 ? r.stdout.trim() : undefined;
    },
    async write(key, value) {
      await runner(['sysctl', '-q', '-w', `${key}=${value}`], { netns: ns });
    },
  };
}

export class Lab {
  readonly id = randomBytes(3).toString('hex');
  readonly nodes = new Map<string, LabNode>();
  readonly tunnels: LabTunnel[] = [];
  /** Every node's state directory and the key files live here. */
  readonly dir = mkdtempSync(join(tmpdir(), 'scrooge-babeldlab-'));
  private segments = 0;

  node(name: string): LabNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no lab node ${name}`);
    return n;
  }

  /** Routers `names` (single letters), each with its supervisor (not started). */
  async addNodes(names: string[], options: Partial<RoutingOptions> = {}): Promise<void> {
    for (const [i, name] of names.entries()) {
      const ns = `bl${this.id}${name}`;
      step(ns, 'netns add');
      await runner(['ip', 'netns', 'add', ns]);
      const key = randomBytes(32);
      const stateDir = join(this.dir, name);
      const mesh6 = meshAddress6(key);
      const mesh4 = `10.55.0.${i + 1}`;
      const routing = new RoutingSupervisor(
        { run: nsRunner(ns), sysctl: nsSysctl(ns), spawn: (argv, o) => spawnBabeld(['ip', 'netns', 'exec', ns, ...argv], o) },
        { stateDir, mesh6, mesh4, ...options },
      );
      this.nodes.set(name, { name, ns, key, linkLocal: tunnelLinkLocal(key), mesh6, mesh4, stateDir, routing, tunnels: new Set() });
    }
  }

  /** A veth pair between a and b (the raw segment), 10.77.<n>.1 and .2. */
  async segment(a: string, b: string): Promise<{ addrA: string; addrB: string }> {
    const n = ++this.segments;
    const [A, B] = [this.node(a), this.node(b)];
    await runner(['ip', 'link', 'add', `e${b}`, 'netns', A.ns, 'type', 'veth', 'peer', 'name', `e${a}`, 'netns', B.ns]);
    const addrA = `10.77.${n}.1`;
    const addrB = `10.77.${n}.2`;
    await runner(['ip', '-n', A.ns, 'address', 'add', `${addrA}/24`, 'dev', `e${b}`]);
    await runner(['ip', '-n', B.ns, 'address', 'add', `${addrB}/24`, 'dev', `e${a}`]);
    await runner(['ip', '-n', A.ns, 'link', 'set', `e${b}`, 'up']);
    await runner(['ip', '-n', B.ns, 'link', 'set', `e${a}`, 'up']);
    step(`${A.ns}/${B.ns}`, `segment ${addrA} - ${addrB}`);
    return { addrA, addrB };
  }

  /** A wireguard-go tunnel over the a-b segment; each end gets its node's fe80 address. */
  async tunnel(a: string, b: string, seg: { addrA: string; addrB: string }, port = 51000): Promise<LabTunnel> {
    const [A, B] = [this.node(a), this.node(b)];
    const t: LabTunnel = { a, b, ifA: `w${this.id}${a}${b}`, ifB: `w${this.id}${b}${a}` };
    const kA = wgKey();
    const kB = wgKey();
    const end = async (N: LabNode, ifname: string, me: { priv: string }, peer: { pub: string }, peerAddr: string, myPort: number, peerPort: number) => {
      const keyFile = join(this.dir, `${ifname}.key`);
      writeFileSync(keyFile, me.priv + '\n', { mode: 0o600 });
      // wireguard-go daemonizes itself and watches its TUN device: deleting the link ends it.
      await runner(['wireguard-go', ifname], { netns: N.ns });
      await runner(['wg', 'set', ifname, 'listen-port', String(myPort), 'private-key', keyFile, 'peer', peer.pub,
        'allowed-ips', '::/0,0.0.0.0/0', 'endpoint', `${peerAddr}:${peerPort}`, 'persistent-keepalive', '5'], { netns: N.ns });
      rmSync(keyFile, { force: true });
      await runner(['ip', '-batch', '-'], { netns: N.ns, input: `link set dev ${ifname} addrgenmode none\naddress replace ${N.linkLocal}/64 dev ${ifname}\nlink set dev ${ifname} mtu 1420 up\n` });
      N.tunnels.add(ifname);
    };
    await end(A, t.ifA, kA, kB, seg.addrB, port, port + 1);
    await end(B, t.ifB, kB, kA, seg.addrA, port + 1, port);
    step(`${A.ns}/${B.ns}`, `tunnel ${t.ifA} (${A.linkLocal}) <-> ${t.ifB} (${B.linkLocal})`);
    this.tunnels.push(t);
    return t;
  }

  /** Deletes a tunnel's links (its wireguard-go daemons end with them). */
  async removeTunnel(t: LabTunnel): Promise<void> {
    for (const [N, ifname] of [[this.node(t.a), t.ifA], [this.node(t.b), t.ifB]] as const) {
      await runner(['ip', '-n', N.ns, 'link', 'del', 'dev', ifname], { okExitCodes: [0, 1] });
      N.tunnels.delete(ifname);
    }
    const i = this.tunnels.indexOf(t);
    if (i >= 0) this.tunnels.splice(i, 1);
    // Wait for the daemons to go, so the names can be used again.
    await until(`wireguard-go of ${t.ifA}/${t.ifB} gone`, () => !wireguardGoOf([t.ifA, t.ifB]).length, 5000);
  }

  /** Makes each node's supervisor want exactly its current tunnels. */
  async sync(...names: string[]): Promise<void> {
    for (const name of names) {
      const N = this.node(name);
      const states = await N.routing.set([...N.tunnels].map((ifname) => ({ ifname })));
      step(N.ns, `routing.set: ${states.map((s) => `${s.ifname} ${s.state}`).join(', ') || '(none)'}`);
    }
  }

  /** Kernel route of `ns` to `prefix` installed by babeld, or undefined. */
  async babelRoute(name: string, prefix: string): Promise<string | undefined> {
    const family = prefix.includes(':') ? '-6' : '-4';
    const out = (await runner(['ip', family, '-n', this.node(name).ns, 'route', 'show', prefix, 'proto', 'babel'])).stdout.trim();
    return out || undefined;
  }

  async destroy(): Promise<void> {
    for (const N of this.nodes.values()) await N.routing.stop().catch((err) => step(N.ns, `routing.stop failed: ${String(err)}`));
    for (const N of this.nodes.values()) {
      // Whatever still runs in the namespace (a babeld a failed test left, wireguard-go).
      const pids = (await runner(['ip', 'netns', 'pids', N.ns], { okExitCodes: [0, 1] })).stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      for (const ifname of N.tunnels) await runner(['ip', '-n', N.ns, 'link', 'del', 'dev', ifname], { okExitCodes: [0, 1] });
    }
    const ours = this.allTunnelNames();
    await until('lab wireguard-go gone', () => !wireguardGoOf(ours).length, 5000).catch(() => {
      for (const p of wireguardGoOf(ours)) process.kill(p, 'SIGKILL');
    });
    for (const N of this.nodes.values()) await runner(['ip', 'netns', 'del', N.ns], { okExitCodes: [0, 1] });
    for (const name of ours) rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
    rmSync(this.dir, { recursive: true, force: true });
    step(`lab ${this.id}`, 'destroyed');
  }

  private allTunnelNames(): string[] {
    const names = [...this.nodes.values()].flatMap((n) => [...n.tunnels]);
    for (const t of this.tunnels) names.push(t.ifA, t.ifB);
    return [...new Set(names)];
  }
}

/** PIDs of wireguard-go daemons serving one of `ifnames`. */
export function wireguardGoOf(ifnames: string[]): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (argv[0]?.endsWith('wireguard-go') && ifnames.includes(argv[argv.length - 1]!) && running(Number(entry))) out.push(Number(entry));
  }
  return out;
}

/** PIDs of babeld processes running with a config file under `dir`. */
export function babeldProcesses(dir: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('babeld')) && argv.some((a) => a.startsWith(dir)) && running(Number(entry))) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

