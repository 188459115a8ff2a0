/**
 * The packet filter half of the plan, for two backends (pure text generation):
 * - nftables: one table, `inet scrooge`, replaced atomically in one `nft -f` transaction;
 * - iptables/ip6tables: own chains, loaded with `iptables-restore --noflush` (which flushes only
 *   the chains it declares), plus one jump each from FORWARD that the applier adds once.
 * Either way: a packet that arrives on a mesh interface (not through a tunnel) and would be
 * forwarded is counted and dropped; a forwarded packet gets the class it belongs to. Nothing
 * else is touched: input (discovery, tunnel ports, neighbor discovery) and local output pass.
 */
import { CLASS_OTHER, CLASS_SOLD, NFT_TABLE, type TrafficInput, type TrafficPlan } from './plan.js';

const q = (s: string) => JSON.stringify(s);

function elements(names: readonly string[]): string {
  return names.length ? ` elements = { ${names.map(q).join(', ')} };` : '';
}

/** The whole `inet scrooge` table, as one nft -f transaction that replaces it. */
export function nftRuleset(input: TrafficInput, plan: TrafficPlan): string {
  const mesh = input.meshInterfaces.map((m) => m.name).sort();
  const uplinks = input.uplinks.map((u) => u.name).sort();
  const tunnels = input.tunnels.map((t) => t.ifname).sort();
  const classes = [...input.tunnels]
    .sort((a, b) => (a.ifname < b.ifname ? -1 : 1))
    .map((t) => `${q(t.ifname)} : ${plan.classOf.get(t.neighbor)}`);
  return [
    // Create-then-delete makes the delete safe when the table does not exist yet.
    `table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    `  set mesh { type ifname;${elements(mesh)} }`,
    `  set tunnels { type ifname;${elements(tunnels)} }`,
    `  set uplinks { type ifname;${elements(uplinks)} }`,
    `  map neighbor_class { type ifname : classid;${classes.length ? ` elements = { ${classes.join(', ')} };` : ''} }`,
    `  counter untunneled { }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname @mesh counter name "untunneled" drop`,
    `    oifname @tunnels meta priority set ${CLASS_SOLD}`,
    `    oifname @uplinks iifname @tunnels meta priority set iifname map @neighbor_class`,
    `    oifname @uplinks iifname != @tunnels meta priority set ${CLASS_OTHER}`,
    `  }`,
    `}`,
    '',
  ].join('\n');
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
  // CLASSIFY does not stop the chain: the generic rule first, the per-neighbor ones override.
  for (const u of input.uplinks.map((x) => x.name).sort()) {
    lines.push(`-A ${IPT_MANGLE_CHAIN} -o ${u} -j CLASSIFY --set-class ${CLASS_OTHER}`);
    for (const t of tunnels) lines.push(`-A ${IPT_MANGLE_CHAIN} -i ${t.ifname} -o ${u} -j CLASSIFY --set-class ${plan.classOf.get(t.neighbor)}`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}
