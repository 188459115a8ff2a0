/**
 * Control addresses and tunnel endpoints: `[ipv6%zone]:port`, zone optional.
 *
 * The IPv6 address must be written in RFC 5952 canonical form (lowercase, leading zeros
 * dropped, the longest run of two or more zero groups compressed to `::`, no embedded IPv4),
 * so one address has one spelling and the signature covers exactly one text.
 * A zone names an interface on the *sender* (`fe80::1%eth0`); a receiver replaces it with the
 * interface the message arrived on (PROTOCOL.md §2 "Zones").
 */

export interface Endpoint {
  /** Canonical IPv6 text, without zone. */
  address: string;
  /** Interface name of a link-local address, or undefined. */
  zone?: string | undefined;
  port: number;
}

/** Linux interface names: 1..15 chars, no '/', ':', whitespace or '%'. We accept a safe subset. */
const ZONE = /^[A-Za-z0-9_.-]{1,15}$/;
const PORT = /^(?:[1-9][0-9]{0,4})$/;
const HEXGROUP = /^[0-9a-f]{1,4}$/;

/** True for dotted-quad IPv4 text (no leading zeros, each part <= 255). */
export function isIPv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

/**
 * Parses IPv6 text (no zone) into 8 groups, or undefined. Accepts any valid form, an embedded
 * IPv4 tail (`::ffff:10.0.0.1`) included; the wire accepts only the canonical one (parseEndpoint).
 */
export function parseIPv6Groups(text: string): number[] | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  let lower = text.toLowerCase();
  let v4: number[] = [];
  const lastColon = lower.lastIndexOf(':');
  if (lower.includes('.', lastColon)) {
    const quad = lower.slice(lastColon + 1);
    if (!isIPv4(quad)) return undefined;
    const b = quad.split('.').map(Number);
    v4 = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
    // The quad stands for the last two groups: parse the rest as if they were written in hex.
    lower = lower.slice(0, lastColon + 1) + '0:0';
  }
  const halves = lower.split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!HEXGROUP.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  if (!head) return undefined;
  let groups: number[];
  if (halves.length === 1) {
    if (head.length !== 8) return undefined;
    groups = head;
  } else {
    const tail = parse(halves[1]!);
    if (!tail || head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  if (v4.length) groups.splice(6, 2, ...v4);
  return groups;
}

/** RFC 5952 §4 canonical text of 8 groups. */
export function formatIPv6Groups(groups: readonly number[]): string {
  // Find the longest run (>= 2) of zero groups; the first one wins a tie (§4.2.3).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * True for a unicast link-local address (fe80::/10), the only source the protocol speaks from.
 * Parsed each time, although an idle agent's profile put it at 4 % (every datagram's source):
 * a memo of it in the core, together with the core's random bytes drawn a page at a time
 * (1.2 %), measured nothing (lan-10 idle side by side, two pairs: 0.808/0.816 % of a core
 * per agent against 0.785/0.835 %).
 */
export function isLinkLocalUnicast(text: string): boolean {
  const groups = parseIPv6Groups(text);
  return groups !== undefined && (groups[0]! & 0xffc0) === 0xfe80;
}

/**
 * Canonical form of an IPv6 address text, or undefined if it is not one. Not memoized: a
 * bounded memo of the last 256 answers (the same few neighbors' addresses recur in every
 * datagram; 3-4 % of lan-20 agents' CPU to convergence in a profile) measured within the noise
 * (agents' CPU 11.8/11.5/10.9 s against 11.4/11.7/11.7 s in alternating runs): not kept.
 */
export function canonicalIPv6(text: string): string | undefined {
  const groups = parseIPv6Groups(text);
  return groups ? formatIPv6Groups(groups) : undefined;
}

/** Why an endpoint text was refused: the address part (brackets, IPv6 text, zone) or the port. */
export type EndpointFailure = 'bad-address' | 'bad-port';
export type EndpointResult = { ok: true; endpoint: Endpoint } | { ok: false; reason: EndpointFailure };

/** Strictly parses `[addr%zone]:port` as it appears on the wire. Never throws. */
export function parseEndpoint(text: string): EndpointResult {
  // Everything up to and including "]:" is the address part (bad-address), the rest the port
  // (bad-port): PROTOCOL.md §2. No length guard here: it would turn a long port into bad-address.
  if (text[0] !== '[') return { ok: false, reason: 'bad-address' };
  const close = text.indexOf(']:');
  if (close < 0) return { ok: false, reason: 'bad-address' };
  const inner = text.slice(1, close);
  const portText = text.slice(close + 2);
  const pct = inner.indexOf('%');
  const addr = pct < 0 ? inner : inner.slice(0, pct);
  const zone = pct < 0 ? undefined : inner.slice(pct + 1);
  if (zone !== undefined && !ZONE.test(zone)) return { ok: false, reason: 'bad-address' };
  if (canonicalIPv6(addr) !== addr) return { ok: false, reason: 'bad-address' };
  if (!PORT.test(portText)) return { ok: false, reason: 'bad-port' };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { ok: false, reason: 'bad-port' };
  return { ok: true, endpoint: zone === undefined ? { address: addr, port } : { address: addr, zone, port } };
}

/** Formats an endpoint for the wire. Throws on a caller's bad value. */
export function formatEndpoint(ep: Endpoint): string {
  const canon = canonicalIPv6(ep.address);
  if (canon === undefined) throw new TypeError(`"address" is not an IPv6 address: ${ep.address}`);
  if (ep.zone !== undefined && !ZONE.test(ep.zone)) throw new TypeError(`"zone" is not an interface name: ${ep.zone}`);
  if (!Number.isInteger(ep.port) || ep.port < 1 || ep.port > 65535) throw new RangeError(`"port" out of range: ${ep.port}`);
  return `[${canon}${ep.zone !== undefined ? '%' + ep.zone : ''}]:${ep.port}`;
}

/** The same endpoint, with the zone replaced by the receiver's interface. */
export function withZone(ep: Endpoint, zone: string | undefined): Endpoint {
  return zone === undefined ? { address: ep.address, port: ep.port } : { address: ep.address, zone, port: ep.port };
}
