/**
 * The agent's JSON config: schema, defaults (from tunables.ts) and validation with errors that
 * name the field (`config tunnels.portRange: ...`). README "Configuration" documents every field.
 * The schemas of the run-time settings (share, and per neighbor alias/priority/cap) are the
 * same wherever a value comes from: the config file, the agent's settings.json, or a `set`
 * request on the control socket (one validator for all three).
 * Pure: `parseConfig` takes already-read JSON; `loadConfig` (system edge) reads the file.
 */
import { isAbsolute, resolve } from 'node:path';
// zod/mini: the same validator as zod's, a tenth of its code and memory (the agent is a
// long-lived daemon on small routers).
import * as z from 'zod/mini';
import { ConfigError, ScroogeError } from '../errors.js';
import type { CoreOptions } from '../neighbors/core.js';
import { canonicalIPv6 } from '../protocol/address.js';
import { fromBase64Strict } from '../protocol/bytes.js';
import { HELLO_GROUP, PROTOCOL_PORT } from '../protocol/constants.js';
import { checkMeshAddress4, checkPrefix4 } from '../routing/address.js';
import * as T from './tunables.js';
import { parseDuration, parseRate } from './units.js';

/** A string-or-number field turned into a number by `parse`, with `what` in the error. */
function parsed(parse: (v: string | number) => number | undefined, what: string, example: string) {
  return z.pipe(
    z.union([z.number(), z.string()], { error: `${what}, e.g. ${example}` }),
    z.transform((v: string | number, ctx) => {
      const out = parse(v);
      if (out === undefined) ctx.issues.push({ code: 'custom', message: `not a ${what}: ${JSON.stringify(v)} (write e.g. ${example})`, input: v });
      return out ?? 0;
    }),
  );
}

const duration = parsed(parseDuration, 'duration', '"500ms", "1s", "24h"');
export const rateSchema = parsed(parseRate, 'rate', '"100mbit", "500kbit"');

// The same characters a zone may have on the wire (PROTOCOL.md §2): no '@', '%' or ':'.
const ifaceName = z.string().check(z.regex(/^[A-Za-z0-9_.-]{1,15}$/, 'not an interface name (1-15 letters, digits, _ . -)'));
const integer = (min: number, max: number, rule = `an integer from ${min} to ${max}`) =>
  z.number({ error: rule }).check(z.int(rule), z.minimum(min, rule), z.maximum(max, rule));
const port = integer(1, 65535);
export const ALIAS = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;

// ---------------------------------------------------------------- run-time settings

const SHARE_RULE = 'share must be in (0, 1]';
export const shareSchema = z.number({ error: SHARE_RULE }).check(z.gt(0, SHARE_RULE), z.lte(1, SHARE_RULE));

export const neighborSettingsSchema = z.strictObject({
  alias: z.optional(z.string({ error: 'a name: a letter, then letters, digits, _ . - (max 32)' })
    .check(z.regex(ALIAS, 'an alias starts with a letter: letters, digits, _ . - (max 32)'))),
  /** Weight of the neighbor's share of sold bandwidth (see tc/README.md). */
  priority: z.optional(integer(1, T.MAX_PRIORITY)),
  /** Ceiling for the neighbor's traffic, or null for none. */
  cap: z.optional(z.union([rateSchema, z.null()])),
});

/** settings.json: what the operator changed at run time (overrides the config file). */
export const storedSettingsSchema = z.strictObject({
  share: z.optional(shareSchema),
  neighbors: z._default(z.record(z.string(), neighborSettingsSchema), {}),
});

/** A `set` request on the control socket: the share, or one neighbor's settings. */
const setShareSchema = z.strictObject({ share: shareSchema });
const setNeighborSchema = z.extend(neighborSettingsSchema, { neighbor: z.string({ error: 'an alias, a key, or a key prefix' }).check(z.minLength(1)) });

export type NeighborSettings = z.infer<typeof neighborSettingsSchema>;
export type StoredSettings = z.infer<typeof storedSettingsSchema>;
export type SetRequest = z.infer<typeof setShareSchema> | z.infer<typeof setNeighborSchema>;

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** What a failed check says, in words (zod/mini carries no message catalogue: we say it). */
function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.message && issue.message !== 'Invalid input') return issue.message;
  switch (issue.code) {
    case 'invalid_type': return `expected ${issue.expected}`;
    case 'too_small': return `must be at least ${String(issue.minimum)}`;
    case 'too_big': return `must be at most ${String(issue.maximum)}`;
    case 'invalid_value': return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default: return 'not valid here';
  }
}

/** The first problem found, as `[path, message]`. */
function firstIssue(error: z.core.$ZodError): [string, string] {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys')
    return [formatPath(issue.path), `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`];
  return [formatPath(issue.path), describeIssue(issue)];
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

/** Read-only requests on the control socket take at most `{stats: false}`. */
export const readRequestSchema = z.strictObject({ stats: z.optional(z.boolean()) });

// ---------------------------------------------------------------- the config file

const listen = z.pipe(z.string(), z.transform((v: string, ctx) => {
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost)):)?([0-9]{1,5})$/.exec(v.trim());
  const p = m ? Number(m[3]) : 0;
  if (!m || p < 1 || p > 65535) ctx.issues.push({ code: 'custom', message: `not a listen address: ${JSON.stringify(v)} (write e.g. "9585" or "127.0.0.1:9585")`, input: v });
  return { host: m?.[1] ?? m?.[2] ?? '127.0.0.1', port: p };
}));

