/**
 * One generator for what a scenario's node gets (pure): its agent config (`nodeConfig`), the
 * kernel set-up around the agent (`nodeSetup`: routes, as `ip -batch` lines), and the CORE hook
 * that applies both inside CORE (`hookScript`, written into each scenario by `scrooge sim hooks`
 * / scripts/core-hooks.mjs). `scrooge sim up` and the CORE hook use the same functions (the hook
 * calls `scrooge sim node-config` and `scrooge sim node-setup`), so a scenario behaves the same
 * in both.
 *
 * The config of an agent node (scenario.ts `runsAgent`), from the bottom up:
 *   1. what the topology says: mesh interfaces are the device's interfaces whose segment has
 *      another agent (`interfaceRole` 'mesh'), uplinks the others; a link's bandwidth becomes
 *      the interface's rate (an uplink without one: 1gbit). A node with no mesh interface gets
 *      `lo`, so a lone node still starts;
 *   2. routing on: `routing.mode "babeld"`, the node's mesh IPv4 address `meshAddress4`
 *      (MESH4_PREFIX, from its CORE device id: see `simMeshAddress4`) and `accept4` =
 *      MESH4_PREFIX, so IPv4 host routes of the other nodes are accepted. `gateway` stays "auto":
 *      a node with an uplink is a gateway and masquerades what the mesh sends out of it;
 *   3. the scenario's own overlay (`<session_metadata>` entry "scrooge.overlay", scenario.ts);
 *   4. the run's overlay (`scrooge sim up --config-overlay FILE`, the hook's $SCROOGE_OVERLAY).
 * An overlay's top-level keys apply to every node, `"nodes": {"R": {...}}` to one node only;
 * `{"routing": {"mode": "off"}}` turns routing off.
 *
 * The set-up (`nodeSetup`):
 *   - a gateway (routing on, an uplink, gateway not false) gets a default route (IPv4 and/or
 *     IPv6, as its `gateway` says) out of its first uplink, `dev` only: babeld announces only
 *     default routes the node really has, and an on-link route sends nothing back into the mesh
 *     (the host behind it has a default route to the gateway: no loop);
 *   - a host (type `host`) with CORE's DefaultRoute service gets a default route to its router:
 *     the agent node on one of its segments for which that segment is an uplink, through that
 *     router's address in the host's subnet (CORE's own DefaultRoute routes via the first host
 *     address of the subnet, which our scenarios leave unused: the hook replaces that route).
 *     A host with no such router (one on a mesh segment) gets none: mesh routers forward only
 *     tunneled traffic, so none would carry its packets. The host needs no route back to the
 *     mesh: the gateway masquerades.
 */
import { join } from 'node:path';
import { formatIPv4, parseIPv4 } from '../routing/address.js';
import { ScroogeError } from '../errors.js';
import { parseIPv6Groups } from '../protocol/address.js';
import { type Device, type IpAddress, type Topology, deviceByName, deviceInterfaces, interfaceRole, runsAgent } from './scenario.js';

export type Json = Record<string, unknown>;

/** Every sim node's mesh IPv4 /32 lies in here: 10.99.<id / 256>.<id % 256>. */
export const MESH4_PREFIX = '10.99.0.0/16';
const MESH4_BASE = parseIPv4('10.99.0.0')!;
/** CORE device ids that map into MESH4_PREFIX (0 would be the prefix's own address). */
export const MESH4_MAX_ID = 0xffff;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge of plain objects; arrays and values in `over` replace. */
export function mergeJson(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isObject(v) && isObject(out[k]) ? mergeJson(out[k] as Json, v) : v;
  return out;
}

/** Applies an overlay: its top-level keys to every node, `nodes[name]` to that node only. */
function applyOverlay(config: Json, overlay: Json | null | undefined, node: string): Json {
  if (!overlay) return config;
  const { nodes, ...all } = overlay;
  let out = mergeJson(config, all);
  if (isObject(nodes) && isObject(nodes[node])) out = mergeJson(out, nodes[node] as Json);
  return out;
}

