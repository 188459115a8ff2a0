/**
 * babeld's configuration and control lines (pure). Facts about babeld 1.12.1 behind each choice
 * are in src/routing/BABELD.md; the short why is next to each line.
 *
 * What a node announces is fixed when babeld starts (filters cannot change at run time):
 *   - its mesh addresses, which live on `lo` (`redistribute local` matches addresses);
 *   - on a gateway, the default routes it really has (any protocol, `boot` named explicitly,
 *     since babeld's filters never match `proto boot` routes otherwise). A gateway whose uplink
 *     loses its default stops announcing one, instead of attracting traffic it cannot carry;
 *   - nothing else: no raw mesh segment, no LAN, no route learned from another daemon.
 * What it accepts from neighbours: host routes inside the mesh prefixes, and default routes.
 */
import { MESH_PREFIX6, checkMeshAddress4, checkPrefix4, isMeshAddress6 } from './address.js';
import { canonicalIPv6 } from '../protocol/address.js';

/** Files babeld uses, all inside the agent's state directory (defaults are shared by every namespace). */
export interface BabeldPaths {
  config: string;
  socket: string;
  pid: string;
  state: string;
  log: string;
}

/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export function babeldPaths(stateDir: string, socket?: string): BabeldPaths {
  const dir = stateDir.replace(/\/+$/, '') || '/';
  const at = (name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);
  const paths = {
    config: at('babeld.conf'),
    socket: socket ?? at('babeld.sock'),
    pid: at('babeld.pid'),
    state: at('babeld.state'),
    log: at('babeld.log'),
  };
  if (new TextEncoder().encode(paths.socket).length > MAX_SOCKET_PATH)
    throw new RangeError(`babeld's control socket path is longer than ${MAX_SOCKET_PATH} bytes: ${paths.socket}`);
  for (const p of Object.values(paths)) if (/[\s#"]/.test(p)) throw new TypeError(`babeld cannot be given a path with whitespace, '#' or '"': ${p}`);
  return paths;
}

/**
 * babeld 1.12.1 exits at start without an interface ("Eek... asked to run on no interfaces!").
 * This one never exists, so it stays `up false` and silent; tunnels are added at run time.
 */
export const PLACEHOLDER_INTERFACE = 'scrooge-idle';

/** Tunables of every tunnel interface (babeld applies them when it adds the interface). */
export interface TunnelTimers {
  /**
   * Hello interval. A neighbour is usable once 2 of its last 3 hellos arrived (type tunnel, no
   * link quality) and dead once 2 are missed: 500 ms gives a new tunnel a route in ~1-1.5 s and
   * withdraws a dead one in ~1.3 s (figures in src/routing/BABELD.md).
   */
  helloIntervalMs: number;
  /**
   * Full route table dumps. Changes are sent at once anyway, but babeld 1.12.1 asks a new
   * neighbour for its routes only when its own interface comes up: the end of a new tunnel
   * that is added first asks before the other end listens, and then waits for this dump.
   * Measured worst case (route usable at the first end): 4 s -> 4.0-4.9 s, 2 s -> 2.6-2.8 s,
   * 1 s -> 1.7-2.1 s. The price is one full dump a second per tunnel (~40 bytes per node).
   */
  updateIntervalMs: number;
}

export const DEFAULT_TIMERS: TunnelTimers = { helloIntervalMs: 500, updateIntervalMs: 1000 };

/** Linux interface names, a subset safe to put on babeld's line protocol (no space, no newline). */
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function checkInterfaceName(ifname: string): string {
  if (!IFNAME.test(ifname)) throw new TypeError(`not an interface name babeld can be given: ${JSON.stringify(ifname)}`);
  return ifname;
}

function seconds(ms: number, name: string): string {
  if (!Number.isFinite(ms) || ms < 10 || ms > 600_000) throw new RangeError(`"${name}" out of range (10 ms .. 600 s): ${ms}`);
  // babeld reads seconds with up to 3 decimals (centiseconds on the wire).
  return String(Math.round(ms) / 1000);
}

/**
 * The run-time `interface` line for a tunnel. Every parameter is written out: babeld 1.12.1
 * does not apply `default` lines to interfaces added at run time.
 */
export function interfaceCommand(ifname: string, timers: TunnelTimers = DEFAULT_TIMERS): string {
  return [
    'interface', checkInterfaceName(ifname),
    // tunnel: no link-quality estimation (fast withdrawal), RTT timestamps on.
    'type', 'tunnel',
    'hello-interval', seconds(timers.helloIntervalMs, 'helloIntervalMs'),
    'update-interval', seconds(timers.updateIntervalMs, 'updateIntervalMs'),
    // A tunnel has exactly one neighbour: never announce a route back over the tunnel it came from.
    'split-horizon', 'true',
    // Tunnels carry no IPv4 address; IPv4 routes use the neighbour's fe80 as next hop (Linux >= 5.13).
    'v4-via-v6', 'true',
  ].join(' ');
}

export function flushInterfaceCommand(ifname: string): string {
  return `flush interface ${checkInterfaceName(ifname)}`;
}

export interface BabeldConfigInput {
  paths: BabeldPaths;
  /** The node's mesh IPv6 address (inside MESH_PREFIX6). */
  mesh6: string;
  /** The node's mesh IPv4 address, if it has one. */
  mesh4?: string | undefined;
  /** IPv4 /32s accepted from neighbours lie in this prefix (default: any). */
  accept4?: string | undefined;
  /** Announce this node's default routes (a gateway). */
  gateway?: { ipv6: boolean; ipv4: boolean } | undefined;
}

/** babeld.conf for one node. Throws TypeError on a caller's bad value. */
export function babeldConfig(input: BabeldConfigInput): string {
  const v6 = canonicalIPv6(input.mesh6);
  if (!v6 || !isMeshAddress6(v6)) throw new TypeError(`"mesh6" is not an address in ${MESH_PREFIX6}: ${input.mesh6}`);
  let v4: string | undefined;
  if (input.mesh4 !== undefined) {
    const c = checkMeshAddress4(input.mesh4);
    if (!c.ok) throw new TypeError(`"mesh4": ${c.reason}`);
    v4 = c.value;
  }
  const accept4 = checkPrefix4(input.accept4 ?? '0.0.0.0/0');
  if (!accept4.ok) throw new TypeError(`"accept4": ${accept4.reason}`);
  const gw = input.gateway ?? { ipv6: false, ipv4: false };
  const p = input.paths;

  const lines = [
    '# Written by the Scrooge agent at every babeld start; edits are lost.',
    `local-path-readwrite ${p.socket}`,
    `pid-file ${p.pid}`,
    `state-file ${p.state}`,
    // The agent owns forwarding and rp_filter (src/routing/BABELD.md): babeld's own setup is undone
    // only on a clean exit, and a restarted babeld would take its own changes for the originals.
    'skip-kernel-setup true',
    // A restarted babeld is a new router to its neighbours: its routes are feasible at once,
    // with no wait on a sequence number a killed babeld could not save.
    'random-id true',
    // Route selection on the raw metric, no smoothing (default half-life 4 s): a tunnel's cost is
    // fixed (type tunnel, no RTT penalty), so there is nothing to damp, and with smoothing a
    // shorter path that appears after a longer one (at start, when a node returns) waited ~30 s.
    'smoothing-half-life 0',
    `interface ${PLACEHOLDER_INTERFACE}`,
    '',
    '# Accept host routes inside the mesh prefixes and default routes; nothing else.',
    `in ip ${MESH_PREFIX6} eq 128 allow`,
    `in ip ${accept4.value.address}/${accept4.value.length} eq 32 allow`,
    'in ip ::/0 eq 0 allow',
    'in ip 0.0.0.0/0 eq 0 allow',
    'in deny',
    '',
    '# Announce the mesh addresses (on lo) and, on a gateway, its real default routes.',
    `redistribute local ip ${v6}/128 eq 128 allow`,
    ...(v4 ? [`redistribute local ip ${v4}/32 eq 32 allow`] : []),
    'redistribute local deny',
  ];
  if (gw.ipv6) lines.push('redistribute ip ::/0 eq 0 allow', 'redistribute proto 3 ip ::/0 eq 0 allow');
  if (gw.ipv4) lines.push('redistribute ip 0.0.0.0/0 eq 0 allow', 'redistribute proto 3 ip 0.0.0.0/0 eq 0 allow');
  lines.push(
    'redistribute deny',
    '',
    '# Traffic this node sends over the mesh leaves from its mesh address (tunnels have only an',
    '# fe80, and a raw segment address would not be routable back).',
    `install ip ::/0 pref-src ${v6}`,
    ...(v4 ? [`install ip 0.0.0.0/0 pref-src ${v4}`] : []),
  );
  return lines.join('\n') + '\n';
}
