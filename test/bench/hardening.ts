/**
 * Hardening benchmark (issue 12, parts 1-3) on uplink.xml, with real packets:
 *
 *   reflection  fresh keys' hellos naming another node's address, the receiver's own, and an
 *               address off the link (U's, behind R's uplink) reach A, B and R: nothing is sent
 *               to any of them (stations capture at each), every one is `address-mismatch`;
 *               and a fresh key that names its real address is answered, and moves its control
 *               address with a unicast hello sent from the new address.
 *   lock-out    `--keys` fresh keys sending valid hellos (1/s each) from `--addresses` source
 *               addresses on M while A, forgotten by R, starts again: A's tunnel to R must come
 *               up within 5 s of A's agent starting, R's table must stay within its bounds.
 *   flood       `--rate` well-formed forged hellos/s (random keys and A's and B's keys, bad
 *               signatures) for `--seconds` from `--sources` addresses on M at R (flood.ts):
 *               >= 95 % of A's and B's hellos processed, no neighbor or tunnel lost; R's agent
 *               CPU and the kernel's drop counters.
 *
 *   node dist/bench/hardening.js [--json] [--seconds 60] [--rate 20000] [--sources 200]
 *        [--keys 500] [--addresses 100] [--lockout-seconds 30] [--only reflection,lockout,flood]
 *                                                                   (root; `npm run build`)
 *
 * One sim run (id `hd<hex>`, default configuration), always removed. The parts are exported for test/netns/hardening.test.ts (short versions).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { controlRequest } from '../../src/agent/control.js';
import { MAX_NEIGHBORS, MAX_STRANGERS } from '../../src/config/tunables.js';
import { HELLO, HELLO_CONFIRM, bytesEqual, decodeMessage, fromBase64Strict } from '../../src/protocol/index.js';
import { agentTunnelStatus, startAgent, stopAgent } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { type SimRun, controlSocketPath, loadRun, logsDir } from '../../src/sim/run.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { createRunner } from '../../src/system/runner.js';
import { hello, randomIdentity } from '../netns/forge.js';
import { cpuSeconds } from '../netns/proc.js';
import { Station } from '../netns/station.js';
import { type FloodResult, flood, floodAddresses, setAddresses } from './flood.js';

export interface PartOptions {
  log?: (line: string) => void;
  /** Every child process started (stations, senders): a test harness kills them on failure. */
  onSpawn?: (child: ChildProcess) => void;
}

interface Status {
  pid: number;
  counters: { dropped: Record<string, number>; received: Record<string, number>; sent: Record<string, number>; evicted?: number };
  traffic: { discoveryDrops: number | null } | null;
}
interface Row {
  key: string;
  state: string;
  linkLocal: string | null;
  control: string | null;
  tunnel: { state: string } | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const status = (run: SimRun, node: string) => controlRequest(controlSocketPath(run.id, node), 'status', {}, 5000) as Promise<Status>;
const neighbors = async (run: SimRun, node: string) =>
  ((await controlRequest(controlSocketPath(run.id, node), 'neighbors', { stats: false }, 5000)) as { neighbors: Row[] }).neighbors;
const b64 = (k: Uint8Array) => Buffer.from(k).toString('base64');

async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** An address of `iface` in `ns`: its link-local one, or its first global one. */
async function addressOf(ns: string, iface: string, scope: 'link' | 'global'): Promise<string> {
  const { stdout } = await createRunner()(['ip', '-j', '-6', 'address', 'show', 'dev', iface, 'scope', scope], { netns: ns });
  const info = JSON.parse(stdout) as Array<{ addr_info: Array<{ local?: string }> }>;
  const a = info[0]?.addr_info.find((x) => x.local && (scope === 'link') === x.local.startsWith('fe80:'))?.local;
  if (!a) throw new Error(`${ns} has no ${scope} address on ${iface}`);
  return a;
}

function dropDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const d = (after[k] ?? 0) - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** The agent's pino log lines named `msg`, at or after `since`. */
function logEvents(run: SimRun, node: string, msg: string, since = 0): { time: number; [k: string]: unknown }[] {
  const file = join(logsDir(run.id), `${node}.log`);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { time: number; msg: string })
    .filter((l) => l.msg === msg && l.time >= since);
}

// ---------------------------------------------------------------- reflection (part 1)

