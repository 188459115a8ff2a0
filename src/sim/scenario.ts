/**
 * CORE scenario XML -> topology model (pure: no fs, no processes).
 *
 * CORE (coreemu/core) has no schema: its reader, `daemon/core/xml/corexml.py` (`CoreXmlReader`),
 * defines the format, and this module follows it for the subset in CORE-XML.md:
 * - `<devices><device id name type class>`: namespace nodes. `class` must be empty: CORE uses it
 *   for docker/podman/lxc nodes. Services are kept (for display), never run. `<services>`, or
 *   `<configservices>` when there is none, as in `read_device`.
 * - `<networks><network id name type>`: SWITCH, HUB, WIRELESS_LAN. Devices and networks share one
 *   id space. Other types (EMANE, RJ45, TUNNEL, ...) are rejected.
 * - `<position x y>`: `read_device` sets a position only `if all([x, y])`, so a 0 (or missing)
 *   coordinate means "unset"; the model says `position: null`.
 * - `<links><link node1 node2>` (older files: `node_one`/`node_two`) with `<iface1>`/`<iface2>`
 *   (older: `interface_one`/`interface_two`) for the device side(s) only, and `<options>`:
 *   bandwidth bit/s, delay and jitter µs, loss % (older: `per`), dup %, buffer packets.
 * - Link options are per interface in CORE (`CoreLink.options()`, `links.py`): `add_link` gives
 *   both interfaces the options, so each end's egress is shaped the same. A unidirectional link is
 *   written twice, the second time with node1/node2 swapped; the reader then calls `update_link`,
 *   which changes only the options of that entry's node1 interface. The model keeps both sides
 *   in `egress.node1` (what leaves node1's end) and `egress.node2`.
 * - `<mobility_configurations><mobility_configuration node model="basic_range">`: the WLAN's
 *   range (canvas pixels), bandwidth, delay, jitter and error (loss %). Missing values take
 *   `BasicRangeModel`'s defaults (location/mobility.py). Other models (ns2script) are ignored.
 * - `<session_metadata><configuration name="scrooge.overlay" value="{JSON}">`: agent config the
 *   scenario asks for (ours, not CORE's; CORE keeps unknown metadata entries).
 * Everything else at the top level (session_options, session_hooks, emane_*, ...) is ignored.
 *
 * Who runs the Scrooge agent is a convention of ours, not CORE's: **a device of type `host` runs
 * no agent, every other type does** (`runsAgent`). Our scenarios use `prouter` (no CORE services)
 * for agent nodes and `host` (only the DefaultRoute service) for non-agent hosts, such as an
 * untrusted host on the mesh segment or the upstream host behind a router's uplink.
 *
 * Derived views: `segments` (each L2 segment and who is on it), `hearingPairs` (who can hear
 * whom on a segment: everyone, except on a basic_range WLAN where only pairs within range do,
 * as in `BasicRangeModel.calclink`), `interfaceRole` (mesh / uplink / none) and `agentPairs`.
 *
 * Malformed input throws ScroogeError('ESCENARIO') naming the element: a scenario file is a
 * person's mistake, not untrusted network input.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ScroogeError } from '../errors.js';
import { isIPv4, parseIPv6Groups } from '../protocol/address.js';

export const NETWORK_TYPES = ['SWITCH', 'HUB', 'WIRELESS_LAN'] as const;
export type NetworkType = (typeof NETWORK_TYPES)[number];

/** Canvas coordinates in pixels; null when CORE treats the position as unset. */
export interface Position {
  x: number;
  y: number;
}

export interface Device {
  id: number;
  name: string;
  /** CORE node model: PC, router, mdr, host, prouter, ... */
  type: string;
  /** CORE services, kept for display; the harness runs none of them. */
  services: string[];
  position: Position | null;
}

/** `BasicRangeModel` configuration of a WLAN. */
export interface BasicRange {
  /** Pixels: pairs of nodes farther apart than this cannot hear each other. */
  range: number;
  /** bit/s, 0 = unlimited. */
  bandwidth: number;
  /** µs. */
  delay: number;
  /** µs. */
  jitter: number;
  /** Loss, percent. */
  error: number;
}

export interface Network {
  id: number;
  name: string;
  type: NetworkType;
  position: Position | null;
  /** Only WIRELESS_LAN; null when the file has no basic_range configuration for it. */
  basicRange: BasicRange | null;
}

export interface IpAddress {
  address: string;
  prefix: number;
}

