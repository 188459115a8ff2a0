/**
 * Flood benchmark (issue 4, "Must show"): from M, the untrusted host on uplink.xml's mesh
 * switch, 20,000 garbage and forged datagrams per second for 10 s at router R, while R's
 * neighbor table is read every 200 ms: A and B must stay in it the whole time (and keep being
 * heard). Prints R's drop counters by reason, what M sent, what R's kernel dropped before the
 * agent saw it, and the CPU R's agent used during the flood.
 *
 *   node dist/bench/flood.js [--json] [--seconds 10] [--rate 20000] [--mix garbage|hellos] [--sources 1]
 *                                                                        (root; `npm run build`)
 *
 * It builds uplink.xml as its own sim run (id `fl<hex>`), waits for the tunnels, floods, and
 * always removes the run. `flood()` is exported for the netns test, which runs a short version
 * on a run of its own.
 *
 * The mix (a pool of distinct datagrams, sent round-robin): random bytes, valid-looking hellos
 * cut short, oversized datagrams, hellos from random keys with a wrong signature, hellos
 * claiming A's key with a wrong signature (and a seq high enough to reach the signature check),
 * and replays of hellos A and B really sent (captured by M from the group before the flood).
 * `--mix hellos`: well-formed forged hellos only (random keys, and A's and B's own keys; valid
 * grammar, bad signatures). `--sources N`: the flood comes from N link-local addresses added to
 * M's interface (each hello naming its own source, so it passes the address rule), not one.
 *
 * Most of a flood is dropped by R's kernel (the discovery guard, PROTOCOL.md §7 "Before the
 * agent") before the agent reads it: the result counts those drops (`kernel.discoveryDrops`,
 * R's `status.traffic.discoveryDrops`) apart from the agent's, and how many of A's and B's hellos
 * R processed during the flood (R's verified hellos, and those it recognised as nothing new over
 * a working tunnel, PROTOCOL.md §6, against the hellos A and B sent).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { controlRequest } from '../../src/agent/control.js';
import { agentTunnelStatus } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { type SimRun, controlSocketPath, loadRun } from '../../src/sim/run.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { createRunner } from '../../src/system/runner.js';
import { HELLO, decodeMessage, fromBase64Strict, MAX_DATAGRAM_BYTES } from '../../src/protocol/index.js';
import { cutFields, hello, HIGH_SEQ, oversized, randomIdentity, truncate } from '../netns/forge.js';
import { cpuSeconds } from '../netns/proc.js';
import { Station } from '../netns/station.js';

export interface FloodOptions {
  seconds: number;
  /** Datagrams per second. */
  rate: number;
  /** Node flooded (default R) and node flooding (default M, runs no agent). */
  target?: string;
  attacker?: string;
  /** Neighbors that must stay in the target's table (default A and B). */
  watch?: string[];
  pollMs?: number;
  log?: (line: string) => void;
  /** 'garbage' (default): the mix above; 'hellos': well-formed forged hellos only. */
  mix?: FloodMix;
  /**
   * Source addresses: 1 (default) floods from the attacker's own link-local address; more adds
   * that many link-local addresses to its interface for the flood (removed after it).
   */
  sources?: number;
}

export type FloodMix = 'garbage' | 'hellos';

export interface FloodResult {
  target: string;
  attacker: string;
  seconds: number;
  rate: number;
  mix: FloodMix;
  sources: number;
  pool: Record<string, number>;
  sent: number;
  sendErrors: number;
  sentPerSecond: number;
  /** Drops the target's agent counted during the flood, by reason (counters delta). */
  drops: Record<string, number>;
  dropsTotal: number;
  /**
   * Datagrams the target's kernel dropped before the agent read them: the discovery guard's
   * counter (`status.traffic.discoveryDrops` delta, null without a packet filter) and the
   * socket's overflows (snmp6 deltas).
   */
  kernel: { discoveryDrops: number | null; udp6InDatagrams: number; udp6RcvbufErrors: number; udp6InErrors: number };
  /**
   * The watched neighbors' hellos during the flood: how many they sent (their counters) and how
   * many the target accepted (its counter; forged hellos are never accepted, so these are theirs).
   */
  hellos: { sent: number; processed: number; ratio: number };
  agentCpu: { seconds: number; percentOfOneCore: number };
  neighbors: {
    polls: number;
    failedPolls: number;
    /** True if every watched neighbor was in the table at every poll. */
    stayed: boolean;
    missing: { atMs: number; node: string }[];
    maxLastHeardAgoMs: Record<string, number>;
    states: Record<string, string[]>;
    /** Tunnel states seen per watched neighbor ('none' when it had none), and polls where it was not up. */
    tunnelStates: Record<string, string[]>;
    tunnelsStayed: boolean;
  };
}

