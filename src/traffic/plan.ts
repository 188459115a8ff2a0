/**
 * The traffic planner (pure): from the node's share, its interfaces and its tunnels with each
 * neighbor's priority and cap, the whole desired kernel state — one HTB tree per egress
 * interface (uplinks and tunnels) and the packet filter that drops untunneled forwarding and
 * tells HTB which class a forwarded packet belongs to. tc/README.md draws the trees.
 *
 * Classification needs no tc filter: the filter sets the packet's priority (skb->priority) to
 * a class id, and HTB puts a packet whose priority names one of its own classes in that class.
 *
 * The same tree on every egress interface: each neighbor a class under the sold class, with a
 * guaranteed rate in proportion to its priority and a ceiling at its cap. On an uplink a
 * neighbor's class holds what it sends out through this router; on the tunnel to neighbor N,
 * N's class holds what this router sends N from elsewhere (its uplinks, its LAN), and, where
 * the router relays for the mesh (`relay`: routing is on), every other neighbor A has a class
 * there too for what A sends on through N. So two far neighbors whose flows meet at a relay
 * share its next tunnel by their priorities, hop after hop.
 *
 *   egress interface (capacity C, share s; uplink or tunnel to N; a tunnel's C is the payload
 *   part of its link's rate, see tunnelMtu):
 *   5c:  htb default 10
 *   5c:1  rate C
 *    |- 5c:10 own traffic  rate C-sC ceil C
 *    '- 5c:20 sold         rate sC  ceil sC
 *        |- 5c:21 spare (empty)
 *        '- 5c:1xx one per neighbor: rate ∝ priority, ceil min(cap, sC)
 *           (on a tunnel to N: N's class, plus the other neighbors' when relaying)
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { TUNNEL_MTU } from '../config/tunables.js';

/** tc handle major of every qdisc Scrooge owns ("5c" ~ "sc"): how it knows its own trees. */
export const HANDLE = '5c';
export const CLASS_ROOT = `${HANDLE}:1`;
export const CLASS_OWN = `${HANDLE}:10`;
export const CLASS_SOLD = `${HANDLE}:20`;
/** An empty class under 5c:20, so that 5c:20 stays an inner class with or without neighbors. */
export const CLASS_SPARE = `${HANDLE}:21`;
/** Neighbor classes are 5c:100 .. 5c:fffe (hex minors, as tc and nft write them). */
const SLOT_BASE = 0x100;
const SLOT_COUNT = 0xfffe - SLOT_BASE + 1;
/** HTB wants rate >= 1; a class that must exist but should get (almost) nothing gets this. */
export const MIN_RATE = 8_000;
export const NFT_TABLE = 'scrooge';
/**
 * What a tunneled packet gains on the mesh interface, as tc counts it there: Ethernet header 14
 * + IPv6 40 + UDP 8 + WireGuard header 16 + tag 16 (the tunnel's own tree counts the bare inner
 * packet).
 */
export const WIREGUARD_OVERHEAD = 94;
/**
 * A tunnel is shaped a little below its link's rate: two shapers at the same rate in a row
 * (ours on the tunnel, the link's own) leave the queue, and so the choice of who goes first, in
 * the link's; just below, it forms in the neighbors' classes (SQM's usual 5-10 % headroom).
 */
export const TUNNEL_HEADROOM = 0.95;

export interface TunnelInput {
  ifname: string;
  neighbor: string;
  /** The mesh interface the tunnel runs over (its capacity bounds the tunnel). */
  meshIface: string;
  priority: number;
  /** bit/s, or undefined for no cap. */
  cap: number | undefined;
}

/**
 * The discovery port's guard in the kernel (PROTOCOL.md §7 "Before the agent"): proven
 * neighbors' sources always pass; everyone else shares small budgets, so a flood is dropped
 * before it costs the agent a JavaScript turn and cannot overflow its socket.
 */
export interface DiscoveryGuard {
  port: number;
  /** Where proven neighbors are heard from: their link-local address on a mesh interface. */
  known: readonly { address: string; iface: string }[];
}

export interface TrafficInput {
  /** Fraction in (0, 1] of each egress interface's capacity that forwarded traffic may use. */
  share: number;
  /** Absent: no guard on the discovery port. */
  discovery?: DiscoveryGuard | undefined;
  /**
   * A gateway's: what the mesh sends out of an uplink leaves with the uplink's address, so
   * hosts behind it need no route back to the mesh.
   */
  masquerade?: boolean | undefined;
  /**
   * The router forwards between tunnels (routing is on): the tunnel to N gets a class for every
   * other neighbor too, for what they send on through N. Off, only N's own class is there.
   */
  relay?: boolean | undefined;
  meshInterfaces: { name: string; rate: number }[];
  /**
   * The tunnels' MTU: a tunnel's tree shapes what goes in, and each full packet leaves the mesh
   * interface WIREGUARD_OVERHEAD bytes longer (1420 -> 1514), so a tunnel is given the share of its link's rate
   * that is payload (else the queue forms in the link, outside the neighbors' classes).
   */
  tunnelMtu?: number | undefined;
  uplinks: { name: string; rate: number }[];
  tunnels: TunnelInput[];
  /** Leaf queue discipline; 'none' leaves HTB's default (pfifo). */
  leaf: 'fq_codel' | 'none';
}

export interface TcClass {
  classid: string;
  parent: string;
  /** bit/s */
  rate: number;
  ceil: number;
  prio: number;
  /** bytes: how much a class may send per round when borrowing; proportional to its rate. */
  quantum: number;
  /** bytes that may leave at once at rate (burst) and at ceil (cburst). */
  burst: number;
  cburst: number;
  /** Leaf classes get the leaf qdisc. */
  leaf: boolean;
}

