/**
 * Names and addresses derived from identity keys (PROTOCOL.md §6 "Tunnel interfaces").
 * Deterministic, so an agent finds its own tunnels again after a restart and can never hold
 * two interfaces for one neighbor.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { formatIPv6Groups } from '../protocol/address.js';
import { abytes, concatBytes, toHex } from '../protocol/bytes.js';

export const TUNNEL_PREFIX = 'sc';
const TUNNEL_NAME = /^sc[0-9a-f]{13}$/;

/**
 * `sc` + 13 hex digits of SHA-256(own key || neighbor key): 15 characters, the kernel's limit.
 * Ordered (own key first), so the two ends of one tunnel get different names: wireguard-go's
 * control sockets share /var/run/wireguard across network namespaces.
 */
export function tunnelInterfaceName(ownKey: Uint8Array, neighborKey: Uint8Array): string {
  abytes(ownKey, 32, 'ownKey');
  abytes(neighborKey, 32, 'neighborKey');
  return TUNNEL_PREFIX + toHex(sha256(concatBytes([ownKey, neighborKey]))).slice(0, 13);
}

export function isTunnelInterfaceName(name: string): boolean {
  return TUNNEL_NAME.test(name);
}

const ADDRESS_DOMAIN = new TextEncoder().encode('scrooge tunnel address');

/** The node's link-local address on every tunnel: fe80::/64 + 8 bytes of a hash of its key. */
export function tunnelLinkLocal(identityKey: Uint8Array): string {
  const h = sha256(concatBytes([ADDRESS_DOMAIN, abytes(identityKey, 32, 'identityKey')]));
  const groups = [0xfe80, 0, 0, 0];
  for (let i = 0; i < 8; i += 2) groups.push((h[i]! << 8) | h[i + 1]!);
  return formatIPv6Groups(groups);
}
