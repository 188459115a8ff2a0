/**
 * The agent's JSON config: schema, defaults (from tunables.ts) and validation with errors that
 * name the field (`config tunnels.portRange: ...`). README "Configuration" documents every field.
 * The schemas of the run-time settings (share, and per neighbor alias/priority/cap) are the
 * same wherever a value comes from: the config file, the agent's settings.json, or a `set`
 * request on the control socket (one validator for all three).
 * Pure: `parseConfig` takes already-read JSON; `loadConfig` (system edge) reads the file.
 */
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, ScroogeError } from '../errors.js';
import { canonicalIPv6 } from '../protocol/address.js';
import type { CoreOptions } from '../neighbors/core.js';
import { fromBase64Strict } from '../protocol/bytes.js';
import { HELLO_GROUP, PROTOCOL_PORT } from '../protocol/constants.js';
import * as T from './tunables.js';
import { parseDuration, parseRate } from './units.js';

const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(v)} (write e.g. "500ms", "1s", "24h")` });
    return z.NEVER;
  }
  return ms;
});

export const rateSchema = z.union([z.number(), z.string()], { error: 'a rate, e.g. "2mbit", "500kbit", or a number of bit/s' }).transform((v, ctx) => {
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

// ---------------------------------------------------------------- run-time settings

const SHARE_RULE = 'share must be in (0, 1]';
export const shareSchema = z.number({ error: SHARE_RULE }).gt(0, SHARE_RULE).lte(1, SHARE_RULE);
const PRIORITY_RULE = `an integer from 1 to ${T.MAX_PRIORITY}`;

export const neighborSettingsSchema = z.object({
  alias: z.string({ error: 'a name: a letter, then letters, digits, _ . - (max 32)' })
    .regex(ALIAS, 'an alias starts with a letter: letters, digits, _ . - (max 32)').optional(),
  /** Weight of the neighbor's share of sold bandwidth (see tc/README.md). */
  priority: z.number({ error: PRIORITY_RULE }).int(PRIORITY_RULE).min(1, PRIORITY_RULE).max(T.MAX_PRIORITY, PRIORITY_RULE).optional(),
  /** Ceiling for the neighbor's traffic, or null for none. */
  cap: z.union([rateSchema, z.null()]).optional(),
}).strict();

/** settings.json: what the operator changed at run time (overrides the config file). */
export const storedSettingsSchema = z.object({
  share: shareSchema.optional(),
  neighbors: z.record(z.string(), neighborSettingsSchema).prefault({}),
}).strict();

/** A `set` request on the control socket: the share, or one neighbor's settings. */
const setShareSchema = z.object({ share: shareSchema }).strict();
const setNeighborSchema = neighborSettingsSchema.extend({ neighbor: z.string({ error: 'an alias, a key, or a key prefix' }).min(1) }).strict();

export type NeighborSettings = z.infer<typeof neighborSettingsSchema>;
export type StoredSettings = z.infer<typeof storedSettingsSchema>;
export type SetRequest = z.infer<typeof setShareSchema> | z.infer<typeof setNeighborSchema>;

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** The first problem zod found, as `[path, message]`. */
function firstIssue(error: z.ZodError): [string, string] {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys')
    return [formatPath(issue.path), `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`];
  return [formatPath(issue.path), issue.message];
}

/** Validates a `set` request; a bad one is a ScroogeError naming the field (`priority: ...`). */
export function parseSetRequest(args: unknown): SetRequest {
  const isShare = typeof args === 'object' && args !== null && 'share' in args;
  const r = (isShare ? setShareSchema : setNeighborSchema).safeParse(args);
  if (r.success) return r.data;
  const [path, message] = firstIssue(r.error);
  throw new ScroogeError('EVALUE', path ? `${path}: ${message}` : message);
}

/** Validates what settings.json holds; `file` names it in the error. */
export function parseStoredSettings(json: unknown, file: string): StoredSettings {
  const r = storedSettingsSchema.safeParse(json ?? {});
  if (r.success) return r.data;
  const [path, message] = firstIssue(r.error);
  throw new ScroogeError('ESETTINGS', `${file}${path ? ` ${path}` : ''}: ${message}`, 'correct the value, or remove the file to start from the config file\'s settings');
}

// ---------------------------------------------------------------- the config file

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
  share: shareSchema.default(T.SHARE),
  discovery: z.object({
    group: z.string().refine((g) => canonicalIPv6(g)?.startsWith('ff02:') ?? false, 'must be a link-local multicast group (ff02::/16)').default(HELLO_GROUP),
    port: port.default(PROTOCOL_PORT),
    helloInterval: duration.default(T.HELLO_INTERVAL_MS),
    deadInterval: duration.optional(),
    maxNeighbors: z.number().int().min(1).max(65536).default(T.MAX_NEIGHBORS),
  }).strict().prefault({}),
  tunnels: z.object({
    enabled: z.boolean().default(true),
    backend: z.enum(['auto', 'kernel', 'userspace']).default('auto'),
    portRange: z.tuple([port, port]).refine(([a, b]) => a <= b, 'first port must not be above the last').default([...T.TUNNEL_PORT_RANGE]),
    mtu: z.number().int().min(1280).max(9000).default(T.TUNNEL_MTU),
    keepalive: duration.default(T.KEEPALIVE_MS),
    deadAfter: duration.optional(),
    handshakeTimeout: duration.default(T.HANDSHAKE_TIMEOUT_MS),
    rekeyAfter: duration.default(T.REKEY_AFTER_MS),
    removeOnStop: z.boolean().default(true),
  }).strict().prefault({}),
  traffic: z.object({
    enabled: z.boolean().default(true),
    backend: z.enum(['auto', 'nft', 'iptables']).default('auto'),
    /** Capacity assumed for a mesh interface without a `rate`. */
    defaultRate: rateSchema.default(T.DEFAULT_RATE),
    removeOnStop: z.boolean().default(true),
  }).strict().prefault({}),
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
  }).strict().prefault({}),
  log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).strict().prefault({}),
}).strict();

export type Config = ReturnType<typeof finish>;

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
    discovery: { ...c.discovery, deadInterval: c.discovery.deadInterval ?? c.discovery.helloInterval * T.DEAD_INTERVAL_HELLOS },
    tunnels: { ...c.tunnels, deadAfter: c.tunnels.deadAfter ?? keepaliveMs * T.DEAD_AFTER_KEEPALIVES + T.DEAD_AFTER_SLACK_MS },
  };
}

/** Validates parsed JSON. Relative paths are taken relative to `baseDir` (the config's folder). */
export function parseConfig(json: unknown, baseDir: string): Config {
  const r = schema.safeParse(json);
  if (!r.success) {
    const [path, message] = firstIssue(r.error);
    throw new ConfigError(path, message.startsWith('unknown field') ? `${message} (a typo? README "Configuration" lists the fields)` : message);
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

/** The mesh core's options from a config (its defaults, from tunables.ts, fill in the rest). */
export function coreOptionsFrom(config: Config): Partial<CoreOptions> {
  const d = config.discovery;
  const t = config.tunnels;
  return {
    port: d.port,
    group: d.group,
    helloIntervalMs: d.helloInterval,
    deadIntervalMs: d.deadInterval,
    maxNeighbors: d.maxNeighbors,
    tunnels: {
      enabled: t.enabled, portMin: t.portRange[0], portMax: t.portRange[1], mtu: t.mtu,
      keepaliveSeconds: Math.max(1, Math.round(t.keepalive / 1000)), deadAfterMs: t.deadAfter,
      handshakeTimeoutMs: t.handshakeTimeout, rekeyAfterMs: t.rekeyAfter, retryMinMs: T.RETRY_MIN_MS, retryMaxMs: T.RETRY_MAX_MS,
    },
  };
}
