/**
 * Which mesh interfaces exist now, with the node's link-local address on each. Read from
 * getifaddrs (os.networkInterfaces): no process spawn, cheap enough to poll every second, and
 * it follows links going down/up and addresses coming and going.
 */
import { networkInterfaces } from 'node:os';
import type { MeshInterface } from '../neighbors/core.js';
import { canonicalIPv6 } from '../protocol/address.js';

export function meshInterfacesNow(names: readonly string[]): MeshInterface[] {
  const all = networkInterfaces();
  return names.flatMap((name) => {
    const addrs = all[name];
    if (!addrs) return [];
    const ll = addrs.find((a) => a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80:'));
    return [{ name, linkLocal: ll && canonicalIPv6(ll.address.split('%')[0]!) }];
  });
}

/** Names of all interfaces present (for error messages about missing ones). */
export function interfaceNamesNow(): string[] {
  return Object.keys(networkInterfaces());
}
