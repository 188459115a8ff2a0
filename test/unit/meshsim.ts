/**
 * A pure, deterministic mesh for unit-testing the core: several MeshCores on simulated
 * segments, a simulated clock, datagrams delivered with delay and optional loss, tunnel intents
 * "applied" after a delay, and a model of WireGuard: two applied ends whose keys match each
 * other handshake and then receive keepalives. Proof with real packets is in test/netns/.
 */
import { createHash } from 'node:crypto';
import { x25519 } from '@noble/curves/ed25519.js';
import { MeshCore, type Action, type CoreOptions, type TunnelIntent } from '../../src/neighbors/core.js';
import { ReplayMemory } from '../../src/neighbors/replay.js';
import { identityFromSeed, nextEpoch, SequenceSource, Verifier, toBase64, bytesEqual } from '../../src/protocol/index.js';

export interface SimIface {
  name: string;
  segment: string;
  linkLocal: string;
}

interface Pending {
  at: number;
  order: number;
  run: () => void;
}

/** Deterministic PRNG (xorshift32) so a failing run can be replayed. */
export function prng(seed: number): (n: number) => Uint8Array {
  let x = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  };
}

export class SimNode {
  core!: MeshCore;
  running = false;
  epoch: bigint | undefined;
  replayState: ReturnType<ReplayMemory['toJSON']> = [];
  /** ifname -> applied intent (what "the kernel" has) */
  applied = new Map<string, TunnelIntent>();
  events: Action[] = [];
  constructor(readonly sim: MeshSim, readonly name: string, readonly seed: Uint8Array, readonly ifaces: SimIface[], readonly options: Partial<CoreOptions>) {}

  get identity() {
    return identityFromSeed(this.seed);
  }
  get key(): string {
    return toBase64(this.identity.publicKey);
  }

  start(): void {
    this.epoch = nextEpoch(this.epoch, Math.floor(this.sim.now / 1000));
    this.core = new MeshCore(
      {
        identity: this.identity,
        seq: new SequenceSource(this.epoch, (e) => { this.epoch = e; }),
        verifier: new Verifier(),
        replay: ReplayMemory.fromJSON(this.replayState),
        random: this.sim.random,
      },
      this.options,
    );
    this.running = true;
    this.sim.handle(this, this.core.setInterfaces(this.ifaces.map((i) => ({ name: i.name, linkLocal: i.linkLocal })), this.sim.now));
  }

  /** Stops the agent. With `removeTunnels`, like SIGTERM; without, like kill -9 (tunnels stay). */
  stop(removeTunnels: boolean): void {
    this.running = false;
    this.replayState = (this.core as unknown as { deps: { replay: ReplayMemory } }).deps.replay.toJSON();
    if (removeTunnels) this.applied.clear();
  }

  tunnelCount(): number {
    return this.applied.size;
  }
}

/** For a test file that runs another's scenarios with deadline ticks (core-deadlines.test.ts). */
export const tickAtDeadlinesByDefault = { on: false };

export class MeshSim {
  now = 1_763_769_600_000;
  nodes: SimNode[] = [];
  loss = 0;
  delayMs = 1;
  applyDelayMs = 20;
  /** A node's own setup time, where nodes differ (else applyDelayMs). */
  applyDelayOf: ((node: SimNode) => number) | undefined;
  /** Datagrams to lose on purpose (besides `loss`): a test's own pattern of losses. */
  dropIf: ((from: SimNode, to: SimNode, type: string) => boolean) | undefined;
  /** Ports someone else holds: an apply that would bind one fails as busy (tunnelFailed). */
  portBusy: ((node: SimNode, port: number) => boolean) | undefined;
  private queue: Pending[] = [];
  private order = 0;
  readonly random: (n: number) => Uint8Array;
  private readonly lossRandom: (n: number) => Uint8Array;
  /** Every datagram put on the wire, for replay tests. */
  readonly wire: { from: SimNode; iface: SimIface; bytes: Uint8Array; to: string }[] = [];
  /** rx byte counters per (ifname) in the WireGuard model */
  private rx = new Map<string, number>();
  private handshakes = new Map<string, number>();

