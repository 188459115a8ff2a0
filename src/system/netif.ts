/**
 * Which mesh interfaces exist now, with the node's link-local address on each. Read from
 * /proc/net/if_inet6 and each interface's operstate in sysfs: two small file reads, no process,
 * cheap enough to poll every second (getifaddrs, os.networkInterfaces, builds every address of
 * every interface, tunnels included, and cost the idle agent several times more). An interface
 * that is down, or without carrier, counts as missing, as before (libuv leaves such out).
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { MeshInterface } from '../neighbors/core.js';
import { canonicalIPv6 } from '../protocol/address.js';

/** operstate values of an interface that passes packets ("unknown": lo, tun, wireguard). */
const RUNNING = new Set(['up', 'unknown']);

function operstate(name: string): string | undefined {
  try {
    return readFileSync(`/sys/class/net/${name}/operstate`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * fe80::/10 addresses per interface, from /proc/net/if_inet6 (undefined if it cannot be read);
 * with `only`, of those interfaces alone (a router's file also lists every tunnel's addresses,
 * and the agent reads it every second).
 */
export function linkLocalsFromProc(text: string, only?: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || (only && !only.has(f[5]!)) || !/^fe[89ab]/i.test(f[0]!)) continue;
    const hex = f[0]!;
    const groups = Array.from({ length: 8 }, (_, i) => hex.slice(i * 4, i * 4 + 4)).join(':');
    if (!out.has(f[5]!)) out.set(f[5]!, canonicalIPv6(groups)!);
  }
  return out;
}

/** The last file read and what it said: the file rarely changes between polls. */
let parsed: { text: string; names: string; ll: Map<string, string> } | undefined;

export function meshInterfacesNow(names: readonly string[]): MeshInterface[] {
  let text: string;
  try {
    text = readFileSync('/proc/net/if_inet6', 'utf8');
  } catch {
    return fromGetifaddrs(names);
  }
  const key = names.join('\n');
  if (parsed?.text !== text || parsed.names !== key) parsed = { text, names: key, ll: linkLocalsFromProc(text, new Set(names)) };
  const ll = parsed.ll;
  return names.flatMap((name) => {
    const state = operstate(name);
    if (state === undefined || !RUNNING.has(state)) return [];
    return [{ name, linkLocal: ll.get(name) }];
  });
}

function fromGetifaddrs(names: readonly string[]): MeshInterface[] {
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
