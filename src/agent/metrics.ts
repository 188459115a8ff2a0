/**
 * Optional Prometheus endpoint (config `metrics.listen`; off by default, loopback unless told
 * otherwise). Values are read at scrape time from the agent (prom-client `collect`), so there is
 * no bookkeeping on the hot path.
 */
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import { ScroogeError } from '../errors.js';

export interface MetricsSource {
  counters(): { sent: Readonly<Record<string, number>>; received: Readonly<Record<string, number>>; redundant: Readonly<Record<string, number>>; dropped: Readonly<Partial<Record<string, number>>> };
  neighbors(): { state: string }[];
  tunnels(): Promise<{ neighbor: string; alias: string | null; ifname: string; rxBytes: number; txBytes: number; handshakeAgeSeconds: number | null }[]>;
  classes(): Promise<{ dev: string; classid: string; neighbor: string | null; alias: string | null; rateBits: number | null; bytes: number; packets: number; drops: number }[]>;
  untunneledDrops(): Promise<number | null>;
  discoveryDrops(): Promise<number | null>;
  routing(): Promise<{ routes: number; interfaces: number; restarts: number; running: boolean } | null>;
}

/** `fn`'s result, shared by every caller within one scrape (half a second). */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let cached: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = performance.now();
    if (!cached || now - cached.at > 500) cached = { at: now, value: fn() };
    return cached.value;
  };
}

/** A counter mirrored from a cumulative value the agent keeps. */
function mirror(c: Counter<string>, labels: Record<string, string>, value: number): void {
  c.inc(labels, value);
}

export function buildRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  const opts = { registers: [registry] };
  new Gauge({ name: 'scrooge_neighbors', help: 'Neighbors in the table, by state', labelNames: ['state'], ...opts, collect() {
    this.reset();
    for (const s of ['heard', 'two-way', 'quiet']) this.set({ state: s }, source.neighbors().filter((n) => n.state === s).length);
  } });
  const byType = (name: string, help: string, pick: 'sent' | 'received' | 'redundant') => new Counter({ name, help, labelNames: ['type'], ...opts, collect() {
    this.reset();
    for (const [type, v] of Object.entries(source.counters()[pick])) mirror(this, { type }, v);
  } });
  byType('scrooge_messages_sent_total', 'Protocol messages sent, by type', 'sent');
  byType('scrooge_messages_received_total', 'Protocol messages accepted, by type', 'received');
  byType('scrooge_messages_redundant_total', 'Hellos and confirms not verified: nothing new from a neighbor with a working tunnel (PROTOCOL.md §6)', 'redundant');
  new Counter({ name: 'scrooge_messages_dropped_total', help: 'Datagrams dropped, by reason (PROTOCOL.md §7)', labelNames: ['reason'], ...opts, collect() {
    this.reset();
    for (const [reason, v] of Object.entries(source.counters().dropped)) if (v !== undefined) mirror(this, { reason }, v);
  } });
  // One read of the tunnels and classes per scrape, shared by the metrics built from it.
  const tunnels = once(() => source.tunnels());
  const classes = once(() => source.classes());
  const tunnelLabels = ['neighbor', 'alias', 'interface'];
  const tl = (t: Awaited<ReturnType<MetricsSource['tunnels']>>[number]) => ({ neighbor: t.neighbor, alias: t.alias ?? '', interface: t.ifname });
  new Counter({ name: 'scrooge_tunnel_received_bytes_total', help: 'Bytes received over the tunnel to a neighbor', labelNames: tunnelLabels, ...opts, async collect() {
    this.reset();
    for (const t of await tunnels()) mirror(this, tl(t), t.rxBytes);
  } });
  new Counter({ name: 'scrooge_tunnel_sent_bytes_total', help: 'Bytes sent over the tunnel to a neighbor', labelNames: tunnelLabels, ...opts, async collect() {
    this.reset();
    for (const t of await tunnels()) mirror(this, tl(t), t.txBytes);
  } });
  new Gauge({ name: 'scrooge_tunnel_handshake_age_seconds', help: 'Age of the latest WireGuard handshake per tunnel', labelNames: tunnelLabels, ...opts, async collect() {
    this.reset();
    for (const t of await tunnels()) if (t.handshakeAgeSeconds !== null) this.set(tl(t), t.handshakeAgeSeconds);
  } });
  const classLabels = ['interface', 'class', 'neighbor', 'alias'];
  const cl = (c: Awaited<ReturnType<MetricsSource['classes']>>[number]) => ({ interface: c.dev, class: c.classid, neighbor: c.neighbor ?? '', alias: c.alias ?? '' });
  new Counter({ name: 'scrooge_class_sent_bytes_total', help: 'Bytes sent by a traffic class', labelNames: classLabels, ...opts, async collect() {
    this.reset();
    for (const c of await classes()) mirror(this, cl(c), c.bytes);
  } });
  new Counter({ name: 'scrooge_class_dropped_packets_total', help: 'Packets dropped by a traffic class', labelNames: classLabels, ...opts, async collect() {
    this.reset();
    for (const c of await classes()) mirror(this, cl(c), c.drops);
  } });
  new Gauge({ name: 'scrooge_class_rate_bits', help: 'Guaranteed rate of a traffic class (bit/s)', labelNames: classLabels, ...opts, async collect() {
    this.reset();
    for (const c of await classes()) if (c.rateBits !== null) this.set(cl(c), c.rateBits);
  } });
  const routing = once(() => source.routing());
  new Gauge({ name: 'scrooge_routes', help: 'Routes babeld has installed and can use', ...opts, async collect() {
    this.reset();
    const r = await routing();
    if (r) this.set(r.routes);
  } });
  new Gauge({ name: 'scrooge_routing_interfaces', help: 'Tunnels babeld runs on', ...opts, async collect() {
    this.reset();
    const r = await routing();
    if (r) this.set(r.interfaces);
  } });
  new Counter({ name: 'scrooge_babeld_restarts_total', help: 'Times babeld died and was started again', ...opts, async collect() {
    this.reset();
    const r = await routing();
    if (r) this.inc(r.restarts);
  } });
  new Counter({ name: 'scrooge_discovery_dropped_packets_total', help: 'Datagrams to the discovery port the kernel dropped before the agent saw them (strangers over budget)', ...opts, async collect() {
    this.reset();
    const v = await source.discoveryDrops();
    if (v !== null) this.inc(v);
  } });
  new Counter({ name: 'scrooge_untunneled_dropped_packets_total', help: 'Packets from mesh interfaces (not through a tunnel) kept from being forwarded', ...opts, async collect() {
    this.reset();
    const v = await source.untunneledDrops();
    if (v !== null) this.inc(v);
  } });
  return registry;
}

export class MetricsServer {
  private server: Server | undefined;
  constructor(private readonly registry: Registry, private readonly listen: { host: string; port: number }, private readonly log?: Logger) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
        res.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => {
          this.log?.warn({ err: err.message }, 'metrics scrape failed');
          res.writeHead(500).end(`${err.message}\n`);
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new ScroogeError('EMETRICS', `cannot listen for metrics on ${this.listen.host}:${this.listen.port}: ${err.code ?? err.message}`, 'change metrics.listen in the config')));
      server.listen(this.listen.port, this.listen.host, () => resolve());
    });
    this.server = server;
    this.log?.info({ listen: `${this.listen.host}:${this.listen.port}` }, 'metrics on /metrics');
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