/**
 * Runs in the attacker's namespace: sends the pool round-robin at `rate` for `seconds`. Pool
 * lines are `<source index> <base64>`; sources are addresses (`fe80::1%eth0`) to send from.
 */
const SENDER_JS = `
const [file, sourcesText, rate, seconds, target, port] = process.argv.slice(1);
const pool = require('node:fs').readFileSync(file, 'utf8').split('\\n').filter(Boolean).map((l) => {
  const [src, b64] = l.split(' ');
  return [Number(src), Buffer.from(b64, 'base64')];
});
const dgram = require('node:dgram');
const sockets = sourcesText.split(',').map(() => dgram.createSocket({ type: 'udp6', ipv6Only: true }));
let bound = 0;
sourcesText.split(',').forEach((addr, i) => sockets[i].bind(0, addr, () => { sockets[i].setSendBufferSize(8 << 20); if (++bound === sockets.length) go(); }));
function go() {
  const total = Math.round(Number(rate) * Number(seconds));
  let sent = 0, errors = 0, done = 0, i = 0;
  const start = performance.now();
  const finish = () => { console.log(JSON.stringify({ sent, errors, ms: performance.now() - start })); for (const s of sockets) s.close(); };
  const cb = (err) => { if (err) errors++; if (++done === total) finish(); };
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * Number(rate)));
    while (sent < due) { sent++; const [src, b] = pool[i++ % pool.length]; sockets[src].send(b, Number(port), target, cb); }
    if (sent < total) setTimeout(tick, 1);
  };
  tick();
}
`;

async function snmp6(ns: string): Promise<Record<string, number>> {
  const { stdout } = await createRunner()(['cat', '/proc/net/snmp6'], { netns: ns });
  return Object.fromEntries(stdout.split('\n').filter(Boolean).map((l) => {
    const [k, v] = l.trim().split(/\s+/);
    return [k!, Number(v)];
  }));
}

interface StatusAnswer {
  pid: number;
  interfaces: { name: string; linkLocal: string | null }[];
  counters: { dropped: Record<string, number>; sent: Record<string, number>; received: Record<string, number>; redundant?: Record<string, number> };
  traffic: { discoveryDrops: number | null } | null;
}
interface NeighborsAnswer {
  neighbors: { key: string; state: string; lastHeardAgoMs: number; tunnel: { state: string } | null }[];
}

/** `n` link-local addresses for a flood's sources (fe80::5c:f100:0 ...): distinct from any EUI-64 one. */
export function floodAddresses(n: number, base = 0xf100): string[] {
  return Array.from({ length: n }, (_, i) => `fe80::5c:${(base + (i >> 16)).toString(16)}:${(i & 0xffff).toString(16)}`);
}

/** Adds (or deletes) link-local addresses on `iface` in `ns`, without duplicate detection (usable at once). */
export async function setAddresses(ns: string, iface: string, addresses: readonly string[], op: 'add' | 'del'): Promise<void> {
  if (addresses.length === 0) return;
  const lines = addresses.map((a) => `address ${op} ${a}/64 dev ${iface}${op === 'add' ? ' nodad' : ''}`);
  await createRunner()(['ip', '-batch', '-'], { netns: ns, input: lines.join('\n') + '\n' });
}