const schema = z.strictObject({
  keyFile: z.string().check(z.minLength(1)),
  passphraseFile: z.optional(z.string().check(z.minLength(1))),
  stateDir: z.string().check(z.minLength(1)),
  controlSocket: z.optional(z.string().check(z.minLength(1))),
  interfaces: z.array(z.union([
    z.pipe(ifaceName, z.transform((name: string) => ({ name, rate: undefined as number | undefined }))),
    z.strictObject({ name: ifaceName, rate: z.optional(rateSchema) }),
  ])).check(z.minLength(1, 'name at least one mesh interface')),
  uplinks: z._default(z.array(z.strictObject({ interface: ifaceName, rate: rateSchema })), []),
  share: z._default(shareSchema, T.SHARE),
  discovery: z.prefault(z.strictObject({
    group: z._default(z.string().check(z.refine((g: string) => canonicalIPv6(g)?.startsWith('ff02:') ?? false, 'must be a link-local multicast group (ff02::/16)')), HELLO_GROUP),
    port: z._default(port, PROTOCOL_PORT),
    helloInterval: z._default(duration, T.HELLO_INTERVAL_MS),
    deadInterval: z.optional(duration),
    maxNeighbors: z._default(integer(1, 65536), T.MAX_NEIGHBORS),
  }), {}),
  tunnels: z.prefault(z.strictObject({
    enabled: z._default(z.boolean(), true),
    backend: z._default(z.enum(['auto', 'kernel', 'userspace']), 'auto'),
    portRange: z._default(z.tuple([port, port]).check(z.refine(([a, b]: [number, number]) => a <= b, 'first port must not be above the last')), [...T.TUNNEL_PORT_RANGE] as [number, number]),
    mtu: z._default(integer(1280, 9000), T.TUNNEL_MTU),
    keepalive: z._default(duration, T.KEEPALIVE_MS),
    deadAfter: z.optional(duration),
    handshakeTimeout: z._default(duration, T.HANDSHAKE_TIMEOUT_MS),
    rekeyAfter: z._default(duration, T.REKEY_AFTER_MS),
    removeOnStop: z._default(z.boolean(), true),
  }), {}),
  traffic: z.prefault(z.strictObject({
    enabled: z._default(z.boolean(), true),
    backend: z._default(z.enum(['auto', 'nft', 'iptables']), 'auto'),
    /** Capacity assumed for a mesh interface without a `rate`. */
    defaultRate: z._default(rateSchema, T.DEFAULT_RATE),
    removeOnStop: z._default(z.boolean(), true),
  }), {}),
  neighbors: z._default(z.record(z.string(), neighborSettingsSchema), {}),
  /** How long a kernel command may take before it counts as failed (config/tunables.ts). */
  commandTimeout: z._default(duration, T.COMMAND_TIMEOUT_MS),
  /** Prometheus endpoint, off unless set: "9585" (loopback), "127.0.0.1:9585", "[::1]:9585". */
  metrics: z.prefault(z.strictObject({ listen: z.optional(listen) }), {}),
  log: z.prefault(z.strictObject({ level: z._default(z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']), 'info') }), {}),
  /** Routing over the tunnels (README "Routing"). */
  routing: z.prefault(z.strictObject({
    mode: z._default(z.enum(['off', 'babeld']), 'off'),
    /** The node's IPv4 /32 on the mesh (its IPv6 one comes from its key). */
    meshAddress4: z.optional(checked(checkMeshAddress4)),
    /** IPv4 /32s accepted from neighbours lie in this prefix. */
    accept4: z.optional(checked((t) => { const r = checkPrefix4(t); return r.ok ? { ok: true, value: t } : r; })),
    /** Announce a default route (a gateway): "auto" = when the node has an uplink. */
    gateway: z._default(z.union([z.literal('auto'), z.boolean(), z.strictObject({ ipv4: z._default(z.boolean(), true), ipv6: z._default(z.boolean(), true) })]), 'auto'),
    /** A gateway masquerades what the mesh sends out of its uplinks (hosts there need no route back). */
    masquerade: z._default(z.boolean(), true),
  }), {}),
  /** Executables run when a tunnel comes up or goes (for another routing daemon). */
  hooks: z.prefault(z.strictObject({
    tunnelUp: z.optional(z.string().check(z.minLength(1))),
    tunnelDown: z.optional(z.string().check(z.minLength(1))),
  }), {}),
});

/** A string field checked by an address.ts-style check, which names what is wrong. */
function checked(check: (text: string) => { ok: true; value: string } | { ok: false; reason: string }) {
  return z.pipe(z.string(), z.transform((v: string, ctx) => {
    const r = check(v);
    if (!r.ok) ctx.issues.push({ code: 'custom', message: r.reason, input: v });
    return r.ok ? r.value : v;
  }));
}

export type Config = ReturnType<typeof finish>;

function finish(c: z.output<typeof schema>, baseDir: string) {
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
    routing: { ...c.routing, gateway: gatewayOf(c.routing.gateway, c.uplinks.length > 0) },
    hooks: { tunnelUp: c.hooks.tunnelUp === undefined ? undefined : path(c.hooks.tunnelUp), tunnelDown: c.hooks.tunnelDown === undefined ? undefined : path(c.hooks.tunnelDown) },
  };
}

/** Which default routes a node announces: "auto" means both, if it has an uplink. */
function gatewayOf(g: 'auto' | boolean | { ipv4: boolean; ipv6: boolean }, hasUplink: boolean): { ipv4: boolean; ipv6: boolean } {
  if (g === 'auto') return { ipv4: hasUplink, ipv6: hasUplink };
  if (typeof g === 'boolean') return { ipv4: g, ipv6: g };
  return g;
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