export interface ReflectionResult {
  keys: number;
  /** Hellos sent from M naming another address: to the group, and unicast to R. */
  sent: { group: number; unicastToR: number };
  /** Drop counters moved per agent (only `address-mismatch` is expected). */
  drops: Record<string, Record<string, number>>;
  /** Datagrams that reached the named victims (stations at A, B, R and U on the named port). */
  capturedAtVictims: Record<string, number>;
  /** Fresh keys found in any agent's table (expected none). */
  strangersInTables: number;
  /** The positive case: a fresh key naming its real address is answered, and can move. */
  realAddress: {
    /** Agents whose hello_confirm reached the key's real control address. */
    confirmedBy: string[];
    /** R's row for the key after a unicast hello from a new address naming that address. */
    movedTo: { linkLocal: string | null; control: string | null };
    /** R's hello_confirm reached the new control address. */
    confirmAtNewAddress: boolean;
  };
}

/** A fresh key's valid hello naming `[address]:port`: from anywhere else it is a reflection attempt. */
const VICTIM_PORT = 51900;

export async function reflection(run: SimRun, opts: PartOptions & { keys?: number } = {}): Promise<ReflectionResult> {
  const log = opts.log ?? (() => undefined);
  const keysN = opts.keys ?? 2;
  const agents = ['A', 'B', 'R'];
  const ns = (n: string) => run.nodes[n]!;
  const started: Station[] = [];
  const station = async (node: string, o: { port: number; bindAddress?: string }) => {
    const s = await Station.start(ns(node), { iface: 'eth0', ...o, log, onSpawn: opts.onSpawn });
    started.push(s);
    return s;
  };
  try {
    const ll = Object.fromEntries(await Promise.all([...agents, 'M'].map(async (n) => [n, await addressOf(ns(n), 'eth0', 'link')] as const)));
    const uGlobal = await addressOf(ns('U'), 'eth0', 'global');
    const m = await station('M', { port: 51819 });
    const victims: Record<string, Station> = {};
    for (const n of [...agents, 'U']) victims[n] = await station(n, { port: VICTIM_PORT });
    const named = [
      ...agents.map((n) => ({ address: ll[n]!, zone: 'eth0', port: VICTIM_PORT })),
      { address: uGlobal, port: VICTIM_PORT }, // off the link: R would answer through its uplink
    ];
    const seq0 = BigInt(Math.floor(Date.now() / 1000)) << 32n;
    const fresh: Uint8Array[] = [];
    const batch = () =>
      Array.from({ length: keysN }, () => {
        const id = randomIdentity();
        fresh.push(id.publicKey);
        return named.map((c, i) => hello(id.publicKey, id, c, seq0 + BigInt(i)));
      }).flat();
    // M is a stranger to the kernels' guards (20 datagrams/s per source): send in small steps.
    const paced = async (to: string, datagrams: Uint8Array[]) => {
      for (let i = 0; i < datagrams.length; i += 8) {
        await m.send(to, datagrams.slice(i, i + 8), 51819);
        if (i + 8 < datagrams.length) await sleep(600);
      }
    };
    const before = Object.fromEntries(await Promise.all(agents.map(async (n) => [n, (await status(run, n)).counters.dropped] as const)));
    const group = batch();
    log(`[${ns('M')}] ${group.length} hellos of ${keysN} fresh keys naming A's, B's, R's and U's addresses, to ff02::114%eth0`);
    await paced('ff02::114%eth0', group);
    const unicast = batch();
    log(`[${ns('M')}] ${unicast.length} more, unicast to R`);
    await paced(`${ll['R']}%eth0`, unicast);
    const mismatches = async (n: string) => ((await status(run, n)).counters.dropped['address-mismatch'] ?? 0) - (before[n]!['address-mismatch'] ?? 0);
    await waitFor('every agent to count the hellos as address-mismatch', async () => {
      for (const n of agents) if ((await mismatches(n)) < group.length + (n === 'R' ? unicast.length : 0)) return false;
      return true;
    }, 10_000);
    // Answers would have left at once: give them a second to arrive anyway.
    await sleep(1000);
    const drops: Record<string, Record<string, number>> = {};
    for (const n of agents) drops[n] = dropDelta(before[n]!, (await status(run, n)).counters.dropped);
    const freshText = new Set(fresh.map(b64));
    let strangersInTables = 0;
    for (const n of agents) strangersInTables += (await neighbors(run, n)).filter((r) => freshText.has(r.key)).length;
    const capturedAtVictims = Object.fromEntries(Object.entries(victims).map(([n, s]) => [n, s.captured.length]));

    // The positive case: K names its real address (M's), and is answered there by every agent.
    const k = randomIdentity();
    const confirmsFor = (s: Station) => s.captured.filter((c) => {
      const d = decodeMessage(c.bytes);
      return d.ok && d.message.type === HELLO_CONFIRM && bytesEqual(d.message.recipient, k.publicKey);
    });
    const byAddress = Object.fromEntries(agents.map((n) => [ll[n]!, n]));
    await m.send('ff02::114%eth0', [hello(k.publicKey, k, { address: ll['M']!, zone: 'eth0', port: 51819 }, seq0)], 51819);
    const confirmedBy = await waitFor('hello_confirms for a key that names its real address', () => {
      const from = [...new Set(confirmsFor(m).map((c) => byAddress[c.from.split('%')[0]!] ?? c.from))].sort();
      return from.length === agents.length ? from : false;
    }, 5000).catch(() => [...new Set(confirmsFor(m).map((c) => byAddress[c.from.split('%')[0]!] ?? c.from))].sort());
    // ... and moves: a unicast hello to R from a new address of M's, naming that address (the
    // seed's "a hello sent directly to update a control address").
    const moved = 'fe80::5eed';
    await setAddresses(ns('M'), 'eth0', [moved], 'add');
    const s2 = await station('M', { port: 51902, bindAddress: `${moved}%eth0` });
    await s2.send(`${ll['R']}%eth0`, [hello(k.publicKey, k, { address: moved, zone: 'eth0', port: 51902 }, seq0 + 1n)], 51819);
    const wantControl = `[${moved}%eth0]:51902`;
    const row = await waitFor("R's row for the key to move", async () => {
      const r = (await neighbors(run, 'R')).find((x) => x.key === b64(k.publicKey));
      return r?.control === wantControl ? r : false;
    }, 5000).catch(async () => (await neighbors(run, 'R')).find((x) => x.key === b64(k.publicKey)));
    const confirmAtNewAddress = await waitFor('R to confirm at the new address', () => confirmsFor(s2).length > 0, 3000).catch(() => false);
    return {
      keys: keysN,
      sent: { group: group.length, unicastToR: unicast.length },
      drops,
      capturedAtVictims,
      strangersInTables,
      realAddress: { confirmedBy, movedTo: { linkLocal: row?.linkLocal ?? null, control: row?.control ?? null }, confirmAtNewAddress },
    };
  } finally {
    for (const s of started) s.stop();
  }
}

