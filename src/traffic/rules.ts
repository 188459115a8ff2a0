/**
 * The packet filter half of the plan, for two backends (pure text generation):
 * - nftables: one table, `inet scrooge`, changed atomically in one `nft -f` transaction: created
 *   fresh the first time (whatever an older run left), then kept, its chain, sets and map
 *   flushed and refilled (so the `untunneled` counter keeps counting across changes);
 * - iptables/ip6tables: own chains, loaded with `iptables-restore --noflush` (which flushes only
 *   the chains it declares), plus one jump each from FORWARD that the applier adds once.
 * Either way: a packet that arrives on a mesh interface (not through a tunnel) and would be
 * forwarded is counted and dropped; a packet forwarded from a tunnel (to an uplink, or relayed
 * into another tunnel) is that neighbor's, in its class; one forwarded into the tunnel to N from
 * anywhere else is N's. Anything else forwarded to an uplink (from the owner's own LAN, say) is
 * the owner's: HTB's default class. Local output is not touched; of the input, only the discovery port is (the guard:
 * proven neighbors pass, strangers get small budgets, PROTOCOL.md §7 "Before the agent").
 */
import { GUARD_PER_SOURCE, GUARD_STRANGERS } from '../config/tunables.js';
import { TUNNEL_PREFIX } from '../neighbors/names.js';
import { NFT_TABLE, type TrafficInput, type TrafficPlan } from './plan.js';

const q = (s: string) => JSON.stringify(s);

