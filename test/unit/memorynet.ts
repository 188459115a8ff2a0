/**
 * An in-memory stand-in for the agents' discovery sockets: nodes with interfaces on named
 * segments; a datagram to the hello group reaches every other interface on the segment that
 * joined it, a unicast one the interface with that link-local address. Delivery takes 1 ms of
 * the fake clock. Links can be cut to make a neighbor vanish.
 */
import type { Transport, Source } from '../../src/system/transport.js';
import type { MeshInterface } from '../../src/neighbors/core.js';
import type { Endpoint } from '../../src/protocol/address.js';
import type { FakeClock } from './fakeclock.js';

export interface NetIface {
  name: string;
  segment: string;
  linkLocal: string;
}

class MemoryTransport implements Transport {
  sendErrors = 0;
  closed = false;
  joined = new Set<string>();
  handler: ((bytes: Uint8Array, source: Source) => void) | undefined;
  constructor(private readonly net: MemoryNet, readonly node: string, readonly ifaces: NetIface[]) {}

  onDatagram(handler: (bytes: Uint8Array, source: Source) => void): void {
    this.handler = handler;
  }

  setInterfaces(names: readonly string[]): void {
    this.joined = new Set(names);
  }

  send(iface: string, to: Endpoint, bytes: Uint8Array): void {
    if (this.closed) return;
    const from = this.ifaces.find((i) => i.name === iface);
    if (!from || this.net.isCut(this.node, iface)) {
      this.sendErrors++;
      return;
    }
    this.net.deliver(this, from, to, bytes);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.net.detach(this);
  }
}

export class MemoryNet {
  private readonly transports = new Set<MemoryTransport>();
  private readonly cut = new Set<string>();
  /** Datagrams delivered, for tests that count. */
  delivered = 0;
  constructor(private readonly clock: FakeClock, private readonly nodes: Record<string, NetIface[]>) {}

  /** The agent deps for node `name`: its transport and its interface list. */
  agentDeps(name: string) {
    const ifaces = this.nodes[name];
    if (!ifaces) throw new Error(`memory net: no node ${name}`);
    return {
      openTransport: async () => {
        const t = new MemoryTransport(this, name, ifaces);
        this.transports.add(t);
        return t;
      },
      interfaces: (names: readonly string[]): MeshInterface[] =>
        ifaces.filter((i) => names.includes(i.name) && !this.isCut(name, i.name)).map((i) => ({ name: i.name, linkLocal: i.linkLocal })),
    };
  }

  /** Unplugs (or plugs back) a node's interface. */
  setCut(node: string, iface: string, cut: boolean): void {
    if (cut) this.cut.add(`${node}/${iface}`);
    else this.cut.delete(`${node}/${iface}`);
  }

  isCut(node: string, iface: string): boolean {
    return this.cut.has(`${node}/${iface}`);
  }

  detach(t: MemoryTransport): void {
    this.transports.delete(t);
  }

  deliver(from: MemoryTransport, iface: NetIface, to: Endpoint, bytes: Uint8Array): void {
    const multicast = to.address.startsWith('ff02:');
    for (const t of this.transports) {
      if (t === from) continue;
      for (const i of t.ifaces) {
        if (i.segment !== iface.segment || this.isCut(t.node, i.name)) continue;
        if (multicast ? !t.joined.has(i.name) : i.linkLocal !== to.address) continue;
        const copy = Uint8Array.from(bytes);
        this.clock.setTimeout(() => {
          if (t.closed) return;
          this.delivered++;
          t.handler?.(copy, { address: iface.linkLocal, iface: i.name });
        }, 1);
      }
    }
  }
}