// ---------------------------------------------------------------- lock-out (part 2)

/**
 * Runs in the attacker's namespace: one socket per source address (bound to its discovery
 * port, so answers land somewhere and are counted), sends each line `<due ms> <source> <b64>`
 * at its time, to `target`. Prints {sent, errors, received} at the end.
 */
const SCHEDULE_JS = `
const [file, sourcesText, target, port] = process.argv.slice(1);
const lines = require('node:fs').readFileSync(file, 'utf8').split('\\n').filter(Boolean).map((l) => {
  const [due, src, b64] = l.split(' ');
  return [Number(due), Number(src), Buffer.from(b64, 'base64')];
});
const dgram = require('node:dgram');
const addrs = sourcesText.split(',');
let received = 0, sent = 0, errors = 0, bound = 0;
const sockets = addrs.map(() => dgram.createSocket({ type: 'udp6', ipv6Only: true }));
sockets.forEach((s, i) => {
  s.on('message', () => received++);
  s.on('error', (e) => { console.error(String(e)); process.exit(1); });
  s.bind(Number(port), addrs[i], () => { if (++bound === sockets.length) go(); });
});
function go() {
  const start = performance.now();
  let i = 0;
  const tick = () => {
    const now = performance.now() - start;
    while (i < lines.length && lines[i][0] <= now) {
      const [, src, b] = lines[i++];
      sockets[src].send(b, Number(port), target, (err) => { if (err) errors++; });
      sent++;
    }
    if (i < lines.length) setTimeout(tick, 2);
    else setTimeout(() => { console.log(JSON.stringify({ sent, errors, received })); process.exit(0); }, 200);
  };
  tick();
}
`;