/**
 * A device's mesh IPv4 address: 10.99.X.Y with X.Y its CORE device id (id 1 -> 10.99.0.1,
 * id 300 -> 10.99.1.44). Ids are unique in a scenario and stay put when devices are added, so
 * the address does too. Undefined for ids outside 1..65535 (the node then has none unless an
 * overlay gives it one).
 */
export function simMeshAddress4(device: Device): string | undefined {
  if (!Number.isInteger(device.id) || device.id < 1 || device.id > MESH4_MAX_ID) return undefined;
  return formatIPv4(MESH4_BASE + device.id);
}

function requireDevice(topology: Topology, device: Device | string): Device {
  const d = typeof device === 'string' ? deviceByName(topology, device) : device;
  if (!d) {
    throw new ScroogeError('ENONODE', `the scenario has no device "${String(device)}" (devices: ${topology.devices.map((x) => x.name).join(', ')})`);
  }
  return d;
}

/**
 * The agent config of one device. `dir` holds its key (node.key), state (state/) and control
 * socket (control.sock). `overlay` is the run's (--config-overlay); the scenario's own comes
 * from the topology. Throws ScroogeError for a device that runs no agent.
 */
export function nodeConfig(topology: Topology, device: Device | string, dir: string, overlay: Json | null = null): Json {
  const d = requireDevice(topology, device);
  if (!runsAgent(d)) throw new ScroogeError('ENOAGENT', `device ${d.name} is of type "host": it runs no agent`, 'every other device type runs one');
  const mesh: Json[] = [];
  const uplinks: Json[] = [];
  for (const { iface, segment } of deviceInterfaces(topology, d)) {
    const member = segment.members.find((m) => m.device.id === d.id && m.iface.name === iface.name)!;
    const egress = member.link.node1 === d.id ? member.link.egress.node1 : member.link.egress.node2;
    const rate = egress.bandwidth > 0 ? egress.bandwidth : undefined;
    if (interfaceRole(topology, d, iface.name) === 'mesh') mesh.push(rate ? { name: iface.name, rate } : { name: iface.name });
    else uplinks.push({ interface: iface.name, rate: rate ?? '1gbit' });
  }
  const mesh4 = simMeshAddress4(d);
  let config: Json = {
    keyFile: join(dir, 'node.key'),
    stateDir: join(dir, 'state'),
    controlSocket: join(dir, 'control.sock'),
    interfaces: mesh.length ? mesh : ['lo'], // a lone node: nothing to mesh with
    uplinks,
    routing: { mode: 'babeld', ...(mesh4 ? { meshAddress4: mesh4 } : {}), accept4: MESH4_PREFIX },
  };
  config = applyOverlay(config, topology.overlay, d.name);
  return applyOverlay(config, overlay, d.name);
}

/** Which default routes a config makes its node announce (config.ts `gatewayOf`, on raw JSON). */
function gatewayFamilies(config: Json): { ipv4: boolean; ipv6: boolean } {
  const routing = isObject(config['routing']) ? config['routing'] : {};
  const uplinks = Array.isArray(config['uplinks']) ? config['uplinks'] : [];
  if (routing['mode'] !== 'babeld' || uplinks.length === 0) return { ipv4: false, ipv6: false };
  const g = routing['gateway'] ?? 'auto';
  if (g === 'auto' || g === true) return { ipv4: true, ipv6: true };
  if (g === false) return { ipv4: false, ipv6: false };
  if (isObject(g)) return { ipv4: g['ipv4'] !== false, ipv6: g['ipv6'] !== false };
  return { ipv4: false, ipv6: false };
}