export interface Iface {
  id: number;
  /** `eth<id>` when the file has no name. */
  name: string;
  mac: string | null;
  ip4: IpAddress | null;
  ip6: IpAddress | null;
}

/** CORE link options; 0 means "not set" (CORE writes zeros for unset options). */
export interface LinkOptions {
  /** bit/s */
  bandwidth: number;
  /** µs */
  delay: number;
  /** µs */
  jitter: number;
  /** percent */
  loss: number;
  /** percent */
  dup: number;
  /** packets (queue limit) */
  buffer: number;
}

export interface Link {
  node1: number;
  node2: number;
  /** The device-side interfaces; null on a network's side. */
  iface1: Iface | null;
  iface2: Iface | null;
  /** The options of the (first) `<link>` element, as written. */
  options: LinkOptions;
  unidirectional: boolean;
  /** What leaves each end: CORE's per-interface options after both unidirectional entries. */
  egress: { node1: LinkOptions; node2: LinkOptions };
}

export interface Topology {
  devices: Device[];
  networks: Network[];
  links: Link[];
  /**
   * Agent config the scenario itself asks for (a JSON object in
   * `<session_metadata><configuration name="scrooge.overlay" value="{...}"/>`), merged like
   * `--config-overlay`, under it; absent when the scenario has none (see nodeconfig.ts).
   */
  overlay?: Record<string, unknown>;
}

/** The `<session_metadata>` entry that carries a scenario's own agent config overlay. */
export const OVERLAY_METADATA = 'scrooge.overlay';

export const NO_OPTIONS: Readonly<LinkOptions> = Object.freeze({
  bandwidth: 0,
  delay: 0,
  jitter: 0,
  loss: 0,
  dup: 0,
  buffer: 0,
});

/** `BasicRangeModel.options` defaults (CORE daemon/core/location/mobility.py). */
export const BASIC_RANGE_DEFAULTS: Readonly<BasicRange> = Object.freeze({
  range: 275,
  bandwidth: 54_000_000,
  delay: 5000,
  jitter: 0,
  error: 0,
});

// ---------------------------------------------------------------------------------------------
// A tiny element tree over fast-xml-parser's preserveOrder output, so the reader below can walk
// the document the way corexml.py walks lxml (find / iterchildren / get).

interface El {
  tag: string;
  attrs: Record<string, string>;
  children: El[];
}

type OrderedNode = Record<string, unknown>;

function toElements(nodes: unknown): El[] {
  if (!Array.isArray(nodes)) return [];
  const out: El[] = [];
  for (const node of nodes as OrderedNode[]) {
    const tag = Object.keys(node).find((k) => k !== ':@');
    if (tag === undefined || tag.startsWith('#') || tag.startsWith('?') || tag.startsWith('!')) continue;
    const rawAttrs = (node[':@'] ?? {}) as Record<string, unknown>;
    const attrs: Record<string, string> = {};
    for (const [k, v] of Object.entries(rawAttrs)) attrs[k] = String(v);
    out.push({ tag, attrs, children: toElements(node[tag]) });
  }
  return out;
}

const find = (el: El, tag: string): El | undefined => el.children.find((c) => c.tag === tag);
const findAll = (el: El | undefined, tag: string): El[] => (el ? el.children.filter((c) => c.tag === tag) : []);

function fail(what: string, message: string): never {
  throw new ScroogeError('ESCENARIO', `${what}: ${message}`);
}

/** `<device id="3">`, the way errors name an element. */
function describe(el: El): string {
  const keys = ['id', 'name', 'node1', 'node2', 'node_one', 'node_two', 'node', 'model'];
  const shown = keys.filter((k) => el.attrs[k] !== undefined).map((k) => `${k}="${el.attrs[k]}"`);
  return `<${el.tag}${shown.length ? ' ' + shown.join(' ') : ''}>`;
}

function parseDocument(xml: string): El {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    fail('scenario', `malformed XML at line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg}`);
  }
  const parser = new XMLParser({
    preserveOrder: true,
    ignoreAttributes: false,
    attributeNamePrefix: '',
    parseTagValue: false,
    parseAttributeValue: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    trimValues: true,
  });
  const roots = toElements(parser.parse(xml));
  if (roots.length !== 1) fail('scenario', `expected one root element <scenario>, found ${roots.length}`);
  const root = roots[0]!;
  if (root.tag !== 'scenario') fail(`<${root.tag}>`, 'the root element must be <scenario>');
  return root;
}