export interface LockoutOptions extends PartOptions {
  /** Fresh keys, each sending a valid hello every second (default 500). */
  keys?: number;
  /** Source addresses on M they share (default 100: 5 keys each, within the guard's 20/s per source). */
  addresses?: number;
  /** How long the strangers keep coming (default 30 s). */
  seconds?: number;
  /** When A's agent is started, after the strangers started (default 6 s). */
  startAfterMs?: number;
  /** Node that starts during the flood (default A; stopped and forgotten by R first). */
  newcomer?: string;
}

export interface LockoutResult {
  keys: number;
  addresses: number;
  seconds: number;
  strangers: { sent: number; sendErrors: number; answersReceived: number };
  /** R's table, polled every 250 ms: its largest size, the most heard-only rows, and the bounds. */
  table: { polls: number; maxSize: number; maxHeardOnly: number; bound: number; strangerBound: number };
  /** R's `counters.evicted` delta, and its drops by reason. */
  evicted: number;
  drops: Record<string, number>;
  /** R's kernel guard drops (status.traffic.discoveryDrops delta). */
  kernelDrops: number | null;
  newcomer: {
    node: string;
    /** A's agent's 'starting' log line to A's first handshake with R (ms). */
    tunnelAfterMs: number | null;
    /** From the start command (process spawn included). */
    tunnelAfterSpawnMs: number | null;
    /** A was in R's table at every poll from its tunnel on. */
    keptItsPlace: boolean;
  };
  /** The other real neighbor (B) was in R's table at every poll. */
  othersStayed: boolean;
  rAgentCpu: { seconds: number; percentOfOneCore: number };
}