function sameSubnet4(a: IpAddress, b: IpAddress): boolean {
  const x = parseIPv4(a.address);
  const y = parseIPv4(b.address);
  if (x === undefined || y === undefined || a.prefix !== b.prefix) return false;
  const size = 2 ** (32 - a.prefix);
  return Math.floor(x / size) === Math.floor(y / size);
}

function sameSubnet6(a: IpAddress, b: IpAddress): boolean {
  const x = parseIPv6Groups(a.address);
  const y = parseIPv6Groups(b.address);
  if (!x || !y || a.prefix !== b.prefix) return false;
  for (let bit = 0; bit < a.prefix; bit += 16) {
    const take = Math.min(16, a.prefix - bit);
    const mask = (0xffff << (16 - take)) & 0xffff;
    if ((x[bit / 16]! & mask) !== (y[bit / 16]! & mask)) return false;
  }
  return true;
}

/**
 * The kernel set-up of one device around its agent, as `ip -batch` lines (may be empty).
 * `config` is the agent's (nodeConfig) for an agent node, ignored for a host.
 */
export function nodeSetup(topology: Topology, device: Device | string, config: Json | null): string[] {
  const d = requireDevice(topology, device);
  if (runsAgent(d)) {
    if (!config) return [];
    const gw = gatewayFamilies(config);
    const first = (config['uplinks'] as Json[])[0];
    const uplink = isObject(first) && typeof first['interface'] === 'string' ? first['interface'] : undefined;
    // Only an uplink the device really has (an overlay may name another).
    if (!uplink || !deviceInterfaces(topology, d).some((i) => i.iface.name === uplink)) return [];
    return [...(gw.ipv4 ? [`route replace 0.0.0.0/0 dev ${uplink}`] : []), ...(gw.ipv6 ? [`route replace ::/0 dev ${uplink}`] : [])];
  }
  if (!d.services.includes('DefaultRoute')) return [];
  let via4: string | undefined;
  let via6: string | undefined;
  for (const { iface, segment } of deviceInterfaces(topology, d)) {
    for (const m of segment.members) {
      if (m.device.id === d.id || !runsAgent(m.device) || interfaceRole(topology, m.device, m.iface.name) !== 'uplink') continue;
      if (!via4 && iface.ip4 && m.iface.ip4 && sameSubnet4(iface.ip4, m.iface.ip4)) via4 = m.iface.ip4.address;
      if (!via6 && iface.ip6 && m.iface.ip6 && sameSubnet6(iface.ip6, m.iface.ip6)) via6 = m.iface.ip6.address;
    }
  }
  return [...(via4 ? [`route replace 0.0.0.0/0 via ${via4}`] : []), ...(via6 ? [`route replace ::/0 via ${via6}`] : [])];
}

// ---------------------------------------------------------------------------------------------
// The CORE hook.

/** The hook's name in `<session_hooks>` (state 4: RUNTIME). */
export const HOOK_NAME = 'scrooge-start.sh';

