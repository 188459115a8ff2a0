/**
 * babeld's local control protocol (pure), as babeld 1.12.1 speaks it (local.c):
 *
 *   on connect   BABEL 1.0 / version V / host H / my-id ID / ok
 *   request      one line: `dump`, `monitor`, `unmonitor`, `quit`, `interface NAME ...`,
 *                `flush interface NAME`, or another directive allowed at run time
 *   reply        zero or more data lines, then `ok`, `no [message]` or `bad`
 *   data line    KIND TYPE NAME (KEY VALUE)*     KIND = add | change | flush
 *                  add interface w0 up true ipv6 fe80::a ipv4 10.0.0.1
 *                  add neighbour 55b1cd4a2990 address fe80::b if w0 reach f000 ureach 0000
 *                      rxcost 96 txcost 96 [rtt 1.234 rttcost 0] cost 96
 *                  add xroute fd00::1/128-::/0 prefix fd00::1/128 from ::/0 metric 0
 *                  add route 55b1cd4a3060 prefix 10.55.0.3/32 from 0.0.0.0/0 installed yes
 *                      id f4:db:ae:d4:cb:68:01:ec metric 192 refmetric 96 via fe80::b if w0
 *
 * `dump` answers with `add` lines for everything; `monitor` does the same and then sends a
 * line for every change. Both feed one table (BabeldTable). Lines from babeld are untrusted
 * input: a line that does not parse is returned as `{ ok: false }`, never thrown.
 */

/** babeld's metric for "unreachable" (RFC 8966 §2.1: infinity is 0xFFFF). */
export const INFINITY = 0xffff;

export type EventKind = 'add' | 'change' | 'flush';

export interface InterfaceEntry {
  name: string;
  up: boolean;
  ipv6: string | undefined;
  ipv4: string | undefined;
}

export interface NeighbourEntry {
  id: string;
  address: string;
  ifname: string;
  reach: number;
  ureach: number;
  rxcost: number;
  txcost: number;
  rtt: number | undefined;
  rttcost: number | undefined;
  cost: number;
}

export interface XrouteEntry {
  id: string;
  prefix: string;
  from: string;
  metric: number;
}

export interface RouteEntry {
  id: string;
  prefix: string;
  from: string;
  installed: boolean;
  routerId: string;
  metric: number;
  refmetric: number;
  via: string;
  ifname: string;
}

export type BabeldEvent =
  | { kind: EventKind; type: 'interface'; entry: InterfaceEntry }
  | { kind: EventKind; type: 'neighbour'; entry: NeighbourEntry }
  | { kind: EventKind; type: 'xroute'; entry: XrouteEntry }
  | { kind: EventKind; type: 'route'; entry: RouteEntry };

export type ProtocolLine =
  | { type: 'event'; event: BabeldEvent }
  | { type: 'ok' }
  | { type: 'no'; message: string }
  | { type: 'bad' }
  | { type: 'banner'; key: 'BABEL' | 'version' | 'host' | 'my-id'; value: string };

export type LineResult = { ok: true; line: ProtocolLine } | { ok: false; reason: string };

const KINDS = new Set(['add', 'change', 'flush']);
const NUMBER = /^[0-9]{1,10}$/;
const HEX4 = /^[0-9a-f]{4}$/;
const DECIMAL = /^[0-9]{1,10}(\.[0-9]{1,6})?$/;
const WORD = /^[!-~]{1,64}$/;

function pairs(words: string[], from: number): Map<string, string> | undefined {
  if ((words.length - from) % 2 !== 0) return undefined;
  const m = new Map<string, string>();
  for (let i = from; i < words.length; i += 2) {
    const k = words[i]!;
    if (m.has(k)) return undefined;
    m.set(k, words[i + 1]!);
  }
  return m;
}

function num(m: Map<string, string>, key: string): number | undefined {
  const v = m.get(key);
  return v !== undefined && NUMBER.test(v) ? Number(v) : undefined;
}

function word(m: Map<string, string>, key: string): string | undefined {
  const v = m.get(key);
  return v !== undefined && WORD.test(v) ? v : undefined;
}