/** The `inet scrooge` table as one nft -f transaction. `fresh`: replace the whole table. */
export function nftRuleset(input: TrafficInput, plan: TrafficPlan, fresh = true): string {
  const t = `inet ${NFT_TABLE}`;
  const mesh = input.meshInterfaces.map((m) => m.name).sort();
  const uplinks = input.uplinks.map((u) => u.name).sort();
  const tunnels = [...input.tunnels].sort((a, b) => (a.ifname < b.ifname ? -1 : a.ifname > b.ifname ? 1 : 0));
  const lines = fresh
    // Create-then-delete makes the delete safe when the table does not exist yet.
    ? [`table ${t}`, `delete table ${t}`]
    : [];
  lines.push(
    `table ${t} {`,
    `  set mesh { type ifname; }`,
    `  set tunnels { type ifname; }`,
    `  set uplinks { type ifname; }`,
    `  map neighbor_class { type ifname : classid; }`,
    `  counter untunneled { }`,
    `  chain forward { type filter hook forward priority filter; policy accept; }`,
    `  set known_sources { type ipv6_addr . ifname; }`,
    // Per-source buckets of the guard; a source not seen for 10 s is forgotten.
    `  set stranger_sources { type ipv6_addr; flags dynamic; timeout 10s; size 4096; }`,
    `  counter discovery_dropped { }`,
    `  chain input { type filter hook input priority filter; policy accept; }`,
    `  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `}`,
  );
  if (!fresh) lines.push(`flush chain ${t} forward`, `flush set ${t} mesh`, `flush set ${t} tunnels`, `flush set ${t} uplinks`, `flush map ${t} neighbor_class`, `flush chain ${t} input`, `flush set ${t} known_sources`, `flush chain ${t} postrouting`);
  const add = (set: string, items: string[]) => items.length && lines.push(`add element ${t} ${set} { ${items.join(', ')} }`);
  add('mesh', mesh.map(q));
  add('tunnels', tunnels.map((x) => q(x.ifname)));
  add('uplinks', uplinks.map(q));
  add('neighbor_class', tunnels.map((x) => `${q(x.ifname)} : ${plan.classOf.get(x.neighbor)}`));
  lines.push(
    `add rule ${t} forward iifname @mesh counter name "untunneled" drop`,
    `add rule ${t} forward oifname @tunnels meta priority set oifname map @neighbor_class`,
    `add rule ${t} forward oifname @uplinks iifname @tunnels meta priority set iifname map @neighbor_class`,
  );
  // A relay: what a neighbor sends on through another tunnel is that neighbor's (a later rule wins).
  if (input.relay) lines.push(`add rule ${t} forward oifname @tunnels iifname @tunnels meta priority set iifname map @neighbor_class`);
  // A gateway: the mesh's traffic leaves its uplinks with the uplink's own address.
  if (input.masquerade) lines.push(`add rule ${t} postrouting iifname @tunnels oifname @uplinks masquerade`);
  const g = input.discovery;
  if (g) {
    add('known_sources', knownSources(g.known).map((k) => `${k.address} . ${q(k.iface)}`));
    const udp = `udp dport ${g.port}`;
    lines.push(
      `add rule ${t} input ${udp} ip6 saddr . iifname @known_sources accept`,
      `add rule ${t} input ${udp} update @stranger_sources { ip6 saddr limit rate over ${GUARD_PER_SOURCE}/second burst ${GUARD_PER_SOURCE} packets } counter name "discovery_dropped" drop`,
      `add rule ${t} input ${udp} limit rate over ${GUARD_STRANGERS}/second burst ${GUARD_STRANGERS} packets counter name "discovery_dropped" drop`,
    );
  }
  lines.push('');
  return lines.join('\n');
}

/** Sorted and without repeats, so the same sources always give the same text. */
function knownSources(known: readonly { address: string; iface: string }[]): { address: string; iface: string }[] {
  const seen = new Map(known.map((k) => [`${k.address}%${k.iface}`, k]));
  return [...seen.keys()].sort().map((k) => seen.get(k)!);
}

export const NFT_REMOVE = `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n`;

export const IPT_FILTER_CHAIN = 'SCROOGE-FWD';
export const IPT_MANGLE_CHAIN = 'SCROOGE-CLASS';
/** The discovery guard (ip6tables only: discovery is IPv6), jumped to from INPUT for the port. */
export const IPT_GUARD_CHAIN = 'SCROOGE-IN';
/** A gateway's masquerade (nat table, from POSTROUTING) of what the mesh sends out of its uplinks. */
export const IPT_NAT_CHAIN = 'SCROOGE-NAT';
/** The mark the mangle chain gives packets forwarded from a tunnel to an uplink (masqueraded). */
export const IPT_MESH_MARK = '0x5c000000/0xff000000';

/** iptables-restore --noflush input; ip6tables gets the discovery guard too. */
export function iptablesRestore(input: TrafficInput, plan: TrafficPlan, family: 'ipv4' | 'ipv6' = 'ipv4'): string {
  const lines = ['*filter', `:${IPT_FILTER_CHAIN} - [0:0]`];
  for (const m of input.meshInterfaces.map((x) => x.name).sort()) lines.push(`-A ${IPT_FILTER_CHAIN} -i ${m} -j DROP`);
  const g = input.discovery;
  if (family === 'ipv6' && g) {
    lines.push(`:${IPT_GUARD_CHAIN} - [0:0]`);
    for (const k of knownSources(g.known)) lines.push(`-A ${IPT_GUARD_CHAIN} -i ${k.iface} -s ${k.address}/128 -j RETURN`);
    lines.push(
      `-A ${IPT_GUARD_CHAIN} -m hashlimit --hashlimit-above ${GUARD_PER_SOURCE}/sec --hashlimit-burst ${GUARD_PER_SOURCE} --hashlimit-mode srcip --hashlimit-name scrooge-discovery -j DROP`,
      `-A ${IPT_GUARD_CHAIN} -m limit --limit ${GUARD_STRANGERS}/sec --limit-burst ${GUARD_STRANGERS} -j RETURN`,
      `-A ${IPT_GUARD_CHAIN} -j DROP`,
    );
  }
  lines.push('COMMIT', '*mangle', `:${IPT_MANGLE_CHAIN} - [0:0]`);
  const tunnels = [...input.tunnels].sort((a, b) => (a.ifname < b.ifname ? -1 : 1));
  for (const t of tunnels) lines.push(`-A ${IPT_MANGLE_CHAIN} -o ${t.ifname} -j CLASSIFY --set-class ${plan.classOf.get(t.neighbor)}`);
  // A relay: what a neighbor sends on through another tunnel is that neighbor's (CLASSIFY does
  // not stop the chain: the last match wins).
  if (input.relay) for (const t of tunnels) lines.push(`-A ${IPT_MANGLE_CHAIN} -i ${t.ifname} -o ${TUNNEL_PREFIX}+ -j CLASSIFY --set-class ${plan.classOf.get(t.neighbor)}`);
  for (const u of input.uplinks.map((x) => x.name).sort()) {
    for (const t of tunnels) lines.push(`-A ${IPT_MANGLE_CHAIN} -i ${t.ifname} -o ${u} -j CLASSIFY --set-class ${plan.classOf.get(t.neighbor)}`);
    if (input.masquerade) lines.push(`-A ${IPT_MANGLE_CHAIN} -i ${TUNNEL_PREFIX}+ -o ${u} -j MARK --set-xmark ${IPT_MESH_MARK}`);
  }
  lines.push('COMMIT');
  if (input.masquerade) {
    lines.push('*nat', `:${IPT_NAT_CHAIN} - [0:0]`);
    for (const u of input.uplinks.map((x) => x.name).sort()) lines.push(`-A ${IPT_NAT_CHAIN} -o ${u} -m mark --mark ${IPT_MESH_MARK} -j MASQUERADE`);
    lines.push('COMMIT');
  }
  lines.push('');
  return lines.join('\n');
}