/** Node names are checked by plan.ts; the hook puts them in shell words unquoted-safe. */
const SHELL_SAFE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** The shell script CORE runs at RUNTIME: sets up every node and starts every agent. */
export function hookScript(topology: Topology): string {
  for (const d of topology.devices) {
    if (!SHELL_SAFE.test(d.name)) throw new ScroogeError('ESCENARIO', `device name "${d.name}" cannot be used in the CORE hook`);
  }
  const calls = topology.devices.map((d) => (runsAgent(d) ? `start_agent ${d.name}` : `set_up ${d.name}`));
  return `#!/bin/sh
# Written by \`scrooge sim hooks\` (scripts/core-hooks.mjs) from this scenario: do not edit it by
# hand, run the script again after changing the scenario (a unit test checks they agree).
# When the session reaches RUNTIME (state 4), sets up every node and starts the Scrooge agent in
# every agent node (any type but host). Config and set-up come from \`scrooge sim node-config\`
# and \`scrooge sim node-setup\`, which read this scenario file and generate exactly what
# \`scrooge sim up\` gives the same node (routing with babeld on; src/sim/nodeconfig.ts).
# UNTESTED IN CORE: CORE cannot be installed where Scrooge is developed; \`scrooge sim up\`
# builds the same topology in plain network namespaces and is what the tests use.
# CORE runs this hook on the host in $SESSION_DIR, with the scenario's path in
# $SESSION_FILENAME; nodes share the host filesystem, and \`vcmd -c "$SESSION_DIR/<node>" -- CMD\`
# runs CMD inside a node. Environment: SCROOGE, the scrooge executable (default: scrooge on the
# PATH); SCROOGE_SCENARIO, the scenario file if not $SESSION_FILENAME; SCROOGE_OVERLAY, a JSON
# file merged into every agent's config, as \`scrooge sim up --config-overlay\`.
set -eu
SCROOGE="\${SCROOGE:-scrooge}"
SCENARIO="\${SCROOGE_SCENARIO:-\${SESSION_FILENAME:-}}"
case "$SCENARIO" in
  ""|None) echo "${HOOK_NAME}: no scenario file in SESSION_FILENAME: set SCROOGE_SCENARIO" >&2; exit 1 ;;
esac
set_up() {
  dir="$SESSION_DIR/$1.scrooge"
  mkdir -p "$dir"
  "$SCROOGE" sim node-setup "$SCENARIO" "$1" \${SCROOGE_OVERLAY:+--overlay "$SCROOGE_OVERLAY"} >"$dir/setup.batch"
  if [ -s "$dir/setup.batch" ]; then vcmd -c "$SESSION_DIR/$1" -- ip -batch "$dir/setup.batch"; fi
}
start_agent() {
  set_up "$1"
  dir="$SESSION_DIR/$1.scrooge"
  "$SCROOGE" sim node-config "$SCENARIO" "$1" --dir "$dir" \${SCROOGE_OVERLAY:+--overlay "$SCROOGE_OVERLAY"} >"$dir/config.json"
  [ -f "$dir/node.key" ] || "$SCROOGE" keygen --out "$dir/node.key" >/dev/null
  vcmd -c "$SESSION_DIR/$1" -- sh -c \\
    "'$SCROOGE' run --config '$dir/config.json' </dev/null >>'$dir/agent.log' 2>&1 &"
}
${calls.join('\n')}
`;
}

/** `<session_hooks>` with the hook, indented as our scenario files are. */
export function hooksSection(topology: Topology): string {
  const script = hookScript(topology);
  if (script.includes(']]>')) throw new ScroogeError('ESCENARIO', 'the hook script cannot contain "]]>"');
  return `  <session_hooks>\n    <hook name="${HOOK_NAME}" state="4"><![CDATA[${script}]]></hook>\n  </session_hooks>\n`;
}

const HOOKS_SECTION = /^[ \t]*<session_hooks>[\s\S]*?<\/session_hooks>[ \t]*\r?\n?/m;

/**
 * The scenario's text with its `<session_hooks>` replaced by the generated one (or added before
 * `</scenario>`); the rest of the file is kept byte for byte. Any other hooks in the section are
 * replaced too: the section is generated.
 */
export function withHooks(xml: string, topology: Topology): string {
  const section = hooksSection(topology);
  if (HOOKS_SECTION.test(xml)) return xml.replace(HOOKS_SECTION, () => section);
  const end = xml.lastIndexOf('</scenario>');
  if (end < 0) throw new ScroogeError('ESCENARIO', 'no </scenario> to put the hooks before');
  return xml.slice(0, end) + section + xml.slice(end);
}

/** The hook script currently in a scenario file (the CDATA of HOOK_NAME), or null. */
export function currentHook(xml: string): string | null {
  const m = /<hook name="scrooge-start\.sh" state="4"><!\[CDATA\[([\s\S]*?)\]\]><\/hook>/.exec(xml);
  return m ? m[1]! : null;
}
