/**
 * Applies traffic plans to the kernel: the filter (nftables table, or iptables chains where
 * there is no nft) replaced atomically when its text changes, and the tc trees changed with one
 * `tc -batch` of the differences (src/traffic/tc.ts). Owns only what it made: its nft table or
 * chains, and root qdiscs with handle 5c: — an uplink that already has someone else's root qdisc
 * is left alone (and logged), never replaced.
 */
import { promises as fs } from 'node:fs';
import type { Logger } from 'pino';
import { parseRate } from '../config/units.js';
import { ScroogeError } from '../errors.js';
import { HANDLE, neighborOfClass, planTraffic, type TcTree, type TrafficInput } from '../traffic/plan.js';
import { IPT_FILTER_CHAIN, IPT_GUARD_CHAIN, IPT_MANGLE_CHAIN, IPT_NAT_CHAIN, iptablesRestore, NFT_REMOVE, nftRuleset } from '../traffic/rules.js';
import { tcCommands } from '../traffic/tc.js';
import type { Runner } from './runner.js';

export type FilterBackend = 'nft' | 'iptables';

/** Root qdiscs the kernel puts on a device by itself; replacing them takes nothing from anyone. */
const DEFAULT_ROOTS = new Set(['noqueue', 'pfifo_fast', 'fq_codel', 'mq', 'fq', 'pfifo', 'sfq', 'cake']);

interface LiveQdisc {
  kind: string;
  handle: string;
  dev: string;
  root?: boolean;
}

export interface ApplyReport {
  filterChanged: boolean;
  tcCommands: number;
  ms: number;
}

/** The device's ifindex, or undefined if there is no such device (this network namespace). */
async function deviceIndex(dev: string): Promise<number | undefined> {
  try {
    return Number((await fs.readFile(`/sys/class/net/${dev}/ifindex`, 'utf8')).trim());
  } catch {
    return undefined;
  }
}

export class TrafficControl {
  readonly log: Logger | undefined;
  private filterBackend: FilterBackend = 'nft';
  private leaf: 'fq_codel' | 'none' = 'fq_codel';
  /** Trees as last applied, by device, with the device's ifindex (a re-created device is new). */
  private current = new Map<string, { tree: TcTree; ifindex: number }>();
  /** The filter as last applied; '' until the first apply (which builds it fresh). */
  private lastFilter = '';
  private iptablesJumps = false;
  private natJumps = false;
  /** The discovery port the ip6tables guard's INPUT jump is for (added once, removed on stop). */
  private guardPort: number | undefined;
  /** iptables counters restart at each restore: what they had counted before. */
  private droppedBefore = 0;
  private guardDroppedBefore = 0;
  /** Devices whose root qdisc was looked at (by ifindex), and those with someone else's. */
  private checked = new Map<string, number>();
  private foreign = new Set<string>();
  private started = false;
  /** Neighbor key -> its uplink class, as last applied (for liveClasses). */
  private classOf: ReadonlyMap<string, string> = new Map();

  constructor(
    private readonly deps: { run: Runner; logger?: Logger; deviceIndex?: (dev: string) => Promise<number | undefined> },
    private readonly opts: { backend: 'auto' | FilterBackend },
  ) {
    this.log = deps.logger?.child({ component: 'traffic' });
  }

  get backend(): FilterBackend {
    return this.filterBackend;
  }