/** Pool of well-formed forged hellos: random keys, and the watched neighbors' own keys; each names its source. */
function buildHelloPool(n: number, neighborKeys: Uint8Array[], sources: string[], zone: string) {
  const counts: Record<string, number> = { 'forged hello, random key': Math.round(n * 0.7), "forged hello, a neighbor's key": 0 };
  counts["forged hello, a neighbor's key"] = n - counts['forged hello, random key']!;
  const impostor = randomIdentity();
  const seq0 = BigInt(Math.floor(Date.now() / 1000)) << 32n;
  const pool: [number, Uint8Array][] = [];
  const control = (i: number) => ({ address: sources[i % sources.length]!, zone, port: 51819 });
  for (let i = 0; i < counts['forged hello, random key']!; i++) pool.push([i % sources.length, hello(randomIdentity().publicKey, impostor, control(i), seq0 + BigInt(i))]);
  for (let i = 0; i < counts["forged hello, a neighbor's key"]!; i++) {
    pool.push([i % sources.length, hello(neighborKeys[i % neighborKeys.length]!, impostor, control(i), HIGH_SEQ - BigInt(i))]);
  }
  shuffle(pool);
  return { pool, counts };
}

function shuffle<T>(xs: T[]): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
}

/** Builds the pool: `n` distinct datagrams of the mix (all from the attacker's own address). */
function buildPool(n: number, aKey: Uint8Array, replays: Uint8Array[], attackerControl: { address: string; zone: string; port: number }) {
  const counts: Record<string, number> = {
    'random bytes': Math.round(n * 0.2),
    truncated: Math.round(n * 0.15),
    oversized: Math.round(n * 0.05),
    'forged hello, random key': Math.round(n * 0.3),
    "forged hello, A's key": Math.round(n * 0.15),
    replay: 0,
  };
  counts['replay'] = n - Object.values(counts).reduce((a, b) => a + b, 0);
  const pool: Uint8Array[] = [];
  const impostor = randomIdentity();
  const seq0 = BigInt(Math.floor(Date.now() / 1000)) << 32n;
  for (let i = 0; i < counts['random bytes']!; i++) pool.push(new Uint8Array(randomBytes(1 + Math.floor(Math.random() * 600))));
  for (let i = 0; i < counts['truncated']!; i++) {
    const id = randomIdentity();
    const whole = hello(id.publicKey, id, attackerControl, seq0 + BigInt(i));
    pool.push(i % 2 ? cutFields(whole, 1 + (i % 4)) : truncate(whole, 20 + Math.floor(Math.random() * (whole.length - 21))));
  }
  for (let i = 0; i < counts['oversized']!; i++) pool.push(oversized(MAX_DATAGRAM_BYTES + 1 + Math.floor(Math.random() * 200)));
  for (let i = 0; i < counts['forged hello, random key']!; i++) {
    pool.push(hello(randomIdentity().publicKey, impostor, attackerControl, seq0 + BigInt(i)));
  }
  for (let i = 0; i < counts["forged hello, A's key"]!; i++) pool.push(hello(aKey, impostor, attackerControl, HIGH_SEQ - BigInt(i)));
  for (let i = 0; i < counts['replay']!; i++) pool.push(replays[i % replays.length]!);
  // Interleave the kinds, so every slice of the flood has the whole mix.
  shuffle(pool);
  return { pool: pool.map((b) => [0, b] as [number, Uint8Array]), counts };
}