export interface TcTree {
  dev: string;
  kind: 'uplink' | 'tunnel';
  /** Neighbor key for a tunnel's tree: the neighbor at its other end. */
  neighbor?: string;
  classes: TcClass[];
  leaf: 'fq_codel' | 'none';
}

export interface TrafficPlan {
  /** Neighbor key -> its class id on the uplinks. */
  classOf: Map<string, string>;
  trees: TcTree[];
}

/** What each of Scrooge's fixed classes is, for people (tc show, metrics). */
export const CLASS_LABELS: Readonly<Record<string, string>> = {
  [CLASS_ROOT]: 'total',
  [CLASS_OWN]: 'own traffic',
  [CLASS_SOLD]: 'sold',
  [CLASS_SPARE]: 'sold: spare (empty)',
};

/** The neighbor a class is sold to, if any: the same class id on every tree (`classOf`). */
export function neighborOfClass(classid: string, classOf: ReadonlyMap<string, string>): string | undefined {
  for (const [key, c] of classOf) if (c === classid) return key;
  return undefined;
}

/** HTB's quantum for a class of `rate` bit/s: its own default rate/r2q (r2q = 10), clamped to one MTU .. 200 kB as the kernel advises. */
export function htbQuantum(rate: number): number {
  return Math.min(200_000, Math.max(1514, Math.round(rate / 8 / 10)));
}

/**
 * 10 ms worth of traffic: tc's default (about one MTU) is too small for fast classes, whose
 * timers then cannot keep up and the class never reaches its rate (a 1 Gbit/s class with a
 * 1600-byte burst would need a timer every 13 µs).
 */
function burst(rate: number): number {
  return Math.max(3200, Math.round((rate / 8) * 0.01));
}

function cls(classid: string, parent: string, rate: number, ceil: number, prio: number, leaf: boolean): TcClass {
  const r = Math.max(MIN_RATE, Math.round(rate));
  const c = Math.max(r, Math.round(ceil));
  return { classid, parent, rate: r, ceil: c, prio, quantum: htbQuantum(r), burst: burst(r), cburst: burst(c), leaf };
}

/**
 * Class ids for neighbors, a function of the set of keys only (not of the order they came in):
 * each key starts at a slot from its hash; collisions go to the next free slot, keys taken in
 * sorted order. So replaying the same changes in any order gives the same ruleset.
 */
export function neighborClasses(keys: readonly string[]): Map<string, string> {
  const sorted = [...new Set(keys)].sort();
  const taken = new Set<number>();
  const out = new Map<string, string>();
  for (const key of sorted) {
    const h = sha256(new TextEncoder().encode(key));
    let slot = ((h[0]! << 16) | (h[1]! << 8) | h[2]!) % SLOT_COUNT;
    while (taken.has(slot)) slot = (slot + 1) % SLOT_COUNT;
    taken.add(slot);
    out.set(key, `${HANDLE}:${(SLOT_BASE + slot).toString(16)}`);
  }
  return out;
}

export function planTraffic(input: TrafficInput): TrafficPlan {
  if (!(input.share > 0 && input.share <= 1)) throw new RangeError(`"share" must be in (0, 1], got ${input.share}`);
  const tunnels = [...input.tunnels].sort((a, b) => (a.ifname < b.ifname ? -1 : a.ifname > b.ifname ? 1 : 0));
  const classOf = neighborClasses(tunnels.map((t) => t.neighbor));
  const meshRate = new Map(input.meshInterfaces.map((m) => [m.name, m.rate]));
  const trees: TcTree[] = [];

  const tree = (C: number, members: readonly TunnelInput[]): TcClass[] => {
    const sold = input.share * C;
    const forNeighbors = Math.max(MIN_RATE, sold - MIN_RATE);
    const totalWeight = members.reduce((sum, t) => sum + t.priority, 0);
    // 5c:21 always exists, so 5c:20 is always an inner class (no leaf <-> inner flips).
    const classes: TcClass[] = [
      cls(CLASS_ROOT, `${HANDLE}:`, C, C, 0, false),
      cls(CLASS_OWN, CLASS_ROOT, C - sold, C, 0, true),
      cls(CLASS_SOLD, CLASS_ROOT, sold, sold, 1, false),
      cls(CLASS_SPARE, CLASS_SOLD, MIN_RATE, MIN_RATE, 1, true),
    ];
    for (const t of members) {
      const ceil = t.cap === undefined ? sold : Math.min(t.cap, sold);
      classes.push(cls(classOf.get(t.neighbor)!, CLASS_SOLD, Math.min(ceil, (forNeighbors * t.priority) / totalWeight), ceil, 1, true));
    }
    return classes;
  };

  for (const up of [...input.uplinks].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    trees.push({ dev: up.name, kind: 'uplink', classes: tree(up.rate, tunnels), leaf: input.leaf });
  }
  for (const t of tunnels) {
    const link = meshRate.get(t.meshIface);
    if (link === undefined) continue; // its mesh interface is gone: the tunnel goes too
    const mtu = input.tunnelMtu ?? TUNNEL_MTU;
    const C = (TUNNEL_HEADROOM * link * mtu) / (mtu + WIREGUARD_OVERHEAD);
    const members = input.relay ? tunnels : [t];
    trees.push({ dev: t.ifname, kind: 'tunnel', neighbor: t.neighbor, classes: tree(C, members), leaf: input.leaf });
  }
  return { classOf, trees };
}