  constructor(seed = 1) {
    this.random = prng(seed);
    this.lossRandom = prng(seed * 7919);
  }

  addNode(name: string, ifaces: SimIface[], options: Partial<CoreOptions> = {}, seedByte?: number): SimNode {
    const seed = Uint8Array.from(createHash('sha256').update(`node ${name} ${seedByte ?? ''}`).digest());
    const n = new SimNode(this, name, seed, ifaces, options);
    this.nodes.push(n);
    return n;
  }

  node(name: string): SimNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  at(delay: number, run: () => void): void {
    this.queue.push({ at: this.now + delay, order: this.order++, run });
  }

  /** Injects raw bytes as if sent by `from` (address, iface) to node `to` on its interface. */
  inject(to: SimNode, iface: string, fromAddress: string, bytes: Uint8Array): void {
    if (to.running) to.sim.handle(to, to.core.receive(bytes, { address: fromAddress, iface }, this.now));
  }

  handle(node: SimNode, actions: Action[]): void {
    for (const a of actions) {
      if (a.kind === 'event') {
        node.events.push(a);
        continue;
      }
      const iface = node.ifaces.find((i) => i.name === a.iface);
      if (!iface) continue;
      this.wire.push({ from: node, iface, bytes: a.bytes, to: a.to.address });
      for (const other of this.nodes) {
        if (other === node && !a.to.address.startsWith('ff02:')) continue;
        for (const oi of other.ifaces) {
          if (oi.segment !== iface.segment) continue;
          if (!a.to.address.startsWith('ff02:') && oi.linkLocal !== a.to.address) continue;
          if (this.dropIf?.(node, other, a.type)) continue;
          if (this.loss > 0 && this.lossRandom(1)[0]! / 256 < this.loss) continue;
          this.at(this.delayMs, () => {
            if (other.running) this.handle(other, other.core.receive(a.bytes, { address: iface.linkLocal, iface: oi.name }, this.now));
          });
        }
      }
    }
  }

  /** The "agent": reconcile intents onto the fake kernel after a delay, report back. */
  private reconcile(node: SimNode): void {
    if (!node.running) return;
    const desired = node.core.desiredTunnels(this.now).flatMap((d) => (d.intent ? [d.intent] : []));
    const names = new Set(desired.map((d) => d.ifname));
    for (const ifname of [...node.applied.keys()]) if (!names.has(ifname)) node.applied.delete(ifname);
    for (const d of desired) {
      const cur = node.applied.get(d.ifname);
      if (cur && cur.generation === d.generation) continue;
      // One setup at a time per interface, as the agent's reconciler runs one pass at a time.
      const pendingKey = `${node.name}/${d.ifname}`;
      if (this.pendingApply.has(pendingKey)) continue;
      this.pendingApply.add(pendingKey);
      // As the agent's reconciler: an interface that holds a configuration of ours (the core
      // says `configured`) owns its port; any other must find the port free, and a port our own
      // interfaces hold, this one's included, is not.
      const owned = node.core.desiredTunnels(this.now).find((x) => x.ifname === d.ifname)?.configured === true && !!cur;
      this.at(this.applyDelayOf?.(node) ?? this.applyDelayMs, () => {
        this.pendingApply.delete(pendingKey);
        if (!node.running) return;
        const now = node.core.desiredTunnels(this.now).find((x) => x.ifname === d.ifname)?.intent;
        if (!now) return;
        const held = [...node.applied.values()].some((t) => t.listenPort === d.listenPort);
        if (!owned && (held || this.portBusy?.(node, d.listenPort))) return this.handle(node, node.core.tunnelFailed(d.ifname, d.generation, { portBusy: true }, this.now));
        // What was asked reaches the kernel, even if a newer generation is wanted by now (the
        // core is told, as the agent tells it; the next pass applies the newer one).
        node.applied.set(d.ifname, d);
        this.handle(node, node.core.tunnelApplied(d.ifname, d.generation, this.now));
      });
    }
  }
  private pendingApply = new Set<string>();

