/**
 * The mesh core: the neighbor table and the tunnel negotiation state machine, as one pure
 * object. Inputs are datagrams, interface lists, WireGuard observations and the time (always
 * passed in, never read); outputs are actions (datagrams to send, events to log) and the
 * desired set of tunnels, which the agent reconciles onto the kernel.
 * No sockets, no processes, no timers here (STYLE.md): a test drives hours of mesh life in
 * milliseconds with a fake clock.
 *
 * The rules are PROTOCOL.md §5-§7; the comments point there.
 */
import { type Endpoint, isLinkLocalUnicast, withZone } from '../protocol/address.js';
import { bytesEqual, compareBytes, toBase64 } from '../protocol/bytes.js';
import { x25519PublicKey, type Identity, type Verifier } from '../protocol/crypto.js';
import {
  encodeMessage, HELLO, HELLO_CONFIRM, messageHead, TUNNEL, TUNNEL_CONFIRM,
  type Message, type MessageType, type TunnelConfirm, type TunnelOffer,
} from '../protocol/messages.js';
import type { SequenceSource } from '../protocol/sequence.js';
import { HELLO_GROUP, PROTOCOL_PORT, WIREGUARD_REJECT_AFTER_MS } from '../protocol/constants.js';
import * as T from '../config/tunables.js';
import { Admission, DEFAULT_LIMITS, type AdmissionLimits, type DropReason } from './admission.js';
import { RateLimiter } from './ratelimit.js';
import { tunnelInterfaceName, tunnelLinkLocal } from './names.js';
import type { ReplayMemory } from './replay.js';

export interface CoreOptions {
  /** Discovery/control UDP port (PROTOCOL.md §1). */
  port: number;
  /** Link-local multicast group for hellos. */
  group: string;
  helloIntervalMs: number;
  /** Hello interval is multiplied by 1 ± this, so neighbors do not send in lockstep. */
  helloJitter: number;
  /** A neighbor not heard for this long is quiet (and gone, unless its tunnel is alive). */
  deadIntervalMs: number;
  /**
   * Once a tunnel works, a neighbor's hellos are confirmed (and so verified) this often
   * (PROTOCOL.md §6); by default UP_CONFIRM_DEAD_INTERVALS dead intervals. A test sets it to
   * build a node of the older rule (half a dead interval).
   */
  upConfirmIntervalMs?: number;
  maxNeighbors: number;
  limits: AdmissionLimits;
  tunnels: TunnelOptions;
}

export interface TunnelOptions {
  enabled: boolean;
  portMin: number;
  portMax: number;
  mtu: number;
  keepaliveSeconds: number;
  /** A tunnel that received nothing for this long is dead (keepalives guarantee traffic). */
  deadAfterMs: number;
  /** Renegotiate a configured tunnel that has seen no handshake after this long. */
  handshakeTimeoutMs: number;
  rekeyAfterMs: number;
  /** Offer retransmissions and failed setups back off from this to retryMaxMs, doubling. */
  retryMinMs: number;
  retryMaxMs: number;
}

/** The defaults, from tunables.ts (the config file's defaults come from there too). */
export const DEFAULT_CORE_OPTIONS: CoreOptions = {
  port: PROTOCOL_PORT,
  group: HELLO_GROUP,
  helloIntervalMs: T.HELLO_INTERVAL_MS,
  helloJitter: T.HELLO_JITTER,
  deadIntervalMs: T.HELLO_INTERVAL_MS * T.DEAD_INTERVAL_HELLOS,
  maxNeighbors: T.MAX_NEIGHBORS,
  limits: DEFAULT_LIMITS,
  tunnels: {
    enabled: true,
    portMin: T.TUNNEL_PORT_RANGE[0],
    portMax: T.TUNNEL_PORT_RANGE[1],
    mtu: T.TUNNEL_MTU,
    keepaliveSeconds: T.KEEPALIVE_MS / 1000,
    deadAfterMs: T.KEEPALIVE_MS * T.DEAD_AFTER_KEEPALIVES + T.DEAD_AFTER_SLACK_MS,
    handshakeTimeoutMs: T.HANDSHAKE_TIMEOUT_MS,
    rekeyAfterMs: T.REKEY_AFTER_MS,
    retryMinMs: T.RETRY_MIN_MS,
    retryMaxMs: T.RETRY_MAX_MS,
  },
};

export interface CoreDeps {
  identity: Identity;
  seq: SequenceSource;
  verifier: Verifier;
  replay: ReplayMemory;
  /** Cryptographically secure random bytes (tunnel keys, jitter). */
  random: (n: number) => Uint8Array;
}

export interface MeshInterface {
  name: string;
  /** The node's link-local address on it; an interface without one cannot speak. */
  linkLocal: string | undefined;
}

export type CoreEvent =
  | { event: 'neighbor-added'; neighbor: string; iface: string; address: string }
  | { event: 'neighbor-two-way'; neighbor: string; ifname: string }
  | { event: 'neighbor-quiet'; neighbor: string }
  | { event: 'neighbor-back'; neighbor: string }
  | { event: 'neighbor-removed'; neighbor: string; reason: string }
  | { event: 'neighbor-evicted'; neighbor: string }
  | { event: 'tunnel-offer'; neighbor: string; ifname: string; attempt: number; rekey: boolean; again?: true }
  | { event: 'tunnel-answer'; neighbor: string; ifname: string }
  | { event: 'tunnel-configured'; neighbor: string; ifname: string; role: TunnelRole }
  | { event: 'tunnel-handshake'; neighbor: string; ifname: string; afterMs: number }
  | { event: 'tunnel-renegotiate'; neighbor: string; ifname: string; reason: string }
  | { event: 'tunnel-removed'; neighbor: string; ifname: string; reason: string }
  | { event: 'offer-crossed'; neighbor: string; winner: 'us' | 'them' }
  | { event: 'tunnel-no-port'; neighbor: string; range: string }
  | { event: 'tunnel-setup-failed'; neighbor: string; ifname: string; error: string; retryInMs: number };

export type Action =
  | { kind: 'send'; iface: string; to: Endpoint; bytes: Uint8Array; type: MessageType; neighbor?: string }
  | ({ kind: 'event' } & CoreEvent);

export type TunnelRole = 'initiator' | 'responder';
/** offering: our offer is out (or our end is being built for it); answering: building our end
 * for their offer; up: both ends configured (the handshake may still be pending). */
export type TunnelPhase = 'offering' | 'answering' | 'up';

export interface TunnelPeer {
  tunnelKey: Uint8Array;
  /** Zone = our interface towards the neighbor. */
  endpoint: Endpoint;
}

/** What a tunnel interface should carry: reconciled onto the kernel by the agent. */
export interface TunnelIntent {
  ifname: string;
  neighbor: string;
  /** Bumped on every change, so "applied" reports can be matched to what was asked. */
  generation: number;
  privateKey: Uint8Array;
  publicKey: Uint8Array;
  listenPort: number;
  /** Our address on the tunnel (fe80::/64, PROTOCOL.md §6). */
  address: string;
  mtu: number;
  peer: (TunnelPeer & { keepaliveSeconds: number }) | undefined;
}

/**
 * One tunnel interface the kernel should have (`desiredTunnels`). The core is the one record
 * of what the kernel holds: the agent reports every setup (`tunnelApplied` / `tunnelFailed`),
 * and the system is asked only which interfaces exist.
 */