export async function lockout(run: SimRun, opts: LockoutOptions = {}): Promise<LockoutResult> {
  const log = opts.log ?? (() => undefined);
  const keysN = opts.keys ?? 500;
  const nAddr = Math.max(1, Math.min(opts.addresses ?? 100, keysN));
  const seconds = opts.seconds ?? 30;
  const startAfterMs = opts.startAfterMs ?? 6000;
  const newcomer = opts.newcomer ?? 'A';
  const keys = run.agents.keys ?? {};
  const others = ['A', 'B'].filter((n) => n !== newcomer);
  const mNs = run.nodes['M']!;

  // The newcomer must be new to R: stopped, and forgotten (with its tunnel).
  log(`[${run.id}] stop ${newcomer}; wait for R to forget it`);
  await stopAgent(run, newcomer, 'SIGTERM');
  await waitFor(`R to forget ${newcomer}`, async () => !(await neighbors(run, 'R')).some((r) => r.key === keys[newcomer]), 40_000, 250);

  // The strangers' hellos, valid and signed, each naming the address it is sent from.
  const sources = floodAddresses(nAddr, 0xf200);
  const ids = Array.from({ length: keysN }, () => randomIdentity());
  const seq0 = BigInt(Math.floor(Date.now() / 1000)) << 32n;
  const lines: [number, number, string][] = [];
  ids.forEach((id, k) => {
    const src = k % nAddr;
    const phase = Math.floor(Math.random() * 1000);
    const control = { address: sources[src]!, zone: 'eth0', port: 51819 };
    for (let t = 0; t < seconds; t++) lines.push([t * 1000 + phase, src, b64(hello(id.publicKey, id, control, seq0 + BigInt(t)))]);
  });
  lines.sort((a, b) => a[0] - b[0]);
  const dir = mkdtempSync(join(tmpdir(), 'scrooge-lockout-'));
  const file = join(dir, 'schedule.txt');
  writeFileSync(file, lines.map((l) => l.join(' ')).join('\n') + '\n', { mode: 0o600 });
  await setAddresses(mNs, 'eth0', sources, 'add');

  const rStatus0 = await status(run, 'R');
  const cpu0 = cpuSeconds(rStatus0.pid);
  const t0 = performance.now();
  const table = { polls: 0, maxSize: 0, maxHeardOnly: 0 };
  let othersStayed = true;
  let newcomerHeld: boolean | undefined;
  let tunnelSince: number | undefined;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const t = performance.now();
      try {
        const rows = await neighbors(run, 'R');
        table.polls++;
        table.maxSize = Math.max(table.maxSize, rows.length);
        table.maxHeardOnly = Math.max(table.maxHeardOnly, rows.filter((r) => r.state === 'heard' && !r.tunnel).length);
        for (const o of others) if (!rows.some((r) => r.key === keys[o])) othersStayed = false;
        if (tunnelSince !== undefined) {
          const there = rows.some((r) => r.key === keys[newcomer]);
          newcomerHeld = (newcomerHeld ?? true) && there;
        }
      } catch {
        othersStayed = false;
      }
      const wait = 250 - (performance.now() - t);
      if (wait > 0) await sleep(wait);
    }
  })();

  log(`[${mNs}] ${keysN} fresh keys from ${nAddr} addresses: valid hellos, 1/s each, for ${seconds} s`);
  const sender = new Promise<{ sent: number; errors: number; received: number }>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', mNs, process.execPath, '-e', SCHEDULE_JS, file, sources.map((a) => `${a}%eth0`).join(','), 'ff02::114%eth0', '51819'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    opts.onSpawn?.(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), seconds * 1000 + 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as { sent: number; errors: number; received: number });
      } catch {
        reject(new Error(`strangers' sender exited ${code}: ${err.trim() || out.trim()}`));
      }
    });
  });
  sender.catch(() => undefined);

  let tunnelAfterMs: number | null = null;
  let tunnelAfterSpawnMs: number | null = null;
  let sent: { sent: number; errors: number; received: number } = { sent: 0, errors: -1, received: 0 };
  try {
    await sleep(startAfterMs);
    const evictedBefore = (await status(run, 'R')).counters.evicted ?? 0;
    log(`[${run.id}] R's table under the strangers: evicted ${evictedBefore - (rStatus0.counters.evicted ?? 0)} so far; start ${newcomer}`);
    const spawnAt = Date.now();
    await startAgent(run, newcomer);
    const startedAt = await waitFor(`${newcomer}'s 'starting' log line`, () => logEvents(run, newcomer, 'starting', spawnAt)[0]?.time, 10_000);
    const shake = await waitFor(`${newcomer}'s tunnel to R`, () => logEvents(run, newcomer, 'tunnel-handshake', spawnAt).find((e) => e['neighbor'] === keys['R'])?.time, 20_000, 50)
      .catch(() => undefined);
    if (shake !== undefined) {
      tunnelAfterMs = shake - startedAt;
      tunnelAfterSpawnMs = shake - spawnAt;
      tunnelSince = performance.now();
    }
    log(`[${run.id}] ${newcomer}'s tunnel to R: ${tunnelAfterMs ?? 'none'} ms after its agent started (${tunnelAfterSpawnMs ?? '-'} ms after the start command)`);
  } finally {
    sent = await sender.catch((e: Error) => {
      log(`[${mNs}] ${e.message}`);
      return sent;
    });
    polling = false;
    await poller;
    rmSync(dir, { recursive: true, force: true });
    await setAddresses(mNs, 'eth0', sources, 'del').catch(() => undefined);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const rStatus1 = await status(run, 'R');
  const cpu = cpuSeconds(rStatus1.pid) - cpu0;
  const kd0 = rStatus0.traffic?.discoveryDrops;
  const kd1 = rStatus1.traffic?.discoveryDrops;
  return {
    keys: keysN,
    addresses: nAddr,
    seconds,
    strangers: { sent: sent.sent, sendErrors: sent.errors, answersReceived: sent.received },
    table: { ...table, bound: MAX_NEIGHBORS, strangerBound: MAX_STRANGERS },
    evicted: (rStatus1.counters.evicted ?? 0) - (rStatus0.counters.evicted ?? 0),
    drops: dropDelta(rStatus0.counters.dropped, rStatus1.counters.dropped),
    kernelDrops: typeof kd0 === 'number' && typeof kd1 === 'number' ? kd1 - kd0 : null,
    newcomer: { node: newcomer, tunnelAfterMs, tunnelAfterSpawnMs, keptItsPlace: tunnelSince !== undefined && newcomerHeld !== false },
    othersStayed,
    rAgentCpu: { seconds: Math.round(cpu * 100) / 100, percentOfOneCore: Math.round((cpu / elapsed) * 1000) / 10 },
  };
}

// ---------------------------------------------------------------- the benchmark

