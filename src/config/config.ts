/**
 * The agent's JSON config: schema, defaults (in one place) and validation with errors that name
 * the field (`config tunnels.portRange: ...`). README "Configuration" documents every field.
 * Pure: `parseConfig` takes already-read JSON; `loadConfig` (system edge) reads the file.
 */
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { canonicalIPv6 } from '../protocol/address.js';
import { fromBase64Strict } from '../protocol/bytes.js';
import { parseDuration, parseRate } from './units.js';

const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(v)} (write e.g. "500ms", "1s", "24h")` });
    return z.NEVER;
  }
  return ms;
});

export const rateSchema = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const bits = parseRate(v);
  if (bits === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a rate: ${JSON.stringify(v)} (write e.g. "100mbit", "500kbit")` });
    return z.NEVER;
  }
  return bits;
});

// The same characters a zone may have on the wire (PROTOCOL.md §2): no '@', '%' or ':'.
const ifaceName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'not an interface name (1-15 letters, digits, _ . -)');
const port = z.number().int().min(1).max(65535);
export const ALIAS = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;

export const neighborSettingsSchema = z.object({
  alias: z.string().regex(ALIAS, 'an alias starts with a letter: letters, digits, _ . - (max 32)').optional(),
  /** Weight of the neighbor's share of sold bandwidth (PROTOCOL-independent; see tc/README.md). */
  priority: z.number().int().min(1).max(1000).optional(),
  /** Ceiling for the neighbor's traffic, or null for none. */
  cap: z.union([rateSchema, z.null()]).optional(),
}).strict();

const schema = z.object({
  keyFile: z.string().min(1),
  passphraseFile: z.string().min(1).optional(),
  stateDir: z.string().min(1),
  controlSocket: z.string().min(1).optional(),
  interfaces: z.array(z.union([
    ifaceName.transform((name) => ({ name, rate: undefined as number | undefined })),
    z.object({ name: ifaceName, rate: rateSchema.optional() }).strict(),
  ])).min(1, 'name at least one mesh interface'),
  uplinks: z.array(z.object({ interface: ifaceName, rate: rateSchema }).strict()).default([]),
  share: z.number().gt(0, 'share must be in (0, 1]').lte(1, 'share must be in (0, 1]').default(1),
  discovery: z.object({
    group: z.string().refine((g) => canonicalIPv6(g)?.startsWith('ff02:') ?? false, 'must be a link-local multicast group (ff02::/16)').default('ff02::114'),
    port: port.default(51819),
    helloInterval: duration.default(1000),
    deadInterval: duration.optional(),
    maxNeighbors: z.number().int().min(1).max(65536).default(256),
  }).strict().default({ group: 'ff02::114', port: 51819, helloInterval: 1000, maxNeighbors: 256 }),
  tunnels: z.object({
    enabled: z.boolean().default(true),
    backend: z.enum(['auto', 'kernel', 'userspace']).default('auto'),
    portRange: z.tuple([port, port]).refine(([a, b]) => a <= b, 'first port must not be above the last').default([51820, 52819]),
    mtu: z.number().int().min(1280).max(9000).default(1420),
    keepalive: duration.default(5000),
    deadAfter: duration.optional(),
    handshakeTimeout: duration.default(15_000),
    rekeyAfter: duration.default(24 * 3_600_000),
    removeOnStop: z.boolean().default(true),
  }).strict().default({ enabled: true, backend: 'auto', portRange: [51820, 52819], mtu: 1420, keepalive: 5000, handshakeTimeout: 15_000, rekeyAfter: 24 * 3_600_000, removeOnStop: true }),
  traffic: z.object({
    enabled: z.boolean().default(true),
    backend: z.enum(['auto', 'nft', 'iptables']).default('auto'),
    /** Capacity assumed for a mesh interface without a `rate`. */
    defaultRate: rateSchema.default(1e9),
    removeOnStop: z.boolean().default(true),
  }).strict().default({ enabled: true, backend: 'auto', defaultRate: 1e9, removeOnStop: true }),
  neighbors: z.record(z.string(), neighborSettingsSchema).default({}),
  /** Prometheus endpoint, off unless set: "9585" (loopback), "127.0.0.1:9585", "[::1]:9585". */
  metrics: z.object({
    listen: z.string().transform((v, ctx) => {
      const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost)):)?([0-9]{1,5})$/.exec(v.trim());
      const port = m ? Number(m[3]) : 0;
      if (!m || port < 1 || port > 65535) {
        ctx.addIssue({ code: 'custom', message: `not a listen address: ${JSON.stringify(v)} (write e.g. "9585" or "127.0.0.1:9585")` });
        return z.NEVER;
      }
      return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
    }).optional(),
  }).strict().default({}),
  log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).strict().default({ level: 'info' }),
}).strict();

export type Config = ReturnType<typeof finish>;
export type NeighborSettings = z.infer<typeof neighborSettingsSchema>;

function finish(c: z.infer<typeof schema>, baseDir: string) {
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const stateDir = path(c.stateDir);
  const keepaliveMs = c.tunnels.keepalive;
  return {
    ...c,
    keyFile: path(c.keyFile),
    passphraseFile: c.passphraseFile === undefined ? undefined : path(c.passphraseFile),
    stateDir,
    controlSocket: c.controlSocket === undefined ? resolve(stateDir, 'control.sock') : path(c.controlSocket),
    discovery: { ...c.discovery, deadInterval: c.discovery.deadInterval ?? c.discovery.helloInterval * 3.5 },
    tunnels: { ...c.tunnels, deadAfter: c.tunnels.deadAfter ?? keepaliveMs * 3 + 1000 },
  };
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** Validates parsed JSON. Relative paths are taken relative to `baseDir` (the config's folder). */
export function parseConfig(json: unknown, baseDir: string): Config {
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    if (issue.code === 'unrecognized_keys')
      throw new ConfigError(formatPath(issue.path), `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (a typo? README "Configuration" lists the fields)`);
    throw new ConfigError(formatPath(issue.path), issue.message);
  }
  for (const key of Object.keys(r.data.neighbors)) {
    if (!fromBase64Strict(key, 32)) throw new ConfigError(`neighbors["${key}"]`, 'not a base64 ed25519 public key');
  }
  const names = r.data.interfaces.map((i) => i.name);
  const uplinks = r.data.uplinks.map((u) => u.interface);
  const dup = [...names, ...uplinks].find((n, i, all) => all.indexOf(n) !== i);
  if (dup) throw new ConfigError('interfaces', `"${dup}" is listed twice (mesh interfaces and uplinks must be distinct)`);
  const aliases = Object.values(r.data.neighbors).map((n) => n.alias).filter((a) => a !== undefined);
  const dupAlias = aliases.find((a, i) => aliases.indexOf(a) !== i);
  if (dupAlias) throw new ConfigError('neighbors', `alias "${dupAlias}" is used twice`);
  return finish(r.data, baseDir);
}