export interface DesiredTunnel {
  ifname: string;
  neighbor: string;
  /** What it should carry; undefined: only the interface, made ahead (a tunnel is coming). */
  intent: TunnelIntent | undefined;
  /** The kernel holds some configuration of it (an earlier generation, perhaps). */
  configured: boolean;
  /** The kernel holds `intent.generation`. */
  applied: boolean;
  /** Set it up now; false while a failed setup waits out its backoff. */
  due: boolean;
}

interface TunnelKeys {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

interface TunnelState {
  ifname: string;
  role: TunnelRole;
  phase: TunnelPhase;
  listenPort: number;
  /** What the interface should carry now. */
  active: TunnelKeys & { peer: TunnelPeer | undefined };
  generation: number;
  appliedGeneration: number;
  /** Initiator: the key pair offered (differs from `active` during a re-key). */
  offered: TunnelKeys | undefined;
  /** The interface we offered/answered on (where the neighbor was heard). */
  iface: string;
  attempts: number;
  nextRetryAt: number;
  /** When the offer last went out (retries, and answers to a crossing offer). */
  offeredAt: number;
  configuredAt: number;
  rekeyAt: number;
  handshakeAt: number | undefined;
  rxBytes: number;
  rxChangedAt: number;
  /** When WireGuard was last asked about this tunnel. */
  observedAt: number;
  /** Sent confirm for the current peer (responder); resent on a duplicate offer. */
  confirm: { peerKey: Uint8Array } | undefined;
  /** Setups of this generation that failed, and when to try again (retryMinMs..retryMaxMs). */
  setupFailures: number;
  setupRetryAt: number;
}

/** A tunnel record: the fields given, the rest as for a tunnel not yet configured. */
function newTunnel(
  fields: Pick<TunnelState, 'ifname' | 'role' | 'phase' | 'listenPort' | 'active' | 'iface'> & Partial<TunnelState>,
  now: number,
): TunnelState {
  return {
    generation: 1, appliedGeneration: 0, offered: undefined, attempts: 0, nextRetryAt: now, offeredAt: -Infinity, configuredAt: now,
    rekeyAt: Infinity, handshakeAt: undefined, rxBytes: 0, rxChangedAt: now, observedAt: 0, confirm: undefined,
    setupFailures: 0, setupRetryAt: 0,
    ...fields,
  };
}

/** What the kernel already has of an old record, kept when a new negotiation reuses its interface. */
function kernelFacts(old: TunnelState | undefined): Partial<TunnelState> {
  return old ? { appliedGeneration: old.appliedGeneration, rxBytes: old.rxBytes, observedAt: old.observedAt } : {};
}

interface Path {
  /** The neighbor's address on this interface (source of its datagrams). */
  linkLocal: string;
  /** Where it takes unicast messages (zone = this interface). */
  control: Endpoint;
  lastHeard: number;
  /** The head (`messageHead`) of the last hello and hello_confirm verified on this path, and when. */
  heads: { [HELLO]?: VerifiedHead; [HELLO_CONFIRM]?: VerifiedHead };
}

interface VerifiedHead {
  head: Uint8Array;
  at: number;
}

interface NeighborState {
  key: string;
  publicKey: Uint8Array;
  paths: Map<string, Path>;
  firstHeard: number;
  lastHeard: number;
  /** Last time we had proof that it hears us (PROTOCOL.md §6 "Who offers"). */
  twoWayAt: number | undefined;
  quiet: boolean;
  /** When hellos stopped (the tunnel then has to prove the neighbor alive). */
  quietSince: number;
  /** When we last sent it a hello_confirm, per interface. */
  confirmedAt: Map<string, number>;
  /**
   * When its last hello_confirm arrived (verified or skipped as redundant), and how long after
   * the one before: confirms coming quickly say it has no working tunnel (PROTOCOL.md §6).
   */
  confirmHeardAt: number | undefined;
  confirmGap: number;
  tunnel: TunnelState | undefined;
  /**
   * It proved itself: the link was two-way once, or we share a tunnel. A proven neighbor keeps
   * its place in a full table; a stranger that never proved itself gives its place up to a
   * newer one (PROTOCOL.md §7 "The neighbor table").
   */
  proven: boolean;
}

/** The same control address (the zone is the path's interface either way). */
function sameControl(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

function newNeighbor(key: string, publicKey: Uint8Array, now: number): NeighborState {
  return { key, publicKey, paths: new Map(), firstHeard: now, lastHeard: now, twoWayAt: undefined, quiet: false, quietSince: 0, confirmedAt: new Map(), confirmHeardAt: undefined, confirmGap: Infinity, tunnel: undefined, proven: false };
}

/** Read-only view of a neighbor for status output. */
export interface NeighborView {
  key: string;
  iface: string | undefined;
  linkLocal: string | undefined;
  control: Endpoint | undefined;
  lastSeq: bigint | undefined;
  firstHeard: number;
  lastHeard: number;
  state: 'heard' | 'two-way' | 'quiet';
  tunnel: TunnelView | undefined;
}

export interface TunnelView {
  ifname: string;
  role: TunnelRole;
  phase: TunnelPhase;
  listenPort: number;
  localKey: string;
  peerKey: string | undefined;
  peerEndpoint: Endpoint | undefined;
  handshakeAt: number | undefined;
  /** The kernel holds the current configuration. */
  applied: boolean;
  /** The kernel holds some configuration (the interface is up, perhaps with an older one). */
  configured: boolean;
}

/** Observations of a WireGuard interface, from `wg show` / the UAPI. */
export interface TunnelStats {
  /**
   * How long ago the latest handshake was, undefined if none. An age, not a time: WireGuard
   * reports wall-clock times and the core runs on a monotonic clock (a clock step must not make
   * every neighbor look dead or alive).
   */
  handshakeAgoMs: number | undefined;
  rxBytes: number;
  txBytes: number;
  /** The peer these numbers are about; numbers about another peer (an old key) are ignored. */
  peerKey?: Uint8Array;
}

/** A tunnel found on the system at start, with what the state file said about it. */
export interface AdoptedTunnel {
  ifname: string;
  neighbor: Uint8Array;
  role: TunnelRole;
  privateKey: Uint8Array;
  listenPort: number;
  iface: string;
  peer: TunnelPeer | undefined;
}

export type Counters = {
  sent: Record<MessageType, number>;
  received: Record<MessageType, number>;
  dropped: Partial<Record<DropReason | 'not-link-local' | 'wrong-interface' | 'unexpected-confirm' | 'offer-crossed' | 'tunnel-rate-limited', number>>;
  /** Strangers (never two-way) that gave their place in the table up to newer ones. */
  evicted: number;
  /**
   * Hellos and hello_confirms that would have changed nothing, so were not verified
   * (PROTOCOL.md §6 "Nothing new"): from a neighbor with a working tunnel, heard moments ago.
   */
  redundant: Record<typeof HELLO | typeof HELLO_CONFIRM, number>;
};

function emptyCounts(): Record<MessageType, number> {
  return { [HELLO]: 0, [HELLO_CONFIRM]: 0, [TUNNEL]: 0, [TUNNEL_CONFIRM]: 0 };
}

export class MeshCore {
  readonly options: CoreOptions;
  readonly ownKey: string;
  readonly tunnelAddress: string;
  readonly counters: Counters = { sent: emptyCounts(), received: emptyCounts(), dropped: {}, evicted: 0, redundant: { [HELLO]: 0, [HELLO_CONFIRM]: 0 } };

  private readonly neighbors = new Map<string, NeighborState>();
  private readonly interfaces = new Map<string, MeshInterface & { nextHelloAt: number }>();
  private readonly admission: Admission;
  /** Ports that failed to bind, with when to try them again. */
  private readonly busyPorts = new Map<number, number>();
  private readonly newTunnels = new RateLimiter({ rate: T.NEW_TUNNELS_PER_SECOND, burst: T.NEW_TUNNELS_BURST }, 1);

  constructor(private readonly deps: CoreDeps, options: Partial<CoreOptions> = {}) {
    this.options = { ...DEFAULT_CORE_OPTIONS, ...options, tunnels: { ...DEFAULT_CORE_OPTIONS.tunnels, ...options.tunnels } };
    this.ownKey = toBase64(deps.identity.publicKey);
    this.tunnelAddress = tunnelLinkLocal(deps.identity.publicKey);
    this.admission = new Admission(
      {
        ownKey: deps.identity.publicKey,
        replay: deps.replay,
        verifier: deps.verifier,
        table: {
          knownSource: (k) => {
            const n = this.neighbors.get(k);
            if (!n) return undefined;
            const p = this.preferredPath(n);
            return p ? `${p[1].linkLocal}%${p[0]}` : '';
          },
          isFull: () => this.neighbors.size >= this.options.maxNeighbors && this.oldestStranger() === undefined,
        },
      },
      this.options.limits,
    );
    // What a previous run held unverified (its last redundant hellos) moves the marks now.
    deps.replay.settle(this.admission.verifyHeld);
  }

  // ---------------------------------------------------------------- interfaces and hellos

  /** The mesh interfaces present now. New ones (or a new address) get a hello at once. */
  setInterfaces(list: readonly MeshInterface[], now: number): Action[] {
    const actions: Action[] = [];
    const seen = new Set<string>();
    for (const i of list) {
      seen.add(i.name);
      const cur = this.interfaces.get(i.name);
      if (!cur || cur.linkLocal !== i.linkLocal) {
        this.interfaces.set(i.name, { ...i, nextHelloAt: now });
      }
    }
    for (const name of [...this.interfaces.keys()]) if (!seen.has(name)) this.interfaces.delete(name);
    // Paths over interfaces that are gone are gone too.
    for (const n of this.neighbors.values()) for (const iface of [...n.paths.keys()]) if (!seen.has(iface)) n.paths.delete(iface);
    actions.push(...this.sendDueHellos(now));
    return actions;
  }

  private sendDueHellos(now: number): Action[] {
    const actions: Action[] = [];
    for (const i of this.interfaces.values()) {
      if (!i.linkLocal || now < i.nextHelloAt) continue;
      const jitter = 1 + this.options.helloJitter * (2 * this.randomUnit() - 1);
      i.nextHelloAt = now + this.options.helloIntervalMs * jitter;
      actions.push(this.send(i.name, { address: this.options.group, zone: i.name, port: this.options.port }, {
        type: HELLO, publicKey: this.deps.identity.publicKey, seq: this.deps.seq.next(),
        control: { address: i.linkLocal, zone: i.name, port: this.options.port },
      }));
    }
    return actions;
  }

  private randomUnit(): number {
    const b = this.deps.random(4);
    return (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) / 2 ** 32;
  }

  private send(iface: string, to: Endpoint, m: Message, neighbor?: string): Action {
    const { bytes } = encodeMessage(m, this.deps.identity.sign);
    this.counters.sent[m.type]++;
    return { kind: 'send', iface, to, bytes, type: m.type, ...(neighbor ? { neighbor } : {}) };
  }

  private drop(reason: keyof Counters['dropped']): void {
    this.counters.dropped[reason] = (this.counters.dropped[reason] ?? 0) + 1;
  }

  // ---------------------------------------------------------------- receive

  /**
   * One datagram from the socket. `source` is the sender's link-local address and `iface` the
   * interface it arrived on (from the address's zone). Never throws on the datagram's content.
   */
  receive(datagram: Uint8Array, source: { address: string; iface: string | undefined }, now: number): Action[] {
    const iface = source.iface;
    if (iface === undefined || !isLinkLocalUnicast(source.address)) {
      // Neighbors speak from link-local addresses only (PROTOCOL.md §1): a routed source is not one.
      this.drop('not-link-local');
      return [];
    }
    const mesh = this.interfaces.get(iface);
    if (!mesh || !mesh.linkLocal) {
      // Only mesh interfaces speak the protocol (never an uplink).
      this.drop('wrong-interface');
      return [];
    }
    const head = messageHead(datagram);
    if (head && this.redundant(head, source.address, iface, now)) {
      // Unverified, so it cannot write the record; kept, so a replay of it after this
      // neighbor is forgotten (or after a crash) is still stale (ReplayMemory.hold).
      this.deps.replay.hold(head.senderKey, head.seq, datagram);
      return [];
    }
    const admitted = this.admission.admit(datagram, { address: source.address, iface }, now);
    if (!admitted.ok) {
      this.drop(admitted.reason);
      return [];
    }
    const { message: m, publicKeyText: key } = admitted.decoded;
    this.counters.received[m.type]++;
    const actions: Action[] = [];
    let n = this.neighbors.get(key);
    if (!n) {
      // Admission let an unknown sender through only with a hello or hello_confirm.
      actions.push(...this.makeRoomForStranger());
      n = newNeighbor(key, m.publicKey, now);
      this.neighbors.set(key, n);
      actions.push({ kind: 'event', event: 'neighbor-added', neighbor: key, iface: iface!, address: source.address });
    }
    if (n.quiet) {
      n.quiet = false;
      actions.push({ kind: 'event', event: 'neighbor-back', neighbor: key });
    }
    n.lastHeard = now;
    const path = n.paths.get(iface!);
    // Hellos say where the sender takes control messages; a tunnel message from a neighbor we
    // have no path to (quiet, or adopted after a restart) came from that very socket.
    const control = m.type === HELLO || m.type === HELLO_CONFIRM
      ? withZone(m.control, iface)
      : (path?.control ?? { address: source.address, zone: iface, port: this.options.port });
    const same = path && path.linkLocal === source.address && sameControl(path.control, control);
    const heads = same ? path.heads : {};
    if (head && (m.type === HELLO || m.type === HELLO_CONFIRM)) heads[m.type] = { head: head.head.slice(), at: now };
    n.paths.set(iface!, { linkLocal: source.address, control, lastHeard: now, heads });

    if (m.type !== HELLO) {
      // Any unicast message proves the neighbor has our control address: the link is two-way.
      if (n.twoWayAt === undefined) actions.push({ kind: 'event', event: 'neighbor-two-way', neighbor: key, ifname: this.ifnameOf(n) });
      n.twoWayAt = now;
      n.proven = true;
    }

    switch (m.type) {
      case HELLO:
        if (!this.confirmDue(n, iface!, path, control!, now)) break;
        n.confirmedAt.set(iface!, now);
        actions.push(this.send(iface!, control!, {
          type: HELLO_CONFIRM, publicKey: this.deps.identity.publicKey, recipient: n.publicKey, seq: this.deps.seq.next(),
          control: { address: mesh.linkLocal, zone: iface, port: this.options.port },
        }, key));
        break;
      case HELLO_CONFIRM:
        this.confirmHeard(n, now);
        break;
      case TUNNEL:
        actions.push(...this.onOffer(n, m, iface!, now));
        break;
      case TUNNEL_CONFIRM:
        actions.push(...this.onConfirm(n, m, iface!, now));
        break;
    }
    actions.push(...this.maybeInitiate(n, now));
    return actions;
  }

  /**
   * Nothing new (PROTOCOL.md §6): a hello or hello_confirm from a neighbor whose tunnel works,
   * with a fresh seq, byte for byte the last message of its type verified on this path up to
   * the seq (same type, keys and address, from the same source), less than one confirm
   * interval after that one (`confirmIntervalMs`: a hello verified more often would be answered
   * by nothing). Verifying it would only move `lastHeard` (and, for a confirm, the two-way
   * time) by a second or so: it is counted and dropped before the budgets and the signature
   * check, and the first one after the interval is verified as usual. It moves `lastHeard`
   * (so a lossy link does not make the neighbor quiet between verified hellos), and nothing
   * else; it is not trusted: a forged copy can keep a departed neighbor from going quiet for
   * one confirm interval (10.5 s) past its last verified message at most, and delays its
   * removal as much; a replay of anything no newer than what was accepted goes on to be
   * dropped as stale.
   *
   * Measured (issue 13), lan-5 at 30 % loss, 40 runs of 300 s after a minute: 24,448 hellos
   * verified with this window against 93,398 with half a dead interval (skipped 135,520
   * against 66,410); quiet spells 3904 against 4053, removals 457 against 452, pairs not
   * tunneled 3.26 % against 3.35 % of the samples; convergence over 300 seeds mean 15.7 s
   * against 16.2 (within 17 s 212 against 208).
   *
   * Measured (issue 13), lan-5 at 30 % loss, 300 seeds: quiet spells before convergence
   * 2263 without this refresh (once confirms came every 10.5 s: they used to refresh it),
   * 878 with confirms every half dead interval, 1155 with it (convergence: mean 16.2 s against
   * 15.7, within 17 s 208 against 215 seeds: within the noise); a real neighbor's `lastHeard`
   * under a 20,000/s flood (test/netns/hardening.test.ts) stays under 2.5 s again.
   */
  private redundant(h: { senderKey: string; head: Uint8Array; seq: bigint }, address: string, iface: string, now: number): boolean {
    const n = this.neighbors.get(h.senderKey);
    if (!n || !this.tunnelWorks(n)) return false;
    const p = n.paths.get(iface);
    if (!p || p.linkLocal !== address) return false;
    const window = this.confirmIntervalMs(n, now);
    for (const type of [HELLO, HELLO_CONFIRM] as const) {
      const v = p.heads[type];
      if (!v || now - v.at >= window || !bytesEqual(v.head, h.head)) continue;
      if (!this.deps.replay.isFresh(n.key, h.seq)) return false;
      this.counters.redundant[type]++;
      if (type === HELLO_CONFIRM) this.confirmHeard(n, now);
      // Heard, unverified: never more than one confirm interval past the verified one it copies.
      n.lastHeard = p.lastHeard = now;
      return true;
    }
    return false;
  }

  /**
   * Every hello deserves a confirm while it matters (PROTOCOL.md §6): a new path, a new control
   * address, or no working tunnel yet. Once the tunnel is up (a handshake seen), WireGuard's
   * handshakes prove the link two-way and the confirms only keep that state fresh for the
   * neighbor: one every UP_CONFIRM_DEAD_INTERVALS dead intervals (10.5 s), where answering
   * each hello would double every node's signature checks, and half a dead interval did
   * ~5 signatures and ~5 checks a second on a 10-node LAN for nothing. A neighbor that lost its
   * tunnel (restarted without its state, or removed it) answers our hellos at once, so its
   * confirms come quickly: then it gets ours every half dead interval until they slow down.
   * A neighbor of the older rule (every half dead interval when up) gets ours every 10.5 s:
   * its two-way state lapses between them, which nothing depends on while the tunnel works.
   *
   * Measured (issue 13): lan-10 idle, old and new side by side, 120-360 s after convergence:
   * 0.904 and 0.906 % of a core per agent against 1.109 and 1.13 % confirming every half dead
   * interval (two runs); the median agent also held ~1 MiB less. The cost: confirms no longer
   * refresh `lastHeard` between the hellos verified every half dead interval, so on a lossy
   * link a neighbor goes quiet (and its tunnel is watched) more often: lan-5 at 30 % loss,
   * 300 seeds, 2263 quiet spells against 878 before convergence; convergence itself the same
   * (mean 15.66 against 15.66 s; within 10 s 144 against 153 seeds, within 17 s 215 against 204).
   *
   * Measured and not kept (issue 13): confirming only every half dead interval already while
   * a tunnel exchange is under way (our offer sent, or theirs answered: those unicast messages
   * carry the two-way proof) cut lan-20's agent CPU to convergence by ~12 % (6 A/B pairs, 13.2
   * vs 11.6 CPU-s), but at 30 % datagram loss the median convergence of lan-5 over 30 seeds went
   * from 10 s to 16 s (why is not pinned down: removals, re-negotiations and offers counted
   * about the same; more runs waited out the 15 s no-handshake re-negotiation; a later look,
   * above, found that median flipping between 10 and 16 s on small changes, as half the seeds
   * sit on either side of it: 30 seeds cannot tell these apart, 300 can). Tried again on top
   * of the slow confirms once the tunnel works: 300 seeds at 30 % loss converged the same
   * (mean 15.4 against 15.7 s) but removed and re-added neighbors more often (57 against 33
   * removals: fewer confirms refresh `lastHeard` while nothing is handshaken yet), and lan-20's
   * agent CPU to convergence did not move (3 alternating pairs: 20.9/16.2/16.2 CPU-s against
   * 23.1/14.7/15.9). Doing
   * so only once our end knows the peer's key saved ~3 % (4 pairs, within the noise) and still
   * moved that median to 16 s (with a shorter tail: 32 s at worst against 60+ s).
   */
  private confirmDue(n: NeighborState, iface: string, before: Path | undefined, control: Endpoint, now: number): boolean {
    if (!before || !sameControl(before.control, control)) return true;
    if (!this.tunnelWorks(n)) return true;
    const last = n.confirmedAt.get(iface);
    return last === undefined || now - last >= this.confirmIntervalMs(n, now);
  }

  /**
   * How often a neighbor whose tunnel works gets our confirm, and so how often its hellos need
   * verifying (`redundant`): a hello checked more often could only be answered by nothing.
   */
  private confirmIntervalMs(n: NeighborState, now: number): number {
    if (this.theirConfirmsQuick(n, now)) return this.options.deadIntervalMs / 2;
    return this.options.upConfirmIntervalMs ?? this.options.deadIntervalMs * T.UP_CONFIRM_DEAD_INTERVALS;
  }

  /** A hello_confirm from it arrived (verified, or skipped as nothing new). */
  private confirmHeard(n: NeighborState, now: number): void {
    if (n.confirmHeardAt !== undefined) n.confirmGap = now - n.confirmHeardAt;
    n.confirmHeardAt = now;
  }

  /**
   * It answers our hellos at once: its last two confirms less than half a dead interval apart
   * (one hello interval, 0.75-1.25 s), the last one that recently. Our confirms then come every
   * half dead interval, never quicker than that, so two nodes can never keep each other in
   * this state. Nothing here is trusted (a skipped confirm counts): a forger can at most bring
   * our confirms back to the half dead interval of the older rule.
   */
  private theirConfirmsQuick(n: NeighborState, now: number): boolean {
    const half = this.options.deadIntervalMs / 2;
    return n.confirmHeardAt !== undefined && now - n.confirmHeardAt < half && n.confirmGap < half;
  }

  /** The tunnel is up, WireGuard shook hands, and the neighbor is heard. */
  private tunnelWorks(n: NeighborState): boolean {
    const t = n.tunnel;
    return !n.quiet && t?.phase === 'up' && t.handshakeAt !== undefined;
  }

  // ---------------------------------------------------------------- tunnel negotiation

  private newKeys(): TunnelKeys {
    const privateKey = this.deps.random(32);
    return { privateKey, publicKey: x25519PublicKey(privateKey) };
  }

  private allocatePort(now: number): number | undefined {
    const used = new Set<number>();
    for (const n of this.neighbors.values()) if (n.tunnel) used.add(n.tunnel.listenPort);
    for (let p = this.options.tunnels.portMin; p <= this.options.tunnels.portMax; p++) {
      const busyUntil = this.busyPorts.get(p);
      if (used.has(p) || (busyUntil !== undefined && busyUntil > now)) continue;
      return p;
    }
    return undefined;
  }

  private noPort(n: NeighborState): Action {
    const { portMin, portMax } = this.options.tunnels;
    return { kind: 'event', event: 'tunnel-no-port', neighbor: n.key, range: `${portMin}-${portMax}` };
  }

  private preferredPath(n: NeighborState): [string, Path] | undefined {
    let best: [string, Path] | undefined;
    for (const e of n.paths) if (!best || e[1].lastHeard > best[1].lastHeard) best = e;
    return best;
  }

  /** The stranger heard first among those that never proved themselves (the first to give way). */
  private oldestStranger(): NeighborState | undefined {
    // The map keeps insertion order: the first stranger in it is the oldest.
    for (const n of this.neighbors.values()) if (!n.proven && !n.tunnel) return n;
    return undefined;
  }

  /**
   * A new sender is about to be added: strangers (never two-way, no tunnel) hold at most
   * MAX_STRANGERS places, and none at all once the table is full; the oldest gives way.
   * Proven neighbors are never evicted (admission refused the sender if only they are left).
   */
  private makeRoomForStranger(): Action[] {
    let strangers = 0;
    for (const n of this.neighbors.values()) if (!n.proven && !n.tunnel) strangers++;
    const actions: Action[] = [];
    while (strangers > 0 && (strangers >= this.maxStrangers() || this.neighbors.size >= this.options.maxNeighbors)) {
      const old = this.oldestStranger()!;
      this.neighbors.delete(old.key);
      strangers--;
      this.counters.evicted++;
      actions.push({ kind: 'event', event: 'neighbor-evicted', neighbor: old.key });
    }
    return actions;
  }

  private maxStrangers(): number {
    return Math.max(1, Math.min(T.MAX_STRANGERS, this.options.maxNeighbors));
  }

  /** Start a negotiation if the link is two-way and there is no tunnel (PROTOCOL.md §6). */
  private maybeInitiate(n: NeighborState, now: number): Action[] {
    if (!this.options.tunnels.enabled || n.tunnel || n.twoWayAt === undefined) return [];
    if (!this.newTunnelAllowed(now)) return []; // tick() tries again
    return this.initiate(n, now, 'new');
  }

  /**
   * New tunnels (ours or answers to offers) are rate-limited: keys are free, so an attacker on
   * the link can make as many signed neighbors as the table holds, and a tunnel costs a process.
   */
  private newTunnelAllowed(now: number): boolean {
    if (this.newTunnels.take('', now)) return true;
    this.drop('tunnel-rate-limited');
    return false;
  }

  private initiate(n: NeighborState, now: number, reason: 'new' | 'rekey' | string): Action[] {
    const path = this.preferredPath(n);
    if (!path) return [];
    const [iface] = path;
    const old = n.tunnel;
    const listenPort = old?.listenPort ?? this.allocatePort(now);
    if (listenPort === undefined) return [this.noPort(n)];
    const keys = this.newKeys();
    const rekey = reason === 'rekey' && old?.phase === 'up';
    const t = newTunnel({
      ...kernelFacts(old),
      ifname: this.ifnameOf(n),
      role: 'initiator',
      phase: 'offering',
      listenPort,
      // A re-key keeps the working configuration until the neighbor confirms the new key.
      active: rekey ? old!.active : { ...keys, peer: undefined },
      generation: (old?.generation ?? 0) + (rekey ? 0 : 1),
      offered: keys,
      iface,
      configuredAt: old?.configuredAt ?? now,
      handshakeAt: rekey ? old!.handshakeAt : undefined,
      rxChangedAt: old?.rxChangedAt ?? now,
    }, now);
    n.tunnel = t;
    const actions: Action[] = [];
    if (old && reason !== 'new') actions.push({ kind: 'event', event: 'tunnel-renegotiate', neighbor: n.key, ifname: t.ifname, reason });
    // The offer goes out at once, while our end is still being made: the neighbor makes its end
    // meanwhile, so the two makings overlap instead of following each other (on grid-100 each
    // took seconds, one after the other). Its WireGuard may knock before ours listens; ours
    // knocks itself once the confirm gives it the peer. The port it names is not bound yet: if
    // it turns out busy, tunnelFailed negotiates again with fresh keys ('port-moved').
    actions.push(...this.sendOfferIfDue(n, now));
    return actions;
  }

  private sendOfferIfDue(n: NeighborState, now: number): Action[] {
    const t = n.tunnel;
    if (!t || t.phase !== 'offering' || !t.offered || now < t.nextRetryAt) return [];
    const target = this.unicastTarget(n, t.iface);
    if (!target) return [];
    t.attempts++;
    t.nextRetryAt = now + this.backoff(t.attempts);
    return this.offerActions(n, t, t.offered, target, now, false);
  }

  /**
   * The neighbor offers while our own offer to it is unanswered and ours wins the crossing: it
   * never had ours (lost), or it answered and gave up waiting once that answer was lost. Ours
   * goes again at once, not at the next retry (up to retryMaxMs away), and the backoff is left
   * alone; at most once per retryMinMs. Measured (MeshSim, lan-5 at 30 % loss): every run past
   * 60 s that was traced was such a pair, the lower node's retries lost one after the other
   * while the higher node's offers reached it and were ignored. With it (offers then waiting
   * for our end), seeds 1-300: mean 13.1 s, 83 % within 20 s, 90th percentile 23.5 s;
   * without, seeds 1-500: 15.0 s, 76 %, 32.5 s. With the early offer too: 11.6 s, 89 %, 21.5 s.
   */
  private answerCrossing(n: NeighborState, now: number): Action[] {
    const t = n.tunnel;
    if (!t || t.phase !== 'offering' || !t.offered || t.attempts === 0 || now - t.offeredAt < this.options.tunnels.retryMinMs) return [];
    const target = this.unicastTarget(n, t.iface);
    return target ? this.offerActions(n, t, t.offered, target, now, true) : [];
  }

  private offerActions(n: NeighborState, t: TunnelState, offered: TunnelKeys, target: { control: Endpoint; ownAddress: string }, now: number, again: boolean): Action[] {
    t.offeredAt = now;
    return [
      { kind: 'event', event: 'tunnel-offer', neighbor: n.key, ifname: t.ifname, attempt: t.attempts, rekey: t.active.privateKey !== offered.privateKey, ...(again ? { again } : {}) },
      this.send(t.iface, target.control, {
        type: TUNNEL, publicKey: this.deps.identity.publicKey, recipient: n.publicKey, seq: this.deps.seq.next(),
        tunnelKey: offered.publicKey, endpoint: { address: target.ownAddress, zone: t.iface, port: t.listenPort },
      }, n.key),
    ];
  }

  private onOffer(n: NeighborState, m: TunnelOffer, iface: string, now: number): Action[] {
    if (!this.options.tunnels.enabled) return [];
    const t = n.tunnel;
    const peer: TunnelPeer = { tunnelKey: m.tunnelKey, endpoint: withZone(m.endpoint, iface) };
    if (t?.role === 'initiator' && t.phase === 'offering') {
      // Crossing offers: the lower identity key's offer wins (PROTOCOL.md §6).
      if (compareBytes(this.deps.identity.publicKey, n.publicKey) < 0) {
        this.drop('offer-crossed');
        return [{ kind: 'event', event: 'offer-crossed', neighbor: n.key, winner: 'us' }, ...this.answerCrossing(n, now)];
      }
    } else if (t?.active.peer && bytesEqual(t.active.peer.tunnelKey, m.tunnelKey)) {
      // A retransmitted offer: our confirm was lost. Answer again, change nothing.
      return t.phase === 'up' && t.role === 'responder' ? this.sendConfirm(n, t) : [];
    }
    if (!t && !this.newTunnelAllowed(now)) return []; // the offer is retried
    const crossed = t?.role === 'initiator' && t.phase === 'offering';
    // Reuse what we built (PROTOCOL.md §6): a crossing loser keeps the end it already has (key
    // and port), and so does a tunnel that never handshook. A confirm does not say which offer
    // it answers: an initiator that offered again (its port moved, or no handshake came) may
    // take our answer to its earlier offer for the answer to the new one, and it is, if our end
    // stays the same. A tunnel that worked gets fresh keys (a re-key, a neighbor restarted).
    const keys = crossed
      ? (t!.offered && t!.active.privateKey === t!.offered.privateKey ? t!.offered : this.newKeys())
      : (t && t.handshakeAt === undefined ? t.active : this.newKeys());
    const listenPort = t?.listenPort ?? this.allocatePort(now);
    if (listenPort === undefined) return [this.noPort(n)];
    n.tunnel = newTunnel({
      ...kernelFacts(t),
      ifname: this.ifnameOf(n),
      role: 'responder',
      phase: 'answering',
      listenPort,
      active: { ...keys, peer },
      generation: (t?.generation ?? 0) + 1,
      iface,
      nextRetryAt: Infinity,
    }, now);
    const actions: Action[] = [];
    if (crossed) actions.push({ kind: 'event', event: 'offer-crossed', neighbor: n.key, winner: 'them' });
    actions.push({ kind: 'event', event: 'tunnel-answer', neighbor: n.key, ifname: n.tunnel.ifname });
    return actions;
  }

  private sendConfirm(n: NeighborState, t: TunnelState): Action[] {
    const target = this.unicastTarget(n, t.iface);
    if (!target || !t.active.peer) return []; // no way to reach it now: its retried offer will get the answer
    t.confirm = { peerKey: t.active.peer.tunnelKey };
    return [this.send(t.iface, target.control, {
      type: TUNNEL_CONFIRM, publicKey: this.deps.identity.publicKey, recipient: n.publicKey, seq: this.deps.seq.next(),
      tunnelKey: t.active.publicKey, endpoint: { address: target.ownAddress, zone: t.iface, port: t.listenPort },
    }, n.key)];
  }

  /** Where to send a neighbor a unicast message over `iface`, and our address there. */
  private unicastTarget(n: NeighborState, iface: string): { control: Endpoint; ownAddress: string } | undefined {
    const path = n.paths.get(iface) ?? this.preferredPath(n)?.[1];
    const mine = this.interfaces.get(iface);
    return path && mine?.linkLocal ? { control: path.control, ownAddress: mine.linkLocal } : undefined;
  }

  private onConfirm(n: NeighborState, m: TunnelConfirm, iface: string, now: number): Action[] {
    const t = n.tunnel;
    if (!t || t.role !== 'initiator' || t.phase !== 'offering' || !t.offered || t.attempts === 0) {
      // Duplicate confirms (answers to our retransmissions) land here harmlessly.
      if (!(t?.phase === 'up' && t.active.peer && bytesEqual(t.active.peer.tunnelKey, m.tunnelKey))) this.drop('unexpected-confirm');
      return [];
    }
    t.active = { ...t.offered, peer: { tunnelKey: m.tunnelKey, endpoint: withZone(m.endpoint, iface) } };
    t.iface = iface;
    t.phase = 'up';
    this.bump(t);
    t.configuredAt = now;
    t.handshakeAt = undefined;
    t.rekeyAt = now + this.options.tunnels.rekeyAfterMs;
    return [{ kind: 'event', event: 'tunnel-configured', neighbor: n.key, ifname: t.ifname, role: t.role }];
  }

  /** The agent applied `generation` of a tunnel intent to the kernel. */
  tunnelApplied(ifname: string, generation: number, now: number): Action[] {
    const n = this.neighborByIfname(ifname);
    const t = n?.tunnel;
    if (!n || !t) return [];
    if (generation !== t.generation) {
      // An older configuration reached the kernel after a newer one was wanted (the answer to
      // our offer came while our end was being made): the newer one is still to be applied,
      // but the interface holds one of ours, and so the port it binds (`configured`): not a
      // busy port to move away from.
      if (generation > t.appliedGeneration && generation < t.generation) t.appliedGeneration = generation;
      return [];
    }
    t.appliedGeneration = generation;
    t.setupFailures = 0;
    if (t.phase === 'offering') return this.sendOfferIfDue(n, now);
    if (t.phase === 'answering') {
      t.phase = 'up';
      t.configuredAt = now;
      return [...this.sendConfirm(n, t), { kind: 'event', event: 'tunnel-configured', neighbor: n.key, ifname, role: t.role }];
    }
    if (t.phase === 'up' && t.role === 'initiator') t.configuredAt = now;
    return [];
  }

  /**
   * Setting a tunnel up failed. A busy port is avoided for a while and the tunnel moves to
   * another one at once; anything else is set up again after a backoff (`desiredTunnels`
   * says when it is due), so a persistent failure never costs a process a tick.
   */
  tunnelFailed(ifname: string, generation: number, reason: { portBusy?: boolean; error?: string }, now: number): Action[] {
    const n = this.neighborByIfname(ifname);
    const t = n?.tunnel;
    if (!n || !t || generation !== t.generation) return [];
    if (reason.portBusy) {
      this.busyPorts.set(t.listenPort, now + T.BUSY_PORT_MS);
      const port = this.allocatePort(now);
      if (port === undefined) return [this.noPort(n)];
      t.listenPort = port;
      // The neighbor was told the old port (our offer, or our confirm, named it): a retry with
      // the same key would change nothing there, so the new port goes out with fresh keys.
      // (With no path to it, the handshake timeout or its removal settles the tunnel.)
      const told = (t.role === 'initiator' && t.attempts > 0) || t.confirm !== undefined;
      if (told && this.preferredPath(n)) return this.initiate(n, now, 'port-moved');
      this.bump(t);
      return [];
    }
    t.setupFailures++;
    const delay = this.backoff(t.setupFailures);
    t.setupRetryAt = now + delay;
    return [{ kind: 'event', event: 'tunnel-setup-failed', neighbor: n.key, ifname, error: reason.error ?? 'unknown', retryInMs: delay }];
  }

  /** retryMinMs, doubling with each attempt, at most retryMaxMs. */
  private backoff(attempt: number): number {
    const { retryMinMs, retryMaxMs } = this.options.tunnels;
    return Math.min(retryMaxMs, retryMinMs * 2 ** Math.max(0, attempt - 1));
  }

  /** A new configuration for the interface: a new generation, with a fresh setup budget. */
  private bump(t: TunnelState): void {
    t.generation++;
    t.setupFailures = 0;
    t.setupRetryAt = 0;
  }

  private ifnameOf(n: NeighborState): string {
    return n.tunnel?.ifname ?? tunnelInterfaceName(this.deps.identity.publicKey, n.publicKey);
  }

  /** Observations from WireGuard (see `tunnelsToWatch`). */
  tunnelObserved(ifname: string, stats: TunnelStats, now: number): Action[] {
    const n = this.neighborByIfname(ifname);
    const t = n?.tunnel;
    if (!n || !t) return [];
    // After a re-key the kernel may still hold the old peer for a moment: its handshakes say
    // nothing about the new keys (and would hide a re-key that never handshakes).
    if (stats.peerKey && !(t.active.peer && bytesEqual(stats.peerKey, t.active.peer.tunnelKey))) return [];
    t.observedAt = now;
    if (stats.rxBytes !== t.rxBytes) {
      t.rxBytes = stats.rxBytes;
      t.rxChangedAt = now;
    }
    if (stats.handshakeAgoMs !== undefined && t.phase !== 'offering') {
      const first = t.handshakeAt === undefined;
      t.handshakeAt = now - stats.handshakeAgoMs;
      if (first) return [{ kind: 'event', event: 'tunnel-handshake', neighbor: n.key, ifname, afterMs: Math.max(0, now - t.configuredAt) }];
    }
    return [];
  }

  /** Interfaces whose WireGuard stats the core wants now: fresh tunnels and quiet neighbors'. */
  tunnelsToWatch(): string[] {
    const out: string[] = [];
    for (const n of this.neighbors.values()) {
      const t = n.tunnel;
      // Only what the kernel holds is worth reading: an applied, current configuration.
      if (t && t.appliedGeneration > 0 && t.appliedGeneration === t.generation && (n.quiet || (t.phase === 'up' && t.handshakeAt === undefined)))
        out.push(t.ifname);
    }
    return out;
  }

  private neighborByIfname(ifname: string): NeighborState | undefined {
    for (const n of this.neighbors.values()) if (n.tunnel?.ifname === ifname) return n;
    return undefined;
  }

  /**
   * Tunnels found at start (left by a previous run) that the state file vouches for. The
   * kernel holds them already: they are applied from the start. Returns the names adopted (a
   * tunnel whose name is not ours for that neighbor is not: the agent removes it).
   */
  adoptTunnels(tunnels: readonly AdoptedTunnel[], now: number): { adopted: string[]; actions: Action[] } {
    const adopted: string[] = [];
    const actions: Action[] = [];
    for (const a of tunnels) {
      const key = toBase64(a.neighbor);
      if (a.ifname !== tunnelInterfaceName(this.deps.identity.publicKey, a.neighbor)) continue;
      const n = this.neighbors.get(key) ?? newNeighbor(key, a.neighbor, now);
      n.proven = true;
      const keys = { privateKey: a.privateKey, publicKey: x25519PublicKey(a.privateKey) };
      n.tunnel = newTunnel({
        ifname: a.ifname, role: a.role, phase: a.peer ? 'up' : 'offering', listenPort: a.listenPort, iface: a.iface,
        active: { ...keys, peer: a.peer }, offered: a.peer ? undefined : keys, rekeyAt: now + this.options.tunnels.rekeyAfterMs,
        confirm: a.peer && a.role === 'responder' ? { peerKey: a.peer.tunnelKey } : undefined,
      }, now);
      this.neighbors.set(key, n);
      adopted.push(a.ifname);
      actions.push(...this.tunnelApplied(a.ifname, n.tunnel.generation, now));
    }
    return { adopted, actions };
  }

  // ---------------------------------------------------------------- time

  /** Periodic work: hellos, expiry, retries, handshake timeouts, re-keys. Call at `nextDeadline`. */
  tick(now: number): Action[] {
    const actions = this.sendDueHellos(now);
    const o = this.options;
    for (const n of [...this.neighbors.values()]) {
      for (const [iface, p] of n.paths) if (now - p.lastHeard > o.deadIntervalMs) n.paths.delete(iface);
      const heard = now - n.lastHeard <= o.deadIntervalMs;
      const t = n.tunnel;
      if (!heard && !n.quiet && t?.active.peer && t.handshakeAt !== undefined) {
        // Hellos stopped but the tunnel worked: watch it before judging (tunnelsToWatch).
        n.quiet = true;
        n.quietSince = now;
        t.rxChangedAt = Math.max(t.rxChangedAt, n.lastHeard);
        actions.push({ kind: 'event', event: 'neighbor-quiet', neighbor: n.key });
      }
      if (!heard) {
        if (!n.quiet || !this.tunnelAlive(t!, n, now)) {
          // Gone by both measures (PROTOCOL.md §6 "Liveness").
          this.neighbors.delete(n.key);
          this.deps.replay.settle(this.admission.verifyHeld, n.key);
          if (t) actions.push({ kind: 'event', event: 'tunnel-removed', neighbor: n.key, ifname: t.ifname, reason: 'neighbor gone' });
          actions.push({ kind: 'event', event: 'neighbor-removed', neighbor: n.key, reason: 'not heard and no live tunnel' });
          continue;
        }
      }
      // A working tunnel proves the link two-way (its confirms then come seldom, confirmDue).
      if (this.tunnelWorks(n)) n.twoWayAt = now;
      else if (n.twoWayAt !== undefined && now - n.twoWayAt > o.deadIntervalMs) n.twoWayAt = undefined;
      if (!t) {
        if (heard) actions.push(...this.maybeInitiate(n, now));
        continue;
      }
      if (t.phase === 'offering') {
        actions.push(...this.sendOfferIfDue(n, now));
      } else if (t.phase === 'up') {
        if (t.handshakeAt === undefined && t.appliedGeneration === t.generation && now - t.configuredAt > o.tunnels.handshakeTimeoutMs && heard) {
          actions.push(...this.initiate(n, now, 'no handshake'));
        } else if (t.role === 'initiator' && now >= t.rekeyAt && heard) {
          actions.push(...this.initiate(n, now, 'rekey'));
        } else if (t.active.peer?.endpoint.zone !== undefined && !this.interfaces.has(t.active.peer.endpoint.zone) && heard) {
          actions.push(...this.initiate(n, now, 'interface gone'));
        }
      }
    }
    return actions;
  }

  /**
   * The earliest time at which `tick` has something to do (a hello due, a neighbor or path
   * expiring, a retransmission, a timeout, a re-key, a failed setup due again), so the agent
   * sleeps until then instead of ticking on a fixed beat. Never later than `now` + one hello
   * interval. Calling tick earlier is harmless: it does what is due, nothing else.
   */
  nextDeadline(now: number): number {
    const o = this.options;
    let next = now + o.helloIntervalMs;
    const at = (t: number) => {
      if (t < next) next = t;
    };
    let portFree: boolean | undefined;
    // Only what tick would act on counts: a deadline that has passed but waits for something
    // else (an apply, a path, a port) must not make the agent tick in a loop.
    for (const i of this.interfaces.values()) if (i.linkLocal) at(i.nextHelloAt);
    for (const n of this.neighbors.values()) {
      // tick compares strictly (`> dead`): the first moment such a test holds is 1 ms later.
      for (const p of n.paths.values()) at(p.lastHeard + o.deadIntervalMs + 1);
      if (n.twoWayAt !== undefined) at(n.twoWayAt + o.deadIntervalMs + 1);
      const t = n.tunnel;
      if (!n.quiet) at(n.lastHeard + o.deadIntervalMs + 1);
      else if (t) {
        at(t.rxChangedAt + o.tunnels.deadAfterMs + 1);
        if (t.handshakeAt !== undefined && t.observedAt >= n.quietSince) at(t.handshakeAt + WIREGUARD_REJECT_AFTER_MS + 1);
      }
      if (!t) {
        // Two-way without a tunnel: the new-tunnel budget refills within a token's time.
        portFree ??= this.allocatePort(now) !== undefined;
        if (o.tunnels.enabled && n.twoWayAt !== undefined && portFree && this.preferredPath(n)) at(now + 1000 / T.NEW_TUNNELS_PER_SECOND);
        continue;
      }
      if (t.phase === 'offering' && t.offered && (t.nextRetryAt > now || this.unicastTarget(n, t.iface))) at(t.nextRetryAt);
      if (t.phase === 'up' && !n.quiet && this.preferredPath(n)) {
        if (t.handshakeAt === undefined && t.appliedGeneration === t.generation) at(t.configuredAt + o.tunnels.handshakeTimeoutMs + 1);
        if (t.role === 'initiator') at(t.rekeyAt);
        if (t.active.peer?.endpoint.zone !== undefined && !this.interfaces.has(t.active.peer.endpoint.zone)) at(now);
      }
      if (t.appliedGeneration !== t.generation && t.setupRetryAt > now) at(t.setupRetryAt);
    }
    return Math.max(now, next);
  }

  /**
   * A quiet neighbor's tunnel is alive while WireGuard received something from it within the
   * tunnel dead interval (persistent keepalives guarantee traffic) and, once observed, its
   * latest handshake is younger than REJECT-AFTER-TIME (PROTOCOL.md §6 "Liveness").
   */
  private tunnelAlive(t: TunnelState, n: NeighborState, now: number): boolean {
    if (!t.active.peer || t.handshakeAt === undefined) return false;
    if (now - t.rxChangedAt > this.options.tunnels.deadAfterMs) return false;
    const observedSinceQuiet = t.observedAt >= n.quietSince;
    return !observedSinceQuiet || now - t.handshakeAt <= WIREGUARD_REJECT_AFTER_MS;
  }

  // ---------------------------------------------------------------- views

  /**
   * Every tunnel interface the kernel should have: one per tunnel, plus interfaces made ahead
   * for neighbors that proved the link two-way and have no tunnel yet (at most
   * MAX_PREPARED_TUNNELS: each is a process for wireguard-go).
   */
  desiredTunnels(now: number): DesiredTunnel[] {
    const out: DesiredTunnel[] = [];
    let prepared = 0;
    for (const n of this.neighbors.values()) {
      const t = n.tunnel;
      if (!t) {
        if (this.options.tunnels.enabled && n.twoWayAt !== undefined && prepared < T.MAX_PREPARED_TUNNELS) {
          prepared++;
          out.push({ ifname: this.ifnameOf(n), neighbor: n.key, intent: undefined, configured: false, applied: false, due: true });
        }
        continue;
      }
      out.push({
        ifname: t.ifname, neighbor: n.key,
        intent: {
          ifname: t.ifname, neighbor: n.key, generation: t.generation,
          privateKey: t.active.privateKey, publicKey: t.active.publicKey, listenPort: t.listenPort,
          address: this.tunnelAddress, mtu: this.options.tunnels.mtu,
          peer: t.active.peer ? { ...t.active.peer, keepaliveSeconds: this.options.tunnels.keepaliveSeconds } : undefined,
        },
        configured: t.appliedGeneration > 0,
        applied: t.appliedGeneration === t.generation,
        due: now >= t.setupRetryAt,
      });
    }
    return out;
  }

  neighborList(): NeighborView[] {
    return [...this.neighbors.values()].map((n) => {
      const p = this.preferredPath(n);
      const t = n.tunnel;
      return {
        key: n.key,
        iface: p?.[0] ?? t?.iface,
        linkLocal: p?.[1].linkLocal,
        control: p?.[1].control,
        lastSeq: this.deps.replay.lastSeq(n.key),
        firstHeard: n.firstHeard,
        lastHeard: n.lastHeard,
        state: n.quiet ? 'quiet' : n.twoWayAt !== undefined || this.tunnelWorks(n) ? 'two-way' : 'heard',
        tunnel: t && {
          ifname: t.ifname, role: t.role, phase: t.phase, listenPort: t.listenPort,
          localKey: toBase64(t.active.publicKey),
          peerKey: t.active.peer && toBase64(t.active.peer.tunnelKey),
          peerEndpoint: t.active.peer?.endpoint,
          handshakeAt: t.handshakeAt,
          applied: t.appliedGeneration === t.generation,
          configured: t.appliedGeneration > 0,
        },
      };
    });
  }

  /** Where proven neighbors are heard from (for the kernel's guard of the discovery port), sorted. */
  provenSources(): { address: string; iface: string }[] {
    const out: { address: string; iface: string }[] = [];
    for (const n of this.neighbors.values()) {
      if (!n.proven && !n.tunnel) continue;
      for (const [iface, p] of n.paths) out.push({ address: p.linkLocal, iface });
    }
    return out.sort((a, b) => (a.address + a.iface < b.address + b.iface ? -1 : 1));
  }

  interfaceList(): MeshInterface[] {
    return [...this.interfaces.values()].map(({ name, linkLocal }) => ({ name, linkLocal }));
  }
}