/**
 * Short tunnel timers, so that R forgets a stopped A within seconds: for the lock-out test
 * (the benchmark runs the default timers, and waits the ~20 s R takes to forget A). Not for
 * the flood: a starved agent that reads WireGuard's counters late would judge a 3 s tunnel
 * dead interval missed, which the default 16 s is made to absorb.
 */
export const HARDENING_OVERLAY = { tunnels: { keepalive: '1s', deadAfter: '3s' } };

function printText(id: string, r: { reflection?: ReflectionResult; flood?: FloodResult; lockout?: LockoutResult }, verdict: Record<string, boolean>): void {
  const out: string[] = [`hardening (issue 12) on uplink.xml, run ${id}`];
  if (r.reflection) {
    const x = r.reflection;
    out.push(
      `reflection: ${x.keys} fresh keys x 4 named addresses (A, B, R link-local; U global, off the link)`,
      `  sent from M:        ${x.sent.group} to the group, ${x.sent.unicastToR} unicast to R`,
      `  dropped:            ${Object.entries(x.drops).map(([n, d]) => `${n} ${JSON.stringify(d)}`).join(', ')}`,
      `  reached victims:    ${Object.entries(x.capturedAtVictims).map(([n, c]) => `${n} ${c}`).join(', ')} datagrams; fresh keys in tables: ${x.strangersInTables}`,
      `  real address:       confirmed by ${x.realAddress.confirmedBy.join(', ') || 'nobody'}; moved by unicast hello to ${x.realAddress.movedTo.control} (R confirmed there: ${x.realAddress.confirmAtNewAddress ? 'yes' : 'NO'})`,
    );
  }
  if (r.lockout) {
    const x = r.lockout;
    out.push(
      `lock-out: ${x.keys} fresh keys with valid hellos (1/s each) from ${x.addresses} addresses for ${x.seconds} s`,
      `  strangers sent:     ${x.strangers.sent} hellos (${x.strangers.sendErrors} errors), received ${x.strangers.answersReceived} answers`,
      `  R's table:          at most ${x.table.maxSize} rows (bound ${x.table.bound}), at most ${x.table.maxHeardOnly} heard-only (stranger bound ${x.table.strangerBound}), ${x.table.polls} polls`,
      `  R evicted:          ${x.evicted} strangers; R dropped ${JSON.stringify(x.drops)}; R's kernel guard dropped ${x.kernelDrops ?? '?'}`,
      `  ${x.newcomer.node} started:         tunnel to R ${x.newcomer.tunnelAfterMs ?? 'NEVER'} ms after its agent started (${x.newcomer.tunnelAfterSpawnMs ?? '-'} ms after the start command); kept its place: ${x.newcomer.keptItsPlace ? 'yes' : 'NO'}`,
      `  B stayed:           ${x.othersStayed ? 'yes' : 'NO'}; R agent CPU ${x.rAgentCpu.seconds} s (${x.rAgentCpu.percentOfOneCore} % of one core)`,
    );
  }
  if (r.flood) {
    const x = r.flood;
    out.push(
      `flood: ${x.mix} from ${x.sources} addresses on M at R, ${x.rate}/s for ${x.seconds} s`,
      `  sent:               ${x.sent} (${x.sentPerSecond}/s), ${x.sendErrors} send errors`,
      `  R's kernel:         guard (nft discovery_dropped) +${x.kernel.discoveryDrops ?? '?'}, Udp6RcvbufErrors +${x.kernel.udp6RcvbufErrors}, Udp6InErrors +${x.kernel.udp6InErrors}, Udp6InDatagrams +${x.kernel.udp6InDatagrams}`,
      `  R's agent dropped:  ${x.dropsTotal} ${JSON.stringify(x.drops)}`,
      `  R's agent CPU:      ${x.agentCpu.seconds} s (${x.agentCpu.percentOfOneCore} % of one core)`,
      `  real hellos:        ${x.hellos.processed} of ${x.hellos.sent} processed (${Math.round(x.hellos.ratio * 1000) / 10} %)`,
      `  neighbors stayed:   ${x.neighbors.stayed ? 'yes' : 'NO'}; tunnels stayed up: ${x.neighbors.tunnelsStayed ? 'yes' : 'NO'} (${JSON.stringify(x.neighbors.tunnelStates)}); ${x.neighbors.polls} polls`,
    );
  }
  out.push(`verdict: ${Object.entries(verdict).map(([k, v]) => `${k} ${v ? 'ok' : 'FAILED'}`).join(', ')}`);
  console.log(out.join('\n'));
}

