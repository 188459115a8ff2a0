/**
 * WireGuard's text formats (pure): what the backends write (a `wg setconf` file, a UAPI `set`
 * request, `ip -batch` lines) and how they read what WireGuard answers (`wg show all dump`,
 * a UAPI `get`). No I/O: the backends in this folder do that.
 * UAPI: https://www.wireguard.com/xplatform/ (keys in hex, key=value lines, a blank line ends it).
 */
import type { TunnelIntent } from '../../neighbors/core.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from '../../protocol/address.js';
import { toBase64 } from '../../protocol/bytes.js';

/** What WireGuard says about a peer (wall-clock time, as the kernel and wireguard-go keep it). */
export interface PeerStats {
  /** Unix ms of the latest handshake, 0 if none. */
  latestHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
}

/** What a live interface carries (for adoption after a restart, and for status). */
export interface LiveTunnel {
  privateKey: Uint8Array;
  listenPort: number;
  peer: { publicKey: Uint8Array; endpoint: Endpoint | undefined; stats: PeerStats } | undefined;
}

/** Routing, not WireGuard, decides what goes into which tunnel (PROTOCOL.md §6). */
const ALLOWED_IPS = ['::/0', '0.0.0.0/0'];

/** A `wg setconf` file for one tunnel: the whole interface, its one peer replaced. */
export function wgConfig(t: TunnelIntent): string {
  const lines = ['[Interface]', `PrivateKey = ${toBase64(t.privateKey)}`, `ListenPort = ${t.listenPort}`];
  if (t.peer) {
    lines.push(
      '', '[Peer]', `PublicKey = ${toBase64(t.peer.tunnelKey)}`,
      `AllowedIPs = ${ALLOWED_IPS.join(', ')}`,
      `Endpoint = ${formatEndpoint(t.peer.endpoint)}`,
      `PersistentKeepalive = ${t.peer.keepaliveSeconds}`,
    );
  }
  return lines.join('\n') + '\n';
}

/**
 * `ip -batch` lines that give a tunnel its one address and bring it up. addrgenmode none: the
 * kernel would otherwise add a random link-local of its own; the tunnel's address is the one
 * derived from the node's key (PROTOCOL.md §6).
 */
export function linkCommands(t: TunnelIntent): string[] {
  return [
    `link set dev ${t.ifname} addrgenmode none`,
    `address replace ${t.address}/64 dev ${t.ifname}`,
    `link set dev ${t.ifname} mtu ${t.mtu} up`,
  ];
}

/** The UAPI `set=1` request for a tunnel: keys in hex, the whole peer list replaced. */
export function uapiSet(t: TunnelIntent): string {
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const lines = ['set=1', `private_key=${hex(t.privateKey)}`, `listen_port=${t.listenPort}`, 'replace_peers=true'];
  if (t.peer) {
    lines.push(
      `public_key=${hex(t.peer.tunnelKey)}`,
      `endpoint=${formatEndpoint(t.peer.endpoint)}`,
      `persistent_keepalive_interval=${t.peer.keepaliveSeconds}`,
      'replace_allowed_ips=true', ...ALLOWED_IPS.map((a) => `allowed_ip=${a}`),
    );
  }
  return lines.join('\n') + '\n\n';
}

/** Parses `wg show ... dump` / `wg show all dump` output (tab-separated). */
export function parseWgDump(text: string, withInterfaceColumn: boolean): Map<string, LiveTunnel> {
  const out = new Map<string, LiveTunnel>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split('\t');
    const ifname = withInterfaceColumn ? f.shift()! : '';
    if (f.length === 4) {
      out.set(ifname, { privateKey: Uint8Array.from(Buffer.from(f[0]!, 'base64')), listenPort: Number(f[2]), peer: undefined });
    } else if (f.length === 8) {
      const t = out.get(ifname);
      if (!t) continue;
      const ep = f[2] === '(none)' ? undefined : parseEndpoint(f[2]!);
      t.peer = {
        publicKey: Uint8Array.from(Buffer.from(f[0]!, 'base64')),
        endpoint: ep?.ok ? ep.endpoint : undefined,
        stats: { latestHandshakeMs: Number(f[4]) * 1000, rxBytes: Number(f[5]), txBytes: Number(f[6]) },
      };
    }
  }
  return out;
}

/** Parses a UAPI `get=1` answer (key=value lines, keys hex, one peer). */
export function parseUapi(text: string): LiveTunnel | undefined {
  let privateKey: Uint8Array | undefined;
  let listenPort = 0;
  let peer: LiveTunnel['peer'];
  let sec = 0;
  let nsec = 0;
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    switch (k) {
      case 'private_key': privateKey = Uint8Array.from(Buffer.from(v, 'hex')); break;
      case 'listen_port': listenPort = Number(v); break;
      case 'public_key': peer = { publicKey: Uint8Array.from(Buffer.from(v, 'hex')), endpoint: undefined, stats: { latestHandshakeMs: 0, rxBytes: 0, txBytes: 0 } }; break;
      case 'endpoint': if (peer) { const r = parseEndpoint(v); peer.endpoint = r.ok ? r.endpoint : undefined; } break;
      case 'last_handshake_time_sec': sec = Number(v); break;
      case 'last_handshake_time_nsec': nsec = Number(v); if (peer) peer.stats.latestHandshakeMs = sec * 1000 + Math.floor(nsec / 1e6); break;
      case 'rx_bytes': if (peer) peer.stats.rxBytes = Number(v); break;
      case 'tx_bytes': if (peer) peer.stats.txBytes = Number(v); break;
      case 'errno': if (v !== '0') return undefined; break;
    }
  }
  return privateKey ? { privateKey, listenPort, peer } : undefined;
}

/** The errno a UAPI answer ends with ("0": accepted), or undefined if it has none. */
export function uapiErrno(answer: string): string | undefined {
  return /^errno=(\d+)$/m.exec(answer)?.[1];
}