/** Parses one line (without its newline). Never throws. */
export function parseLine(text: string): LineResult {
  if (text.length > 1024) return { ok: false, reason: 'line too long' };
  if (text === 'ok') return { ok: true, line: { type: 'ok' } };
  if (text === 'bad') return { ok: true, line: { type: 'bad' } };
  if (text === 'no' || text.startsWith('no ')) return { ok: true, line: { type: 'no', message: text.slice(3) } };
  const words = text.split(' ').filter((w) => w !== '');
  const head = words[0];
  if (head === 'BABEL' || head === 'version' || head === 'host' || head === 'my-id') {
    if (words.length !== 2) return { ok: false, reason: `bad banner line: ${text}` };
    return { ok: true, line: { type: 'banner', key: head, value: words[1]! } };
  }
  if (head === undefined || !KINDS.has(head) || words.length < 3) return { ok: false, reason: `unknown line: ${text.slice(0, 80)}` };
  const kind = head as EventKind;
  const type = words[1];
  const name = words[2]!;
  if (!WORD.test(name)) return { ok: false, reason: 'bad name' };
  const m = pairs(words, 3);
  if (!m) return { ok: false, reason: `unpaired fields: ${text.slice(0, 80)}` };
  const fail = (what: string): LineResult => ({ ok: false, reason: `${type} line without a valid ${what}: ${text.slice(0, 80)}` });

  switch (type) {
    case 'interface': {
      const up = m.get('up');
      if (up !== 'true' && up !== 'false') return fail('up');
      return { ok: true, line: { type: 'event', event: { kind, type, entry: { name, up: up === 'true', ipv6: word(m, 'ipv6'), ipv4: word(m, 'ipv4') } } } };
    }
    case 'neighbour': {
      const address = word(m, 'address');
      const ifname = word(m, 'if');
      const reach = m.get('reach');
      const ureach = m.get('ureach');
      const rxcost = num(m, 'rxcost');
      const txcost = num(m, 'txcost');
      const cost = num(m, 'cost');
      const rtt = m.get('rtt');
      const rttcost = num(m, 'rttcost');
      if (!address) return fail('address');
      if (!ifname) return fail('if');
      if (!reach || !HEX4.test(reach) || !ureach || !HEX4.test(ureach)) return fail('reach');
      if (rxcost === undefined || txcost === undefined || cost === undefined) return fail('cost');
      if (rtt !== undefined && !DECIMAL.test(rtt)) return fail('rtt');
      const entry: NeighbourEntry = {
        id: name, address, ifname, reach: parseInt(reach, 16), ureach: parseInt(ureach, 16), rxcost, txcost,
        rtt: rtt === undefined ? undefined : Number(rtt), rttcost, cost,
      };
      return { ok: true, line: { type: 'event', event: { kind, type, entry } } };
    }
    case 'xroute': {
      const prefix = word(m, 'prefix');
      const from = word(m, 'from');
      const metric = num(m, 'metric');
      if (!prefix || !from) return fail('prefix');
      if (metric === undefined) return fail('metric');
      return { ok: true, line: { type: 'event', event: { kind, type, entry: { id: name, prefix, from, metric } } } };
    }
    case 'route': {
      const prefix = word(m, 'prefix');
      const from = word(m, 'from');
      const installed = m.get('installed');
      const routerId = word(m, 'id');
      const metric = num(m, 'metric');
      const refmetric = num(m, 'refmetric');
      const via = word(m, 'via');
      const ifname = word(m, 'if');
      if (!prefix || !from) return fail('prefix');
      if (installed !== 'yes' && installed !== 'no') return fail('installed');
      if (!routerId) return fail('id');
      if (metric === undefined || refmetric === undefined) return fail('metric');
      if (!via || !ifname) return fail('next hop');
      const entry: RouteEntry = { id: name, prefix, from, installed: installed === 'yes', routerId, metric, refmetric, via, ifname };
      return { ok: true, line: { type: 'event', event: { kind, type, entry } } };
    }
    default:
      return { ok: false, reason: `unknown type: ${text.slice(0, 80)}` };
  }
}

/** What babeld said about itself on connect. */
export interface Banner {
  protocol: string;
  version: string | undefined;
  host: string | undefined;
  myId: string | undefined;
}

/**
 * babeld's tables as its dump and monitor lines describe them. `add` and `change` set an
 * entry, `flush` removes it.
 */
export class BabeldTable {
  readonly interfaces = new Map<string, InterfaceEntry>();
  readonly neighbours = new Map<string, NeighbourEntry>();
  readonly xroutes = new Map<string, XrouteEntry>();
  readonly routes = new Map<string, RouteEntry>();

  apply(event: BabeldEvent): void {
    const table: Map<string, unknown> =
      event.type === 'interface' ? this.interfaces : event.type === 'neighbour' ? this.neighbours : event.type === 'xroute' ? this.xroutes : this.routes;
    const key = event.type === 'interface' ? event.entry.name : event.entry.id;
    if (event.kind === 'flush') table.delete(key);
    else table.set(key, event.entry);
  }

  neighboursOn(ifname: string): NeighbourEntry[] {
    return [...this.neighbours.values()].filter((n) => n.ifname === ifname);
  }

  /** The whole table as sorted text (for tests and debugging). */
  render(): string {
    const sorted = <T>(m: Map<string, T>, f: (t: T) => string) => [...m.values()].map(f).sort();
    return [
      ...sorted(this.interfaces, (i) => `interface ${i.name} up ${i.up}${i.ipv6 ? ` ipv6 ${i.ipv6}` : ''}`),
      ...sorted(this.neighbours, (n) => `neighbour ${n.address} if ${n.ifname} cost ${n.cost}`),
      ...sorted(this.xroutes, (x) => `xroute ${x.prefix} metric ${x.metric}`),
      ...sorted(this.routes, (r) => `route ${r.prefix} via ${r.via} if ${r.ifname} metric ${r.metric}${r.installed ? ' installed' : ''}`),
    ].join('\n');
  }
}