  /** Picks the filter backend. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.filterBackend = await this.pickBackend();
    this.log?.info({ backend: this.backend }, `packet filter: ${this.filterBackend === 'nft' ? 'nftables table inet scrooge' : 'iptables chains SCROOGE-*'}`);
  }

  private async pickBackend(): Promise<FilterBackend> {
    const has = async (argv: string[]) => this.deps.run(argv).then(() => true, () => false);
    if (this.opts.backend !== 'iptables' && (await has(['nft', 'list', 'tables']))) return 'nft';
    if (this.opts.backend === 'nft') throw new ScroogeError('ENONFT', 'traffic.backend is "nft" but nft does not work here', 'install nftables, or set traffic.backend to "auto"');
    if (await has(['iptables', '-w', '-L', 'FORWARD', '-n'])) return 'iptables';
    throw new ScroogeError('ENOFILTER', 'neither nft nor iptables works here: cannot keep untunneled traffic from being forwarded',
      'install nftables (apt-get install --no-install-recommends nftables) or iptables');
  }

  /**
   * An uplink's root qdisc, looked at once per device (again if the device is re-created):
   * ours (5c:, left by a previous run: rebuilt) or the kernel's default can be replaced;
   * anyone else's is left alone, and so is the device.
   */
  private async checkRoots(devs: { dev: string; ifindex: number }[]): Promise<void> {
    const todo = devs.filter((d) => this.checked.get(d.dev) !== d.ifindex);
    if (!todo.length) return;
    const { stdout } = await this.deps.run(['tc', '-j', 'qdisc', 'show']);
    const roots = (JSON.parse(stdout || '[]') as LiveQdisc[]).filter((q) => q.root);
    for (const { dev, ifindex } of todo) {
      this.checked.set(dev, ifindex);
      this.foreign.delete(dev);
      const q = roots.find((r) => r.dev === dev);
      if (!q || q.handle === `${HANDLE}:` || q.handle === '0:' || DEFAULT_ROOTS.has(q.kind)) continue;
      this.foreign.add(dev);
      this.log?.error({ dev, qdisc: `${q.kind} ${q.handle}` }, `${dev} already has a root qdisc Scrooge did not make; not shaping it (remove it, or take it out of "uplinks")`);
    }
  }

  /** Plans and applies; only differences reach the kernel. Classes go in before the filter points at them. */
  async apply(input: Omit<TrafficInput, 'leaf'>): Promise<ApplyReport> {
    const started = performance.now();
    const index = this.deps.deviceIndex ?? deviceIndex;
    const present = new Map<string, number>();
    for (const dev of [...input.uplinks.map((u) => u.name), ...input.tunnels.map((t) => t.ifname)]) {
      const i = await index(dev);
      if (i !== undefined) present.set(dev, i);
    }
    await this.checkRoots(input.uplinks.filter((u) => present.has(u.name)).map((u) => ({ dev: u.name, ifindex: present.get(u.name)! })));
    const shaped = (dev: string) => present.has(dev) && !this.foreign.has(dev);
    const full: TrafficInput = {
      ...input,
      uplinks: input.uplinks.filter((u) => shaped(u.name)),
      tunnels: input.tunnels.filter((t) => present.has(t.ifname)),
      leaf: this.leaf,
    };
    const plan = planTraffic(full);

    // Trees of devices that are gone went with them; a device re-created since is new.
    const current = new Map<string, TcTree>();
    for (const [dev, c] of this.current) if (present.get(dev) === c.ifindex) current.set(dev, c.tree);
    const lines = tcCommands(current, plan.trees, (dev) => present.has(dev));
    if (lines.length) {
      try {
        await this.deps.run(['tc', '-batch', '-'], { input: lines.join('\n') + '\n' });
      } catch (err) {
        if (this.leaf !== 'none' && /qdisc kind is unknown/i.test((err as Error).message)) {
          // No fq_codel in this kernel: HTB's default leaves (pfifo) it is.
          this.log?.info('fq_codel is not available in this kernel; leaf queues stay pfifo');
          this.leaf = 'none';
          this.current.clear();
          return this.apply(input);
        }
        // We no longer know what the kernel holds for these trees: rebuild them next time.
        for (const t of plan.trees) this.current.delete(t.dev);
        throw err;
      }
    }
    this.current = new Map(plan.trees.map((t) => [t.dev, { tree: t, ifindex: present.get(t.dev)! }]));
    this.classOf = plan.classOf;

    let filterChanged = false;
    if (this.filterBackend === 'nft') {
      const text = nftRuleset(full, plan, this.lastFilter === '');
      if (text !== this.lastFilter) {
        await this.deps.run(['nft', '-f', '-'], { input: text });
        // The incremental text is what later applies are compared with.
        this.lastFilter = nftRuleset(full, plan, false);
        filterChanged = true;
      }
    } else {
      const v4 = iptablesRestore(full, plan, 'ipv4');
      const v6 = iptablesRestore(full, plan, 'ipv6');
      if (`${v4}\n${v6}` !== this.lastFilter) {
        if (this.lastFilter) {
          this.droppedBefore += await this.iptablesDrops();
          this.guardDroppedBefore += await this.chainDrops('ip6tables', IPT_GUARD_CHAIN);
        }
        await this.applyIptables(v4, v6, full.discovery?.port, !!full.masquerade);
        this.lastFilter = `${v4}\n${v6}`;
        filterChanged = true;
      }
    }
    return { filterChanged, tcCommands: lines.length, ms: Math.round(performance.now() - started) };
  }

