/**
 * The discovery/control UDP socket: one IPv6 socket on the protocol port, joined to the hello
 * group on every mesh interface. Multicast hellos and unicast control messages both arrive here;
 * the sender's address carries the interface as its zone (`fe80::1%eth0`), which is how the core
 * knows where a message came from.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from 'pino';
import { ScroogeError } from '../errors.js';
import { canonicalIPv6, type Endpoint } from '../protocol/address.js';

export interface Source {
  address: string;
  iface: string | undefined;
}

/** What the agent needs of its discovery socket (an in-memory one stands in for it in tests). */
export interface Transport {
  onDatagram(handler: (bytes: Uint8Array, source: Source) => void): void;
  /** Joins the hello group on exactly these interfaces. */
  setInterfaces(names: readonly string[]): void;
  send(iface: string, to: Endpoint, bytes: Uint8Array): void;
  readonly sendErrors: number;
  close(): Promise<void>;
}

export interface TransportOptions {
  port: number;
  group: string;
  logger?: Logger | undefined;
}

export class UdpTransport implements Transport {
  private readonly joined = new Set<string>();
  private closed = false;
  /** The interface multicast goes out on now: set only when it changes (a syscall each time). */
  private multicastIface: string | undefined;
  sendErrors = 0;

  private constructor(private readonly socket: Socket, private readonly group: string, private readonly log: Logger | undefined) {}

  static async open(opts: TransportOptions): Promise<UdpTransport> {
    // Every address we send to is a literal: skip the resolver (dns.lookup on each send).
    const lookup = (address: string, _opts: unknown, cb: (err: Error | null, address: string, family: number) => void) => cb(null, address, 6);
    const socket = createSocket({ type: 'udp6', reuseAddr: false, ipv6Only: true, lookup: lookup as never });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE'
          ? new ScroogeError('EADDRINUSE', `UDP port ${opts.port} is in use`, 'is another scrooge agent running here? (or set discovery.port)')
          : err);
      });
      socket.bind(opts.port, '::', () => resolve());
    });
    // A flood must not crowd real hellos out of the socket buffer before we read them: ask for
    // 1 MiB (the kernel caps it at net.core.rmem_max).
    try {
      socket.setRecvBufferSize(1 << 20);
    } catch {
      // keep the default
    }
    // Our own multicast would come back to us; the core would drop it anyway, this saves work.
    socket.setMulticastLoopback(false);
    socket.setMulticastTTL(1);
    const t = new UdpTransport(socket, opts.group, opts.logger?.child({ component: 'transport' }));
    socket.on('error', (err) => t.log?.warn({ err }, 'socket error'));
    return t;
  }

  onDatagram(handler: (bytes: Uint8Array, source: Source) => void): void {
    // The same few neighbors' addresses arrive every second: canonicalised once each (bounded:
    // a flood from many sources only empties the cache).
    const canonical = new Map<string, string>();
    const canonicalOf = (raw: string): string => {
      let c = canonical.get(raw);
      if (c === undefined) {
        if (canonical.size >= 1024) canonical.clear();
        c = canonicalIPv6(raw) ?? raw;
        canonical.set(raw, c);
      }
      return c;
    };
    this.socket.on('message', (msg, rinfo) => {
      const pct = rinfo.address.indexOf('%');
      const raw = pct < 0 ? rinfo.address : rinfo.address.slice(0, pct);
      const source = { address: canonicalOf(raw), iface: pct < 0 ? undefined : rinfo.address.slice(pct + 1) };
      handler(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), source);
    });
  }

  /** Joins the hello group on exactly these interfaces. */
  setInterfaces(names: readonly string[]): void {
    const want = new Set(names);
    for (const name of want) {
      if (this.joined.has(name)) continue;
      try {
        this.socket.addMembership(this.group, `::%${name}`);
        this.joined.add(name);
        this.multicastIface = undefined; // a re-made interface has a new index: select it again
        this.log?.debug({ iface: name }, 'joined hello group');
      } catch (err) {
        this.log?.warn({ iface: name, err: (err as Error).message }, 'cannot join hello group');
      }
    }
    for (const name of [...this.joined]) {
      if (want.has(name)) continue;
      try {
        this.socket.dropMembership(this.group, `::%${name}`);
      } catch {
        // The interface is gone, and its membership with it.
      }
      this.joined.delete(name);
      this.multicastIface = undefined;
    }
  }

  send(iface: string, to: Endpoint, bytes: Uint8Array): void {
    if (this.closed) return;
    const multicast = to.address.startsWith('ff');
    try {
      if (multicast && this.multicastIface !== iface) {
        this.socket.setMulticastInterface(`::%${iface}`);
        this.multicastIface = iface;
      }
    } catch (err) {
      this.sendErrors++;
      this.log?.debug({ iface, err: (err as Error).message }, 'cannot select interface');
      return;
    }
    this.socket.send(bytes, to.port, `${to.address}%${to.zone ?? iface}`, (err) => {
      if (err) {
        this.sendErrors++;
        this.multicastIface = undefined;
        this.log?.debug({ iface, to: to.address, err: err.message }, 'send failed');
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