// ---------------------------------------------------------------------------------------------
// Attribute readers. CORE converts with int()/float(); a value that would make CORE fail is an
// error here too, naming the element and attribute.

function attrInt(el: El, name: string, opts: { required: true; min?: number }): number;
function attrInt(el: El, name: string, opts?: { required?: false; min?: number }): number | undefined;
function attrInt(el: El, name: string, opts: { required?: boolean; min?: number } = {}): number | undefined {
  const raw = el.attrs[name];
  if (raw === undefined || raw === '') {
    if (opts.required) fail(describe(el), `missing ${name}`);
    return undefined;
  }
  if (!/^[+-]?\d+$/.test(raw.trim())) fail(describe(el), `${name}="${raw}" is not an integer`);
  const value = Number(raw);
  if (!Number.isSafeInteger(value)) fail(describe(el), `${name}="${raw}" is out of range`);
  if (opts.min !== undefined && value < opts.min) fail(describe(el), `${name}="${raw}" must be at least ${opts.min}`);
  return value;
}

function attrNumber(el: El, name: string, opts: { min?: number; max?: number } = {}): number | undefined {
  const raw = el.attrs[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value)) fail(describe(el), `${name}="${raw}" is not a number`);
  if (opts.min !== undefined && value < opts.min) fail(describe(el), `${name}="${raw}" must be at least ${opts.min}`);
  if (opts.max !== undefined && value > opts.max) fail(describe(el), `${name}="${raw}" must be at most ${opts.max}`);
  return value;
}

function attrName(el: El, name: string): string {
  const raw = el.attrs[name]?.trim();
  if (!raw) fail(describe(el), `missing ${name}`);
  return raw;
}

function readPosition(el: El): Position | null {
  const pos = find(el, 'position');
  if (!pos) return null;
  const x = attrNumber(pos, 'x');
  const y = attrNumber(pos, 'y');
  // corexml.py: `if all([x, y]): position.set(x, y)`, so 0 is "unset".
  return x && y ? { x, y } : null;
}

// ---------------------------------------------------------------------------------------------

function readDevice(el: El): Device {
  const id = attrInt(el, 'id', { required: true, min: 0 });
  const name = attrName(el, 'name');
  const type = attrName(el, 'type');
  const clazz = el.attrs['class']?.trim();
  if (clazz) fail(describe(el), `class="${clazz}" is not supported: only namespace nodes (empty class) can be built`);
  const services = find(el, 'services') ?? find(el, 'configservices');
  return {
    id,
    name,
    type,
    services: findAll(services, 'service').map((s) => attrName(s, 'name')),
    position: readPosition(el),
  };
}