  /** The jumps into our chains, each added once (`-C` first: a previous run may have left it). */
  private async jump(cmd: string, table: string, hook: string, spec: string[]): Promise<void> {
    const present = await this.deps.run([cmd, '-w', '-t', table, '-C', hook, ...spec]).then(() => true, () => false);
    if (!present) await this.deps.run([cmd, '-w', '-t', table, '-I', hook, '1', ...spec]);
  }

  private guardJump(port: number): string[] {
    return ['-p', 'udp', '--dport', String(port), '-j', IPT_GUARD_CHAIN];
  }

  private async applyIptables(v4: string, v6: string, guardPort: number | undefined, masquerade: boolean): Promise<void> {
    await this.deps.run(['iptables-restore', '-w', '--noflush'], { input: v4 });
    await this.deps.run(['ip6tables-restore', '-w', '--noflush'], { input: v6 });
    if (!this.iptablesJumps) {
      for (const cmd of ['iptables', 'ip6tables']) {
        for (const [table, chain] of [['filter', IPT_FILTER_CHAIN], ['mangle', IPT_MANGLE_CHAIN]] as const) await this.jump(cmd, table, 'FORWARD', ['-j', chain]);
      }
      this.iptablesJumps = true;
    }
    if (guardPort !== undefined && this.guardPort === undefined) {
      await this.jump('ip6tables', 'filter', 'INPUT', this.guardJump(guardPort));
      this.guardPort = guardPort;
    }
    if (masquerade && !this.natJumps) {
      for (const cmd of ['iptables', 'ip6tables']) await this.jump(cmd, 'nat', 'POSTROUTING', ['-j', IPT_NAT_CHAIN]);
      this.natJumps = true;
    }
  }

  /** Removes exactly what this agent added: the filter, and its root qdiscs on present devices. */
  async stop(): Promise<void> {
    if (!this.started) return;
    if (this.filterBackend === 'nft') {
      await this.deps.run(['nft', '-f', '-'], { input: NFT_REMOVE }).catch((err) => this.log?.error({ err: (err as Error).message }, 'removing nft table failed'));
    } else {
      const remove = async (cmd: string, table: string, hook: string, chain: string, spec: string[]) => {
        await this.deps.run([cmd, '-w', '-t', table, '-D', hook, ...spec], { okExitCodes: [0, 1, 2] });
        await this.deps.run([cmd, '-w', '-t', table, '-F', chain], { okExitCodes: [0, 1] });
        await this.deps.run([cmd, '-w', '-t', table, '-X', chain], { okExitCodes: [0, 1] });
      };
      for (const cmd of ['iptables', 'ip6tables']) {
        for (const [table, chain] of [['filter', IPT_FILTER_CHAIN], ['mangle', IPT_MANGLE_CHAIN]] as const) await remove(cmd, table, 'FORWARD', chain, ['-j', chain]);
      }
      if (this.guardPort !== undefined) await remove('ip6tables', 'filter', 'INPUT', IPT_GUARD_CHAIN, this.guardJump(this.guardPort));
      this.guardPort = undefined;
      if (this.natJumps) for (const cmd of ['iptables', 'ip6tables']) await remove(cmd, 'nat', 'POSTROUTING', IPT_NAT_CHAIN, ['-j', IPT_NAT_CHAIN]);
      this.natJumps = false;
      this.iptablesJumps = false;
    }
    const lines: string[] = [];
    const index = this.deps.deviceIndex ?? deviceIndex;
    for (const [dev, c] of this.current) if ((await index(dev)) === c.ifindex) lines.push(`qdisc del dev ${dev} root`);
    if (lines.length) await this.deps.run(['tc', '-force', '-batch', '-'], { input: lines.join('\n') + '\n', okExitCodes: [0, 1] });
    this.current.clear();
    this.lastFilter = '';
    this.droppedBefore = 0;
    this.guardDroppedBefore = 0;
  }