/** Floods `opts.target` of a running uplink.xml run (agents up, tunnels handshaken). */
export async function flood(run: SimRun, opts: FloodOptions): Promise<FloodResult> {
  const target = opts.target ?? 'R';
  const attacker = opts.attacker ?? 'M';
  const watch = opts.watch ?? ['A', 'B'];
  const pollMs = opts.pollMs ?? 200;
  const log = opts.log ?? (() => undefined);
  const keys = run.agents.keys ?? {};
  const sock = controlSocketPath(run.id, target);
  const targetStatus = (await controlRequest(sock, 'status')) as StatusAnswer;
  const targetAddress = targetStatus.interfaces.find((i) => i.linkLocal)?.linkLocal;
  if (!targetAddress) throw new Error(`${target} has no mesh interface with a link-local address`);
  const iface = targetStatus.interfaces.find((i) => i.linkLocal)!.name;

  // Real hellos from the watched neighbors, captured on the segment, to replay.
  const station = await Station.start(run.nodes[attacker]!, { iface, log });
  let replays: Uint8Array[];
  let attackerAddress: string;
  try {
    const deadline = Date.now() + 10_000;
    const senders = new Set(watch.map((n) => keys[n]));
    for (;;) {
      const got = new Map<string, Uint8Array[]>();
      for (const c of station.captured) {
        const d = decodeMessage(c.bytes);
        if (d.ok && d.message.type === HELLO && senders.has(d.publicKeyText)) got.set(d.publicKeyText, [...(got.get(d.publicKeyText) ?? []), c.bytes]);
      }
      if (got.size === senders.size) {
        replays = [...got.values()].flat();
        break;
      }
      if (Date.now() > deadline) throw new Error(`${attacker} captured no hellos from ${watch.join(', ')} within 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const { stdout } = await createRunner()(['ip', '-j', '-6', 'address', 'show', 'dev', iface, 'scope', 'link'], { netns: run.nodes[attacker]! });
    const info = JSON.parse(stdout) as Array<{ addr_info: Array<{ local?: string }> }>;
    attackerAddress = info[0]?.addr_info.find((a) => a.local?.startsWith('fe80:'))?.local ?? 'fe80::1';
  } finally {
    station.stop();
  }

  const mix = opts.mix ?? 'garbage';
  const nSources = Math.max(1, Math.floor(opts.sources ?? 1));
  const extra = nSources > 1 ? floodAddresses(nSources) : [];
  const sources = nSources > 1 ? extra : [attackerAddress];
  const neighborKeys = watch.map((n) => fromBase64Strict(keys[n]!, 32)!);
  const { pool, counts } = mix === 'hellos'
    ? buildHelloPool(10_000, neighborKeys, sources, iface)
    : buildPool(10_000, neighborKeys[0]!, replays, { address: attackerAddress, zone: iface, port: 51819 });
  const dir = mkdtempSync(join(tmpdir(), 'scrooge-flood-'));
  const poolFile = join(dir, 'pool.txt');
  writeFileSync(poolFile, pool.map(([src, b]) => `${src} ${Buffer.from(b).toString('base64')}`).join('\n') + '\n', { mode: 0o600 });
  log(`[${attacker}] pool of ${pool.length} datagrams from ${sources.length} source address(es): ${JSON.stringify(counts)}`);
  const attackerNs = run.nodes[attacker]!;
  await setAddresses(attackerNs, iface, extra, 'add');

  const watchSocks = watch.map((n) => controlSocketPath(run.id, n));
  /** Hellos the watched neighbors sent, then (100 ms later: those in flight have arrived) hellos the target processed. */
  const helloCounts = async () => {
    const sent = (await Promise.all(watchSocks.map((w) => controlRequest(w, 'status') as Promise<StatusAnswer>))).reduce((a, st) => a + (st.counters.sent[HELLO] ?? 0), 0);
    await new Promise((r) => setTimeout(r, 100));
    const st = (await controlRequest(sock, 'status')) as StatusAnswer;
    // Processed: verified, or recognised as nothing new over a working tunnel (PROTOCOL.md §6).
    return { sent, processed: (st.counters.received[HELLO] ?? 0) + (st.counters.redundant?.[HELLO] ?? 0), status: st };
  };
  const h0 = await helloCounts();
  const before = { status: h0.status, snmp: await snmp6(run.nodes[target]!), cpu: cpuSeconds(targetStatus.pid) };
  const polls = {
    polls: 0, failed: 0, missing: [] as { atMs: number; node: string }[], maxAgo: {} as Record<string, number>,
    states: {} as Record<string, Set<string>>, tunnelStates: {} as Record<string, Set<string>>, tunnelsLost: 0,
  };
  const started = performance.now();
  let flooding = true;
  const poller = (async () => {
    while (flooding) {
      const t = performance.now();
      try {
        const r = (await controlRequest(sock, 'neighbors', {}, 2000)) as NeighborsAnswer;
        polls.polls++;
        for (const name of watch) {
          const row = r.neighbors.find((n) => n.key === keys[name]);
          if (!row) polls.missing.push({ atMs: Math.round(t - started), node: name });
          else {
            polls.maxAgo[name] = Math.max(polls.maxAgo[name] ?? 0, row.lastHeardAgoMs);
            (polls.states[name] ??= new Set()).add(row.state);
          }
          const tunnel = row?.tunnel?.state ?? 'none';
          (polls.tunnelStates[name] ??= new Set()).add(tunnel);
          if (tunnel !== 'up') polls.tunnelsLost++;
        }
      } catch {
        polls.failed++;
      }
      const wait = pollMs - (performance.now() - t);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();

  log(`[${attacker}] flooding ${targetAddress}%${iface} with ${opts.rate} datagrams/s for ${opts.seconds} s (${mix})`);
  const sender = await new Promise<{ sent: number; errors: number; ms: number }>((resolve, reject) => {
    const from = sources.map((a) => `${a}%${iface}`).join(',');
    const child = spawn('ip', ['netns', 'exec', attackerNs, process.execPath, '-e', SENDER_JS, poolFile, from, String(opts.rate), String(opts.seconds), `${targetAddress}%${iface}`, '51819'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.seconds * 1000 + 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as { sent: number; errors: number; ms: number });
      } catch {
        reject(new Error(`flood sender exited ${code}: ${err.trim() || out.trim()}`));
      }
    });
  }).finally(() => rmSync(dir, { recursive: true, force: true }));
  const cpuAfter = cpuSeconds(targetStatus.pid);
  const elapsed = (performance.now() - started) / 1000;
  // One more poll after the last datagram: still there once the agent has worked through them.
  await new Promise((r) => setTimeout(r, pollMs));
  flooding = false;
  await poller;
  const h1 = await helloCounts();
  const after = { status: h1.status, snmp: await snmp6(run.nodes[target]!) };
  await setAddresses(attackerNs, iface, extra, 'del').catch(() => undefined);

  const drops: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.status.counters.dropped)) {
    const d = v - (before.status.counters.dropped[k] ?? 0);
    if (d) drops[k] = d;
  }
  const delta = (k: string) => (after.snmp[k] ?? 0) - (before.snmp[k] ?? 0);
  const cpu = cpuAfter - before.cpu;
  const kd0 = before.status.traffic?.discoveryDrops;
  const kd1 = after.status.traffic?.discoveryDrops;
  const hellosSent = h1.sent - h0.sent;
  const hellosProcessed = h1.processed - h0.processed;
  return {
    target,
    attacker,
    seconds: opts.seconds,
    rate: opts.rate,
    mix,
    sources: sources.length,
    pool: counts,
    sent: sender.sent,
    sendErrors: sender.errors,
    sentPerSecond: Math.round(sender.sent / (sender.ms / 1000)),
    drops,
    dropsTotal: Object.values(drops).reduce((a, b) => a + b, 0),
    kernel: {
      discoveryDrops: typeof kd0 === 'number' && typeof kd1 === 'number' ? kd1 - kd0 : null,
      udp6InDatagrams: delta('Udp6InDatagrams'), udp6RcvbufErrors: delta('Udp6RcvbufErrors'), udp6InErrors: delta('Udp6InErrors'),
    },
    hellos: { sent: hellosSent, processed: hellosProcessed, ratio: hellosSent > 0 ? Math.round((hellosProcessed / hellosSent) * 1000) / 1000 : 1 },
    agentCpu: { seconds: Math.round(cpu * 100) / 100, percentOfOneCore: Math.round((cpu / elapsed) * 1000) / 10 },
    neighbors: {
      polls: polls.polls,
      failedPolls: polls.failed,
      stayed: polls.missing.length === 0 && polls.failed === 0 && polls.polls > 0,
      missing: polls.missing,
      maxLastHeardAgoMs: polls.maxAgo,
      states: Object.fromEntries(Object.entries(polls.states).map(([k, v]) => [k, [...v].sort()])),
      tunnelStates: Object.fromEntries(Object.entries(polls.tunnelStates).map(([k, v]) => [k, [...v].sort()])),
      tunnelsStayed: polls.tunnelsLost === 0 && polls.failed === 0 && polls.polls > 0,
    },
  };
}

function printText(r: FloodResult, extra: { runId: string; convergedSeconds: number }): void {
  const lines = [
    `flood: ${r.attacker} -> ${r.target} on uplink.xml (run ${extra.runId}, tunnels up ${extra.convergedSeconds} s after the agents started)`,
    `  sent:              ${r.sent} datagrams in ${r.seconds} s (${r.sentPerSecond}/s, target ${r.rate}/s), ${r.sendErrors} send errors`,
    `  pool mix:          ${r.mix}: ${Object.entries(r.pool).map(([k, v]) => `${k} ${v}`).join(', ')}; from ${r.sources} source address(es)`,
    `  ${r.target} dropped (agent): ${r.dropsTotal} total`,
    ...Object.entries(r.drops).sort((a, b) => b[1] - a[1]).map(([k, v]) => `    ${k.padEnd(24)} ${v}`),
    `  ${r.target} kernel guard:    discovery_dropped +${r.kernel.discoveryDrops ?? '? (no packet filter)'}`,
    `  ${r.target} kernel (snmp6):  Udp6InDatagrams +${r.kernel.udp6InDatagrams}, Udp6RcvbufErrors +${r.kernel.udp6RcvbufErrors}, Udp6InErrors +${r.kernel.udp6InErrors}`,
    `  real hellos:       ${r.hellos.processed} of ${r.hellos.sent} the neighbors sent were processed (${Math.round(r.hellos.ratio * 1000) / 10} %)`,
    `  ${r.target} agent CPU:       ${r.agentCpu.seconds} s (${r.agentCpu.percentOfOneCore} % of one core)`,
    `  neighbors polled:  ${r.neighbors.polls} times every 200 ms, ${r.neighbors.failedPolls} failed; ` +
      Object.entries(r.neighbors.maxLastHeardAgoMs).map(([k, v]) => `${k} last heard at most ${v} ms before a poll (states ${r.neighbors.states[k]?.join('/')})`).join(', '),
    `  real neighbors stayed: ${r.neighbors.stayed ? 'YES' : `NO (${JSON.stringify(r.neighbors.missing.slice(0, 5))})`}; tunnels stayed up: ${r.neighbors.tunnelsStayed ? 'YES' : `NO (${JSON.stringify(r.neighbors.tunnelStates)})`}`,
  ];
  console.log(lines.join('\n'));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { json: { type: 'boolean' }, seconds: { type: 'string', default: '10' }, rate: { type: 'string', default: '20000' }, mix: { type: 'string', default: 'garbage' }, sources: { type: 'string', default: '1' } },
  });
  const seconds = Number(values.seconds);
  const rate = Number(values.rate);
  const sources = Number(values.sources);
  if (!(seconds > 0) || !(rate > 0)) throw new Error('--seconds and --rate must be positive numbers');
  if (values.mix !== 'garbage' && values.mix !== 'hellos') throw new Error('--mix must be garbage or hellos');
  if (!Number.isInteger(sources) || sources < 1 || sources > 4096) throw new Error('--sources must be an integer from 1 to 4096');
  const scenario = new URL('../../core-scenarios/uplink.xml', import.meta.url);
  const id = 'fl' + randomBytes(4).toString('hex');
  const log = values.json ? () => undefined : (l: string) => console.error(l);
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    log(`[${id}] sim up uplink.xml`);
    await upRun({ scenarioPath: scenario.pathname, id, agents: true });
    const run = await loadRun(id);
    const wait = await waitForTunnels(run, 30_000, { status: agentTunnelStatus });
    if (!wait.ok) throw new Error(`tunnels did not come up: ${wait.pairs.filter((p) => !p.ok).map((p) => p.missing).join('; ')}`);
    if (interrupted) return;
    const result = await flood(run, { seconds, rate, log, mix: values.mix, sources });
    if (values.json) console.log(JSON.stringify({ runId: id, convergedSeconds: wait.sinceAgentsStarted, ...result }, null, 2));
    else printText(result, { runId: id, convergedSeconds: wait.sinceAgentsStarted ?? NaN });
    process.exitCode = result.neighbors.stayed ? 0 : 1;
  } finally {
    await downRun(id);
    log(`[${id}] sim down`);
  }
}

// The file's own name too: bundled into another bench (hardening.js imports flood.ts), the
// module's import.meta.url is that bench's, and this main must not run there.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && /^flood\.[jt]s$/.test(basename(process.argv[1]))) {
  main().catch((err: unknown) => {
    console.error(`flood: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
