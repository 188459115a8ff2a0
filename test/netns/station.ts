/**
 * A station: a small node program in a namespace that runs no agent (M in uplink.xml) and speaks
 * UDP on the discovery port like a node on the segment would. It captures every datagram that
 * reaches it (multicast hellos of the group, unicast answers) and sends whatever datagrams it is
 * told to, to the group or to an agent's link-local address. The bytes are built by the caller
 * (tests and benchmarks import src/protocol); the station only moves them.
 *
 * Protocol on its stdio, one JSON object per line:
 *   stdout  {"op":"ready"}                                   bound and joined
 *           {"op":"rx","from":"fe80::..%eth0","b64":"...","at":<unix ms>}
 *           {"op":"sent","id":N,"n":N,"errors":N}            after a send command
 *   stdin   {"id":N,"to":"ff02::114%eth0","port":51819,"b64":["...", ...]}
 * No side effects on import (the flood benchmark uses it outside vitest).
 */
import { type ChildProcess, spawn } from 'node:child_process';

const STATION_JS = `
const [iface, group, port, bindAddress] = process.argv.slice(1);
const s = require('node:dgram').createSocket({ type: 'udp6', ipv6Only: true });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
s.on('message', (m, r) => out({ op: 'rx', from: r.address, b64: m.toString('base64'), at: Date.now() }));
s.on('error', (e) => { console.error(String(e)); process.exit(1); });
s.bind(Number(port), bindAddress || '::', () => {
  // A station bound to one address takes unicast to it only: no group to join.
  if (!bindAddress) s.addMembership(group, '::%' + iface);
  // Our own sends to the group must not come back as captures.
  s.setMulticastLoopback(false);
  out({ op: 'ready' });
});
const sendAll = async (cmd) => {
  let errors = 0;
  for (const b of cmd.b64) {
    await new Promise((resolve) => s.send(Buffer.from(b, 'base64'), cmd.port, cmd.to, (err) => { if (err) errors++; resolve(); }));
  }
  out({ op: 'sent', id: cmd.id, n: cmd.b64.length, errors });
};
let buf = '';
let queue = Promise.resolve();
process.stdin.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const cmd = JSON.parse(buf.slice(0, nl));
    buf = buf.slice(nl + 1);
    queue = queue.then(() => sendAll(cmd));
  }
});
process.stdin.on('end', () => process.exit(0));
`;

export interface Captured {
  /** Source address with zone, as the station's socket reported it. */
  from: string;
  bytes: Uint8Array;
  /** Unix ms when the station received it. */
  at: number;
}

export interface StationOptions {
  iface?: string;
  group?: string;
  port?: number;
  /**
   * Bind to this one address (`fe80::5eed%eth0`) instead of all: the station then sends from it
   * and captures only unicast to it (no group joined). Default: all addresses, group joined.
   */
  bindAddress?: string;
  /** Called with the child process (so a test harness can kill it on failure). */
  onSpawn?: (child: ChildProcess) => void;
  log?: (line: string) => void;
}

export class Station {
  readonly captured: Captured[] = [];
  private nextId = 1;
  private readonly waiters = new Map<number, (r: { n: number; errors: number }) => void>();
  private readyResolve!: () => void;
  private readonly ready = new Promise<void>((r) => (this.readyResolve = r));
  private exited: string | undefined;

  private constructor(readonly ns: string, readonly child: ChildProcess, readonly port: number) {
    let buffer = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffer += chunk;
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const line of parts) this.onLine(line);
    });
    child.once('exit', (code, signal) => {
      this.exited = `station in ${ns} exited (${code ?? signal})`;
      for (const w of this.waiters.values()) w({ n: -1, errors: -1 });
    });
  }

  /** Starts a station in `ns` on `iface`, bound to the discovery port (or `port`) and joined to the group. */
  static async start(ns: string, opts: StationOptions = {}): Promise<Station> {
    const iface = opts.iface ?? 'eth0';
    const group = opts.group ?? 'ff02::114';
    const port = opts.port ?? 51819;
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', STATION_JS, iface, group, String(port), opts.bindAddress ?? ''], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    opts.onSpawn?.(child);
    child.stderr!.on('data', (d: Buffer) => opts.log?.(`[${ns}] station stderr: ${d.toString().trim()}`));
    const station = new Station(ns, child, port);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await Promise.race([
      station.ready,
      new Promise((_, reject) => child.once('exit', () => reject(new Error(`station in ${ns} did not start`)))),
    ]);
    clearTimeout(timer);
    return station;
  }

  private onLine(line: string): void {
    let msg: { op: string; from?: string; b64?: string; at?: number; id?: number; n?: number; errors?: number };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (msg.op === 'ready') this.readyResolve();
    else if (msg.op === 'rx') this.captured.push({ from: msg.from!, bytes: new Uint8Array(Buffer.from(msg.b64!, 'base64')), at: msg.at! });
    else if (msg.op === 'sent') {
      this.waiters.get(msg.id!)?.({ n: msg.n!, errors: msg.errors! });
      this.waiters.delete(msg.id!);
    }
  }

  /**
   * Sends `datagrams` in order to `to` (`ff02::114%eth0`, `fe80::...%eth0`) and resolves once
   * the station's socket has sent them all. Throws if any send failed.
   */
  async send(to: string, datagrams: readonly Uint8Array[], port = this.port): Promise<void> {
    if (this.exited) throw new Error(this.exited);
    const id = this.nextId++;
    const done = new Promise<{ n: number; errors: number }>((resolve) => this.waiters.set(id, resolve));
    this.child.stdin!.write(JSON.stringify({ id, to, port, b64: datagrams.map((d) => Buffer.from(d).toString('base64')) }) + '\n');
    const r = await done;
    if (r.n !== datagrams.length || r.errors !== 0) throw new Error(`station in ${this.ns}: sent ${r.n} of ${datagrams.length} to ${to}, ${r.errors} errors${this.exited ? `; ${this.exited}` : ''}`);
  }

  stop(): void {
    this.child.stdin!.end();
    this.child.kill('SIGKILL');
  }
}