  /** Packets dropped because they came from a mesh interface without a tunnel. */
  async untunneledDrops(): Promise<number> {
    if (!this.lastFilter) return 0;
    if (this.filterBackend === 'nft') return this.nftCounter('untunneled');
    return this.droppedBefore + (await this.iptablesDrops());
  }

  /** Datagrams to the discovery port the kernel dropped before the agent saw them (the guard). */
  async discoveryDrops(): Promise<number> {
    if (!this.lastFilter) return 0;
    if (this.filterBackend === 'nft') return this.nftCounter('discovery_dropped');
    return this.guardDroppedBefore + (await this.chainDrops('ip6tables', IPT_GUARD_CHAIN));
  }

  private async nftCounter(name: string): Promise<number> {
    const { stdout } = await this.deps.run(['nft', '-j', 'list', 'counter', 'inet', 'scrooge', name]);
    const entries = (JSON.parse(stdout) as { nftables: { counter?: { packets: number } }[] }).nftables;
    return entries.find((e) => e.counter)?.counter?.packets ?? 0;
  }

  private async iptablesDrops(): Promise<number> {
    return (await this.chainDrops('iptables', IPT_FILTER_CHAIN)) + (await this.chainDrops('ip6tables', IPT_FILTER_CHAIN));
  }

  /** Packets counted by the DROP rules of one of our chains (iptables -L -v -x). */
  private async chainDrops(cmd: string, chain: string): Promise<number> {
    const { stdout } = await this.deps.run([cmd, '-w', '-L', chain, '-n', '-v', '-x'], { okExitCodes: [0, 1] });
    let total = 0;
    for (const line of stdout.split('\n').slice(2)) {
      const f = line.trim().split(/\s+/);
      const packets = Number(f[0]);
      if (f[2] === 'DROP' && Number.isFinite(packets)) total += packets;
    }
    return total;
  }

  /** The live classes (with byte/packet/drop counters, and the neighbor each is sold to) of every tree this agent manages. */
  async liveClasses(): Promise<LiveTree[]> {
    const out: LiveTree[] = [];
    for (const { tree: t } of this.current.values()) {
      // This iproute2 prints htb classes as text even with -j: parse the text.
      const { stdout } = await this.deps.run(['tc', '-s', 'class', 'show', 'dev', t.dev], { okExitCodes: [0, 1] });
      const classes = parseTcClasses(stdout).filter((c) => c.classid.startsWith(`${HANDLE}:`));
      out.push({ dev: t.dev, kind: t.kind, neighbor: t.neighbor, classes: classes.map((c) => ({ ...c, neighbor: neighborOfClass(c.classid, this.classOf) ?? null })) });
    }
    return out;
  }
}

/** Parses `tc -s class show` text: a header line per class, then its counters. */
export function parseTcClasses(text: string): LiveClass[] {
  const out: LiveClass[] = [];
  let cur: LiveClass | undefined;
  for (const line of text.split('\n')) {
    const head = /^class \S+ (\S+) (?:root|parent (\S+))(?:.*? rate (\S+))?(?:.*? ceil (\S+))?/.exec(line);
    if (head) {
      cur = { classid: head[1]!, parent: head[2] ?? null, rate: head[3] ? (parseRate(head[3]) ?? null) : null, ceil: head[4] ? (parseRate(head[4]) ?? null) : null, bytes: 0, packets: 0, drops: 0 };
      out.push(cur);
      continue;
    }
    const sent = /Sent (\d+) bytes (\d+) pkt \(dropped (\d+)/.exec(line);
    if (sent && cur) {
      cur.bytes = Number(sent[1]);
      cur.packets = Number(sent[2]);
      cur.drops = Number(sent[3]);
    }
  }
  return out;
}

export interface LiveTree {
  dev: string;
  kind: 'uplink' | 'tunnel';
  /** The neighbor a tunnel's tree is for. */
  neighbor: string | undefined;
  classes: (LiveClass & { neighbor: string | null })[];
}

export interface LiveClass {
  classid: string;
  parent: string | null;
  /** bit/s */
  rate: number | null;
  ceil: number | null;
  bytes: number;
  packets: number;
  drops: number;
}
