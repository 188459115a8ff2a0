/**
 * The packet filter half of the plan, for two backends (pure text generation):
 * - nftables: one table, `inet scrooge`, changed atomically in one `nft -f` transaction: created
 *   fresh the first time (whatever an older run left), then kept, its chain, sets and map
 *   flushed and refilled (so the `untunneled` counter keeps counting across changes);
 * - iptables/ip6tables: own chains, loaded with `iptables-restore --noflush` (which flushes only
 *   the chains it declares), plus one jump each from FORWARD that the applier adds once.
 * Either way: a packet that arrives on a mesh interface (not through a tunnel) and would be
 * forwarded is counted and dropped; a packet forwarded into a tunnel is sold to that neighbor
 * (5c:20 on the tunnel); one forwarded from a tunnel to an uplink is that neighbor's. Anything
 * else forwarded to an uplink (from the owner's own LAN, say) is the owner's: HTB's default
 * class. Input (discovery, tunnel ports, neighbor discovery) and local output are not touched.
 */
import { CLASS_SOLD, NFT_TABLE, type TrafficInput, type TrafficPlan } from './plan.js';

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
    `}`,
  );
  if (!fresh) lines.push(`flush chain ${t} forward`, `flush set ${t} mesh`, `flush set ${t} tunnels`, `flush set ${t} uplinks`, `flush map ${t} neighbor_class`);
  const add = (set: string, items: string[]) => items.length && lines.push(`add element ${t} ${set} { ${items.join(', ')} }`);
  add('mesh', mesh.map(q));
  add('tunnels', tunnels.map((x) => q(x.ifname)));
  add('uplinks', uplinks.map(q));
  add('neighbor_class', tunnels.map((x) => `${q(x.ifname)} : ${plan.classOf.get(x.neighbor)}`));
  lines.push(
    `add rule ${t} forward iifname @mesh counter name "untunneled" drop`,
    `add rule ${t} forward oifname @tunnels meta priority set ${CLASS_SOLD}`,
    `add rule ${t} forward oifname @uplinks iifname @tunnels meta priority set iifname map @neighbor_class`,
    '',
  );
  return lines.join('\n');
}

export const NFT_REMOVE = `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n`;

export const IPT_FILTER_CHAIN = 'SCROOGE-FWD';
export const IPT_MANGLE_CHAIN = 'SCROOGE-CLASS';

/** iptables-restore --noflush input (the same for iptables and ip6tables). */
export function iptablesRestore(input: TrafficInput, plan: TrafficPlan): string {
  const lines = ['*filter', `:${IPT_FILTER_CHAIN} - [0:0]`];
  for (const m of input.meshInterfaces.map((x) => x.name).sort()) lines.push(`-A ${IPT_FILTER_CHAIN} -i ${m} -j DROP`);
  lines.push('COMMIT', '*mangle', `:${IPT_MANGLE_CHAIN} - [0:0]`);
  const tunnels = [...input.tunnels].sort((a, b) => (a.ifname < b.ifname ? -1 : 1));
  for (const t of tunnels) lines.push(`-A ${IPT_MANGLE_CHAIN} -o ${t.ifname} -j CLASSIFY --set-class ${CLASS_SOLD}`);
  for (const u of input.uplinks.map((x) => x.name).sort()) {
    for (const t of tunnels) lines.push(`-A ${IPT_MANGLE_CHAIN} -i ${t.ifname} -o ${u} -j CLASSIFY --set-class ${plan.classOf.get(t.neighbor)}`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}
