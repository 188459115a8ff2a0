/**
 * Errors an operator can cause at run time end in one clear line saying what to do, and never
 * a stack trace: not root, wireguard-go missing, an exhausted tunnel port range, a mesh
 * interface that is missing (the agent waits for it). Real agents in a namespace of our own.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentTunnelStatus, scroogeEntry } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { loadRun, logsDir } from '../../src/sim/run.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { isRoot, newRunId, SCENARIOS, step, until } from './lib.js';

const ns = `scerr${randomBytes(3).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'scrooge-err-'));
const entry = scroogeEntry();

/** Runs a set-up command; a failure stops the test here, with what the command said. */
function must(argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.error?.message ?? `exit ${r.status}`}: ${r.stderr}`);
}

function config(name: string, body: Record<string, unknown>): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  must([process.execPath, entry, 'keygen', '--out', join(d, 'node.key')]);
  writeFileSync(join(d, 'config.json'), JSON.stringify({ keyFile: 'node.key', stateDir: 'state', controlSocket: join(d, 'control.sock'), interfaces: ['eth0'], ...body }));
  return join(d, 'config.json');
}

/** Runs `scrooge run` in our namespace until it exits (or `ms` pass); returns its output. */
function runAgent(configFile: string, opts: { ms?: number; env?: NodeJS.ProcessEnv; prefix?: string[] } = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...(opts.prefix ?? []), process.execPath, entry, 'run', '--config', configFile], { env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => void (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => void (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), opts.ms ?? 5000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(() => {
  if (!isRoot) return;
  step(ns, 'create namespace with a veth pair eth0/peer0');
  must(['ip', 'netns', 'add', ns]);
  must(['ip', '-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
  for (const l of ['lo', 'eth0', 'peer0']) must(['ip', '-n', ns, 'link', 'set', l, 'up']);
});

afterAll(() => {
  if (isRoot) spawnSync('ip', ['netns', 'del', ns]);
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!isRoot)('run-time errors are one line', () => {
  it('not root', async () => {
    const file = config('notroot', {});
    // The unprivileged user must be able to read the config (not the key: the check comes first).
    chmodSync(dir, 0o755);
    chmodSync(join(dir, 'notroot'), 0o755);
    chmodSync(file, 0o644);
    const r = await runAgent(file, { prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] });
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^scrooge: scrooge run needs root \(CAP_NET_ADMIN\).*\(run it as root/);
  });

  it('wireguard-go missing (and no kernel module)', async () => {
    // A PATH with every tool but wireguard-go.
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    for (const tool of ['ip', 'tc', 'nft', 'wg', 'iptables', 'ip6tables', 'iptables-restore', 'ip6tables-restore']) {
      const where = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
      if (where) symlinkSync(where, join(bin, tool));
    }
    const r = await runAgent(config('nowg', {}), { env: { ...process.env, PATH: bin } });
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^scrooge: no WireGuard: this kernel has no wireguard module and wireguard-go is not installed \(install it: apt-get install --no-install-recommends wireguard-go/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a missing mesh interface: one warning, the agent waits, then uses it when it appears', async () => {
    const file = config('missing', { interfaces: ['mesh9'], tunnels: { enabled: false }, traffic: { enabled: false } });
    const running = runAgent(file, { ms: 4000 });
    await new Promise((r) => setTimeout(r, 1500));
    must(['ip', '-n', ns, 'link', 'add', 'mesh9', 'type', 'veth', 'peer', 'name', 'mesh9p']);
    must(['ip', '-n', ns, 'link', 'set', 'mesh9', 'up']);
    must(['ip', '-n', ns, 'link', 'set', 'mesh9p', 'up']);
    const r = await running;
    const log = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string });
    const warnings = log.filter((l) => l.level >= 40);
    expect(warnings.map((w) => w.msg)).toEqual(['mesh interface mesh9 is missing or has no IPv6 link-local address; waiting for it']);
    expect(log.some((l) => l.msg === 'mesh interface mesh9 is up')).toBe(true);
    expect(r.code).toBe(0); // stopped by SIGTERM, cleanly
  });
});

describe.skipIf(!isRoot)('an exhausted tunnel port range', () => {
  let id: string | undefined;
  afterAll(async () => {
    if (id) await downRun(id);
  });

  it('is logged as one error saying what to do, and the agent keeps serving the tunnels it has', async () => {
    id = newRunId();
    // n1 may use a single tunnel port; lan-5 gives it four neighbors.
    await upRun({ scenarioPath: join(SCENARIOS, 'lan-5.xml'), id, agents: true, configOverlay: { nodes: { n1: { tunnels: { portRange: [51820, 51820] } } } } });
    const run = await loadRun(id);
    await waitForTunnels(run, 8000, { status: agentTunnelStatus }); // cannot all succeed
    const n1 = await until('n1 logs the exhausted range', () => {
      const lines = readFileSync(join(logsDir(id!), 'n1.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string; range?: string });
      return lines.find((l) => l.msg.startsWith('no free tunnel port'));
    }, 10_000);
    expect(n1).toMatchObject({ level: 50, msg: 'no free tunnel port: widen tunnels.portRange', range: '51820-51820' });
    const status = await agentTunnelStatus(run, 'n1');
    expect(status.handshakeWith).toHaveLength(1);
  }, 60_000);
});
