/**
 * Mesh addresses (pure): every node has one stable IPv6 /128 derived from its ed25519 identity
 * key, and optionally one IPv4 /32 from its config. babeld announces exactly these (plus a
 * gateway's default routes); the agent puts them on `lo`.
 *
 * The IPv6 prefix is a ULA (RFC 4193 §3.2.2), its 40-bit global ID generated once by the RFC's
 * algorithm: SHA-1 of the 64-bit NTP time 2026-12-01T21:00:00Z (0xeeb9b3d000000000) followed by
 * the EUI-64 02:00:5c:ff:fe:00:00:01 (locally administered, made up for this purpose), least
 * significant 40 bits = b5c7c782e9. Subnet 0 of fdb5:c7c7:82e9::/48 holds the nodes:
 *
 *   fdb5:c7c7:82e9:0000 : IID                          IID = SHA-256("scrooge mesh address" || key)[0..8)
 *   |-- ULA /48 -----|subnet|  64-bit interface id     (rehashed with a counter byte in the rare case
 *                                                        it is a reserved IID, RFC 5453)
 *
 * One prefix for every Scrooge mesh: addresses come from keys, so two meshes that merge keep
 * their addresses (a 64-bit hash: a collision among 10^4 nodes has probability ~3e-12).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { formatIPv6Groups, parseIPv6Groups } from '../protocol/address.js';
import { abytes, concatBytes } from '../protocol/bytes.js';

/** The mesh's /64 (RFC 4193 ULA, global ID b5c7c782e9, subnet 0). */
export const MESH_PREFIX6 = 'fdb5:c7c7:82e9::/64';
const MESH_PREFIX_GROUPS = [0xfdb5, 0xc7c7, 0x82e9, 0x0000] as const;

const MESH_DOMAIN = new TextEncoder().encode('scrooge mesh address');

/**
 * True for interface IDs that must not name a host (RFC 4291 §2.6.1 subnet-router anycast: all
 * zeros; RFC 5453 §3: the reserved subnet anycast range fdff:ffff:ffff:ff80 .. ffff).
 */
export function isReservedInterfaceId(iid: Uint8Array): boolean {
  abytes(iid, 8, 'iid');
  if (iid.every((b) => b === 0)) return true;
  const head = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
  return head.every((b, i) => iid[i] === b) && iid[7]! >= 0x80;
}

/** The 64-bit interface ID of a node's mesh address. */
export function meshInterfaceId(identityKey: Uint8Array): Uint8Array {
  abytes(identityKey, 32, 'identityKey');
  for (let counter = 0; ; counter++) {
    const input = counter === 0 ? [MESH_DOMAIN, identityKey] : [MESH_DOMAIN, identityKey, Uint8Array.of(counter)];
    const iid = sha256(concatBytes(input)).slice(0, 8);
    if (!isReservedInterfaceId(iid)) return iid;
  }
}

/** The node's mesh IPv6 address (canonical text, no prefix length). */
export function meshAddress6(identityKey: Uint8Array): string {
  const iid = meshInterfaceId(identityKey);
  const groups: number[] = [...MESH_PREFIX_GROUPS];
  for (let i = 0; i < 8; i += 2) groups.push((iid[i]! << 8) | iid[i + 1]!);
  return formatIPv6Groups(groups);
}

/** True if `text` is an IPv6 address inside MESH_PREFIX6. */
export function isMeshAddress6(text: string): boolean {
  const g = parseIPv6Groups(text);
  return g !== undefined && MESH_PREFIX_GROUPS.every((v, i) => g[i] === v);
}

/** Dotted-quad IPv4 text -> 32-bit number, or undefined. Strict: no leading zeros, 4 parts. */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export type Check<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * A node's mesh IPv4 address from config: a unicast host address. Not 0/8 (this network),
 * 127/8 (loopback), 169.254/16 (link-local), 224/4 and above (multicast, reserved, broadcast).
 */
export function checkMeshAddress4(text: string): Check<string> {
  const n = parseIPv4(text);
  if (n === undefined) return { ok: false, reason: `not an IPv4 address: ${JSON.stringify(text)}` };
  const a = Math.floor(n / 2 ** 24);
  const b = Math.floor(n / 2 ** 16) % 256;
  if (a === 0 || a === 127 || a >= 224 || (a === 169 && b === 254))
    return { ok: false, reason: `${text} is not a unicast host address (0/8, 127/8, 169.254/16 and 224/4 and above are not)` };
  return { ok: true, value: formatIPv4(n) };
}

/** An IPv4 prefix `a.b.c.d/n` whose host bits are zero. */
export function checkPrefix4(text: string): Check<{ address: string; length: number }> {
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  const n = m ? parseIPv4(m[1]!) : undefined;
  const length = m ? Number(m[2]) : NaN;
  if (n === undefined || !(length >= 0 && length <= 32)) return { ok: false, reason: `not an IPv4 prefix: ${JSON.stringify(text)}` };
  const hostBits = 2 ** (32 - length);
  if (n % hostBits !== 0) return { ok: false, reason: `${text} has host bits set` };
  return { ok: true, value: { address: formatIPv4(n), length } };
}

/** True if IPv4 address `addr` lies in prefix `prefix` (both checked before). */
export function inPrefix4(addr: string, prefix: { address: string; length: number }): boolean {
  const a = parseIPv4(addr);
  const p = parseIPv4(prefix.address);
  if (a === undefined || p === undefined) return false;
  const size = 2 ** (32 - prefix.length);
  return Math.floor(a / size) === Math.floor(p / size);
}