  /** WireGuard model: ends that know each other's keys handshake; live ones get keepalives. */
  private wireguard(): void {
    for (const a of this.nodes) {
      for (const [ifname, ta] of a.applied) {
        const peer = ta.peer;
        let matched = false;
        if (peer) {
          for (const b of this.nodes) {
            if (b === a) continue;
            for (const tb of b.applied.values()) {
              if (bytesEqual(tb.publicKey, peer.tunnelKey) && tb.peer && bytesEqual(tb.peer.tunnelKey, ta.publicKey)) matched = true;
            }
          }
        }
        const id = `${a.name}/${ifname}/${toBase64(ta.publicKey)}`;
        if (matched) {
          if (!this.handshakes.has(id)) this.handshakes.set(id, this.now);
          this.rx.set(id, (this.rx.get(id) ?? 0) + 32);
        }
      }
    }
  }

  private observe(node: SimNode): void {
    if (!node.running) return;
    for (const ifname of node.core.tunnelsToWatch()) {
      const t = node.applied.get(ifname);
      if (!t) continue;
      const id = `${node.name}/${ifname}/${toBase64(t.publicKey)}`;
      const hs = this.handshakes.get(id);
      this.handle(node, node.core.tunnelObserved(ifname, { handshakeAgoMs: hs === undefined ? undefined : this.now - hs, rxBytes: this.rx.get(id) ?? 0, txBytes: 0, ...(t.peer ? { peerKey: t.peer.tunnelKey } : {}) }, this.now));
    }
  }

  /**
   * Tick each core only at its own `nextDeadline` (as the agent does), not every 100 ms. The
   * "agent" around the core (reconcile, WireGuard observations) keeps its 100 ms beat.
   */
  tickAtDeadlines = tickAtDeadlinesByDefault.on;

  private coreDeadline(): number {
    let d = Infinity;
    for (const n of this.nodes) if (n.running) d = Math.min(d, n.core.nextDeadline(this.now));
    return d;
  }

  /** Runs the simulation for `ms`, ticking every node every 100 ms (or at its deadlines). */
  run(ms: number): void {
    const end = this.now + ms;
    let nextTick = this.now;
    for (;;) {
      this.queue.sort((x, y) => x.at - y.at || x.order - y.order);
      const next = this.queue[0];
      const deadline = this.tickAtDeadlines ? this.coreDeadline() : Infinity;
      if (next && next.at <= nextTick && next.at <= end && next.at <= deadline) {
        this.queue.shift();
        this.now = Math.max(this.now, next.at);
        next.run();
        continue;
      }
      if (deadline < nextTick && deadline <= end) {
        this.now = Math.max(this.now, deadline);
        for (const n of this.nodes) {
          if (!n.running || n.core.nextDeadline(this.now) > this.now) continue;
          this.handle(n, n.core.tick(this.now));
          // A deadline tick did not clear: nextDeadline named work tick does not do.
          if (n.core.nextDeadline(this.now) <= this.now) throw new Error(`${n.name}: nextDeadline ${this.now} still due after tick`);
        }
        continue;
      }
      if (nextTick > end) {
        this.now = end;
        break;
      }
      this.now = nextTick;
      if (!this.tickAtDeadlines) for (const n of this.nodes) if (n.running) this.handle(n, n.core.tick(this.now));
      this.wireguard();
      for (const n of this.nodes) {
        this.reconcile(n);
        this.observe(n);
      }
      nextTick += 100;
    }
  }

  /** True if a and b have matching, applied tunnel ends. */
  tunneled(a: SimNode, b: SimNode): boolean {
    const ta = [...a.applied.values()].find((t) => t.neighbor === b.key);
    const tb = [...b.applied.values()].find((t) => t.neighbor === a.key);
    return !!ta?.peer && !!tb?.peer && bytesEqual(ta.peer.tunnelKey, tb.publicKey) && bytesEqual(tb.peer.tunnelKey, ta.publicKey);
  }
}

export function lan(sim: MeshSim, count: number, options: Partial<CoreOptions> = {}): SimNode[] {
  return Array.from({ length: count }, (_, i) =>
    sim.addNode(`n${i + 1}`, [{ name: 'eth0', segment: 'lan', linkLocal: `fe80::${(i + 1).toString(16)}` }], options));
}

export function tunnelPublicKey(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(privateKey);
}