/** Targets of issue 12 (the tests assert the same on their short versions). */
export function verdicts(r: { reflection?: ReflectionResult; flood?: FloodResult; lockout?: LockoutResult }): Record<string, boolean> {
  const v: Record<string, boolean> = {};
  if (r.reflection) {
    const x = r.reflection;
    v['reflection'] = Object.values(x.capturedAtVictims).every((c) => c === 0) && x.strangersInTables === 0 &&
      Object.entries(x.drops).every(([n, d]) => JSON.stringify(d) === JSON.stringify({ 'address-mismatch': x.sent.group + (n === 'R' ? x.sent.unicastToR : 0) })) &&
      x.realAddress.confirmedBy.length === 3 && x.realAddress.confirmAtNewAddress;
  }
  if (r.lockout) {
    const x = r.lockout;
    v['lockout'] = x.newcomer.tunnelAfterMs !== null && x.newcomer.tunnelAfterMs <= 5000 && x.newcomer.keptItsPlace && x.othersStayed &&
      x.table.maxSize <= x.table.bound && x.table.maxHeardOnly <= x.table.strangerBound && x.evicted > 0 && !x.drops['table-full'];
  }
  if (r.flood) {
    const x = r.flood;
    v['flood'] = x.hellos.ratio >= 0.95 && x.neighbors.stayed && x.neighbors.tunnelsStayed && x.sendErrors === 0;
  }
  return v;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean' },
      seconds: { type: 'string', default: '60' },
      rate: { type: 'string', default: '20000' },
      sources: { type: 'string', default: '200' },
      keys: { type: 'string', default: '500' },
      addresses: { type: 'string', default: '100' },
      'lockout-seconds': { type: 'string', default: '30' },
      only: { type: 'string', default: 'reflection,flood,lockout' },
    },
  });
  const num = (name: string, v: string | undefined, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name} must be a number from ${min} to ${max}`);
    return n;
  };
  const seconds = num('seconds', values.seconds, 1, 3600);
  const rate = num('rate', values.rate, 1, 200_000);
  const sources = Math.floor(num('sources', values.sources, 1, 4096));
  const keys = Math.floor(num('keys', values.keys, 1, 5000));
  const addresses = Math.floor(num('addresses', values.addresses, 1, 4096));
  const lockoutSeconds = Math.floor(num('lockout-seconds', values['lockout-seconds'], 10, 3600));
  const only = new Set(values.only!.split(','));
  for (const p of only) if (!['reflection', 'flood', 'lockout'].includes(p)) throw new Error(`--only: unknown part ${p}`);
  const id = 'hd' + randomBytes(4).toString('hex');
  const log = values.json ? () => undefined : (l: string) => console.error(l);
  try {
    log(`[${id}] sim up uplink.xml`);
    await upRun({ scenarioPath: new URL('../../core-scenarios/uplink.xml', import.meta.url).pathname, id, agents: true });
    const run = await loadRun(id);
    const wait = await waitForTunnels(run, 30_000, { status: agentTunnelStatus });
    if (!wait.ok) throw new Error(`tunnels did not come up: ${wait.pairs.filter((p) => !p.ok).map((p) => p.missing).join('; ')}`);
    const r: { reflection?: ReflectionResult; flood?: FloodResult; lockout?: LockoutResult } = {};
    if (only.has('reflection')) r.reflection = await reflection(run, { keys: 4, log });
    if (only.has('flood')) r.flood = await flood(run, { seconds, rate, sources, mix: 'hellos', log });
    if (only.has('lockout')) r.lockout = await lockout(run, { keys, addresses, seconds: lockoutSeconds, log });
    const verdict = verdicts(r);
    if (values.json) console.log(JSON.stringify({ runId: id, ...r, verdict }, null, 2));
    else printText(id, r, verdict);
    process.exitCode = Object.values(verdict).every(Boolean) ? 0 : 1;
  } finally {
    await downRun(id);
    log(`[${id}] sim down`);
  }
}

// The file's own name too: bundled into another bench (hardening.js imports flood.ts), the
// module's import.meta.url is that bench's, and this main must not run there.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && /^hardening\.[jt]s$/.test(basename(process.argv[1]))) {
  main().catch((err: unknown) => {
    console.error(`hardening: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