function readNetwork(el: El): Network {
  const id = attrInt(el, 'id', { required: true, min: 0 });
  const name = attrName(el, 'name');
  const type = el.attrs['type']?.trim();
  if (!type) fail(describe(el), 'missing type');
  if (!(NETWORK_TYPES as readonly string[]).includes(type)) {
    fail(describe(el), `unsupported type "${type}" (supported: ${NETWORK_TYPES.join(', ')})`);
  }
  return { id, name, type: type as NetworkType, position: readPosition(el), basicRange: null };
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** IPv6 text in any valid form (CORE writes what the user typed), an embedded IPv4 tail included. */
export function isIPv6(text: string): boolean {
  return parseIPv6Groups(text) !== undefined;
}

function readAddress(el: El, family: 'ip4' | 'ip6'): IpAddress | null {
  const address = el.attrs[family]?.trim();
  const mask = attrInt(el, `${family}_mask`, { min: 0 });
  // An address is applied only when both halves are present (as CORE's InterfaceData does).
  if (!address || mask === undefined) return null;
  const ok = family === 'ip4' ? isIPv4(address) : isIPv6(address);
  if (!ok) fail(describe(el), `${family}="${address}" is not an IPv${family === 'ip4' ? 4 : 6} address`);
  const max = family === 'ip4' ? 32 : 128;
  if (mask > max) fail(describe(el), `${family}_mask="${mask}" must be at most ${max}`);
  return { address, prefix: mask };
}

function readIface(el: El): Iface {
  const id = attrInt(el, 'id', { required: true, min: 0 });
  const name = el.attrs['name']?.trim() || `eth${id}`;
  const mac = el.attrs['mac']?.trim() || null;
  if (mac !== null && !MAC.test(mac)) fail(describe(el), `mac="${mac}" is not a MAC address`);
  return { id, name, mac: mac?.toLowerCase() ?? null, ip4: readAddress(el, 'ip4'), ip6: readAddress(el, 'ip6') };
}

function readOptions(el: El | undefined): { options: LinkOptions; unidirectional: boolean } {
  if (!el) return { options: { ...NO_OPTIONS }, unidirectional: false };
  return {
    options: {
      bandwidth: attrNumber(el, 'bandwidth', { min: 0 }) ?? 0,
      delay: attrNumber(el, 'delay', { min: 0 }) ?? 0,
      jitter: attrNumber(el, 'jitter', { min: 0 }) ?? 0,
      loss: attrNumber(el, 'loss', { min: 0, max: 100 }) ?? attrNumber(el, 'per', { min: 0, max: 100 }) ?? 0,
      dup: attrNumber(el, 'dup', { min: 0, max: 100 }) ?? 0,
      buffer: attrNumber(el, 'buffer', { min: 0 }) ?? 0,
    },
    unidirectional: el.attrs['unidirectional']?.trim() === '1',
  };
}

function readBasicRange(el: El): BasicRange {
  const values = new Map<string, El>();
  for (const c of findAll(el, 'configuration')) values.set(attrName(c, 'name'), c);
  const get = (key: keyof BasicRange, opts: { min?: number; max?: number } = {}) => {
    const c = values.get(key);
    if (!c) return BASIC_RANGE_DEFAULTS[key];
    return attrNumber(c, 'value', { min: 0, ...opts }) ?? BASIC_RANGE_DEFAULTS[key];
  };
  return {
    range: get('range'),
    bandwidth: get('bandwidth'),
    delay: get('delay'),
    jitter: get('jitter'),
    error: get('error', { max: 100 }),
  };
}

type Node = { kind: 'device'; device: Device } | { kind: 'network'; network: Network };

/** Parses a CORE scenario; throws ScroogeError('ESCENARIO') naming the offending element. */
export function parseScenario(xml: string): Topology {
  const root = parseDocument(xml);
  const nodes = new Map<number, Node>();
  const names = new Map<string, El>();
  const remember = (el: El, id: number, name: string, node: Node) => {
    if (nodes.has(id)) fail(describe(el), `duplicate id ${id} (devices and networks share one id space)`);
    const other = names.get(name);
    if (other) fail(describe(el), `duplicate name "${name}" (also ${describe(other)})`);
    nodes.set(id, node);
    names.set(name, el);
  };

  const devices: Device[] = [];
  for (const el of findAll(find(root, 'devices'), 'device')) {
    const device = readDevice(el);
    remember(el, device.id, device.name, { kind: 'device', device });
    devices.push(device);
  }
  const networks: Network[] = [];
  for (const el of findAll(find(root, 'networks'), 'network')) {
    const network = readNetwork(el);
    remember(el, network.id, network.name, { kind: 'network', network });
    networks.push(network);
  }

  for (const el of findAll(find(root, 'mobility_configurations'), 'mobility_configuration')) {
    if (el.attrs['model'] !== 'basic_range') continue;
    const id = attrInt(el, 'node', { required: true });
    const node = nodes.get(id);
    if (!node) fail(describe(el), `unknown node id ${id}`);
    if (node.kind !== 'network' || node.network.type !== 'WIRELESS_LAN') {
      fail(describe(el), `basic_range applies to a WIRELESS_LAN, not to node ${id}`);
    }
    node.network.basicRange = readBasicRange(el);
  }

  const links = readLinks(find(root, 'links'), nodes);
  const overlay = readOverlay(root);
  return overlay ? { devices, networks, links, overlay } : { devices, networks, links };
}

/** The scenario's own config overlay (OVERLAY_METADATA), if it has one. */
function readOverlay(root: El): Record<string, unknown> | undefined {
  const entry = findAll(find(root, 'session_metadata'), 'configuration').find((c) => c.attrs['name']?.trim() === OVERLAY_METADATA);
  if (!entry) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(entry.attrs['value'] ?? '');
  } catch (err) {
    fail(describe(entry), `the value of ${OVERLAY_METADATA} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(describe(entry), `the value of ${OVERLAY_METADATA} must be a JSON object`);
  return value as Record<string, unknown>;
}

function readLinks(parent: El | undefined, nodes: Map<number, Node>): Link[] {
  const links: Link[] = [];
  const ifaceIds = new Map<number, Set<number>>();
  const ifaceNames = new Map<number, Set<string>>();
  const claim = (el: El, device: Device, iface: Iface) => {
    const ids = ifaceIds.get(device.id) ?? new Set<number>();
    const names = ifaceNames.get(device.id) ?? new Set<string>();
    if (ids.has(iface.id)) fail(describe(el), `interface id ${iface.id} of ${device.name} is already used by another link`);
    if (names.has(iface.name)) fail(describe(el), `interface name ${iface.name} of ${device.name} is already used by another link`);
    ids.add(iface.id);
    names.add(iface.name);
    ifaceIds.set(device.id, ids);
    ifaceNames.set(device.id, names);
  };

  for (const el of findAll(parent, 'link')) {
    const node1 = attrInt(el, el.attrs['node1'] !== undefined ? 'node1' : 'node_one', { required: true });
    const node2 = attrInt(el, el.attrs['node2'] !== undefined ? 'node2' : 'node_two', { required: true });
    const n1 = nodes.get(node1);
    const n2 = nodes.get(node2);
    if (!n1) fail(describe(el), `unknown node id ${node1}`);
    if (!n2) fail(describe(el), `unknown node id ${node2}`);
    if (node1 === node2) fail(describe(el), 'a link must join two different nodes');
    if (n1.kind === 'network' && n2.kind === 'network') {
      fail(describe(el), 'links between two networks are not supported');
    }
    const e1 = find(el, 'iface1') ?? find(el, 'interface_one');
    const e2 = find(el, 'iface2') ?? find(el, 'interface_two');
    // Only a device side has an interface (CORE ignores one given for a network's side).
    const need = (n: Node, e: El | undefined, which: string): Iface | null => {
      if (n.kind === 'network') return null;
      if (!e) fail(describe(el), `missing <${which}> for device ${n.device.name}`);
      return readIface(e);
    };
    const iface1 = need(n1, e1, 'iface1');
    const iface2 = need(n2, e2, 'iface2');
    const { options, unidirectional } = readOptions(find(el, 'options'));

    // The second entry of a unidirectional pair updates the link already read (corexml.py
    // read_links -> session.update_link): only this entry's node1 end changes.
    const existing = unidirectional ? findLink(links, node1, iface1, node2, iface2) : undefined;
    if (existing) {
      if (existing.node1 === node1) existing.egress.node1 = { ...options };
      else existing.egress.node2 = { ...options };
      existing.unidirectional = true;
      continue;
    }
    if (iface1 && n1.kind === 'device') claim(el, n1.device, iface1);
    if (iface2 && n2.kind === 'device') claim(el, n2.device, iface2);
    links.push({
      node1,
      node2,
      iface1,
      iface2,
      options,
      unidirectional,
      egress: { node1: { ...options }, node2: { ...options } },
    });
  }
  return links;
}

/** The link joining these two (node, interface) ends, in either orientation. */
function findLink(links: Link[], node1: number, iface1: Iface | null, node2: number, iface2: Iface | null): Link | undefined {
  const same = (a: Iface | null, b: Iface | null) => (a === null && b === null) || (a !== null && b !== null && a.id === b.id);
  return links.find(
    (l) =>
      (l.node1 === node1 && l.node2 === node2 && same(l.iface1, iface1) && same(l.iface2, iface2)) ||
      (l.node1 === node2 && l.node2 === node1 && same(l.iface1, iface2) && same(l.iface2, iface1)),
  );
}

// ---------------------------------------------------------------------------------------------
// Derived views.

/** Our convention: a device of type `host` runs no agent; every other device type runs one. */
export function runsAgent(device: Device): boolean {
  return device.type !== 'host';
}

export function deviceById(topology: Topology, id: number): Device | undefined {
  return topology.devices.find((d) => d.id === id);
}

export function deviceByName(topology: Topology, name: string): Device | undefined {
  return topology.devices.find((d) => d.name === name);
}

export function networkById(topology: Topology, id: number): Network | undefined {
  return topology.networks.find((n) => n.id === id);
}

/** One device interface on a segment. */
export interface SegmentMember {
  device: Device;
  iface: Iface;
  link: Link;
}

/** An L2 segment: a network with everything attached to it, or a direct device-device link. */
export interface Segment {
  /** The network's name, or `n1:eth0-n2:eth0` for a direct link. */
  id: string;
  network: Network | null;
  /** The link, for a direct segment. */
  link: Link | null;
  members: SegmentMember[];
}

/** Every segment of the topology: networks first (in file order), then direct links. */
export function segments(topology: Topology): Segment[] {
  const byNetwork = new Map<number, Segment>();
  for (const network of topology.networks) {
    byNetwork.set(network.id, { id: network.name, network, link: null, members: [] });
  }
  const direct: Segment[] = [];
  for (const link of topology.links) {
    const d1 = deviceById(topology, link.node1);
    const d2 = deviceById(topology, link.node2);
    if (d1 && d2 && link.iface1 && link.iface2) {
      direct.push({
        id: `${d1.name}:${link.iface1.name}-${d2.name}:${link.iface2.name}`,
        network: null,
        link,
        members: [
          { device: d1, iface: link.iface1, link },
          { device: d2, iface: link.iface2, link },
        ],
      });
      continue;
    }
    const segment = byNetwork.get(d1 ? link.node2 : link.node1);
    const device = d1 ?? d2;
    const iface = d1 ? link.iface1 : link.iface2;
    if (segment && device && iface) segment.members.push({ device, iface, link });
  }
  return [...byNetwork.values(), ...direct];
}

/** Canvas distance, as `BasicRangeModel.calcdistance` (z is not in the XML). */
export function distance(a: Position, b: Position): number {
  return Math.hypot(a.x - b.x, a.y - b.y);
}

/**
 * Unordered member pairs that can hear each other: all pairs on a SWITCH, HUB or direct link.
 * On a WIRELESS_LAN, only pairs within basic_range's range; a member without a position hears
 * nobody (`BasicRangeModel.set_position` skips it), and without a basic_range configuration
 * nobody hears anybody (CORE passes no packets on such a WLAN; see CORE-XML.md).
 */
export function hearingPairs(segment: Segment): Array<[SegmentMember, SegmentMember]> {
  const pairs: Array<[SegmentMember, SegmentMember]> = [];
  const { members, network } = segment;
  for (let i = 0; i < members.length; i++) {
    for (let j = i + 1; j < members.length; j++) {
      const a = members[i]!;
      const b = members[j]!;
      if (network?.type === 'WIRELESS_LAN') {
        const range = network.basicRange?.range;
        const pa = a.device.position;
        const pb = b.device.position;
        if (range === undefined || !pa || !pb || distance(pa, pb) > range) continue;
      }
      pairs.push([a, b]);
    }
  }
  return pairs;
}

export type InterfaceRole = 'mesh' | 'uplink' | 'none';

/**
 * 'mesh' if the interface's segment has at least one other agent device it can hear, 'uplink'
 * if not (a router's link to a host-only segment), 'none' on a device that runs no agent.
 */
export function interfaceRole(topology: Topology, device: Device | string, ifaceName: string): InterfaceRole {
  const dev = typeof device === 'string' ? deviceByName(topology, device) : device;
  if (!dev) throw new RangeError(`interfaceRole: no device ${String(device)}`);
  if (!runsAgent(dev)) return 'none';
  for (const segment of segments(topology)) {
    const me = segment.members.find((m) => m.device.id === dev.id && m.iface.name === ifaceName);
    if (!me) continue;
    for (const [a, b] of hearingPairs(segment)) {
      const other = a === me ? b : b === me ? a : undefined;
      if (other && other.device.id !== dev.id && runsAgent(other.device)) return 'mesh';
    }
    return 'uplink';
  }
  throw new RangeError(`interfaceRole: ${dev.name} has no interface ${ifaceName}`);
}

/** Unordered pairs of agent device names that hear each other on some segment, sorted. */
export function agentPairs(topology: Topology): Array<[string, string]> {
  const seen = new Map<string, [string, string]>();
  for (const segment of segments(topology)) {
    for (const [a, b] of hearingPairs(segment)) {
      if (a.device.id === b.device.id || !runsAgent(a.device) || !runsAgent(b.device)) continue;
      const pair: [string, string] = a.device.name < b.device.name ? [a.device.name, b.device.name] : [b.device.name, a.device.name];
      seen.set(pair.join('\n'), pair);
    }
  }
  return [...seen.values()].sort((x, y) => (x[0] === y[0] ? cmp(x[1], y[1]) : cmp(x[0], y[0])));
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The interfaces of a device, in link order, with the segment each is on. */
export function deviceInterfaces(topology: Topology, device: Device): Array<{ iface: Iface; segment: Segment }> {
  const out: Array<{ iface: Iface; segment: Segment }> = [];
  for (const segment of segments(topology)) {
    for (const m of segment.members) if (m.device.id === device.id) out.push({ iface: m.iface, segment });
  }
  return out.sort((a, b) => a.iface.id - b.iface.id);
}
