// Every mistake a person can make at the command line ends in one clear line (and the usage,
// for usage errors), with exit code 2 for usage and 1 for everything else. Never a stack trace.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'scrooge-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err, firstLine: err.split('\n')[0]! };
}

function config(body: Record<string, unknown>): string {
  const file = join(dir, `c${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ keyFile: 'k', stateDir: 's', interfaces: ['eth0'], ...body }));
  return file;
}

describe('command-line errors', () => {
  it.each([
    [['frobnicate'], 2, /^scrooge: unknown command 'frobnicate'/],
    [['keygen'], 2, /^scrooge keygen: --out FILE is required$/],
    [['keygen', '--out'], 2, /^scrooge keygen: .*--out/],
    [['run'], 2, /^scrooge run: --config FILE is required$/],
    [['run', '--config', 'x.json', '--log-level', 'loud'], 2, /--log-level must be one of/],
    [['priority', 'abcd', 'lots'], 2, /WEIGHT must be an integer from 1 to 1000/],
    [['priority', 'abcd'], 2, /missing argument: expected NEIGHBOR WEIGHT/],
    [['alias', 'abcd', '9lives'], 2, /NAME must start with a letter/],
    [['share', '1.5'], 2, /FRACTION must be a number in \(0, 1\]/],
    [['sim', 'up'], 2, /scrooge sim/],
    [['tc'], 2, /missing subcommand/],
  ])('%j -> exit %i', async (argv, code, re) => {
    const r = await cli(...(argv as string[]));
    expect(r.code).toBe(code);
    expect(r.firstLine).toMatch(re);
    expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
  });

  it.each([
    [{ share: 1.5 }, /^scrooge: config share: share must be in \(0, 1\]$/],
    [{ tunnels: { portRange: [52000, 51000] } }, /^scrooge: config tunnels\.portRange: first port must not be above the last$/],
    [{ uplinks: [{ interface: 'eth1', rate: 'fast' }] }, /^scrooge: config uplinks\[0\]\.rate: not a rate: "fast"/],
    [{ interfaces: [] }, /^scrooge: config interfaces: name at least one mesh interface$/],
    [{ interfaces: ['eth0'], uplinks: [{ interface: 'eth0', rate: '1mbit' }] }, /"eth0" is listed twice/],
    [{ discovery: { helloInterval: 'often' } }, /^scrooge: config discovery\.helloInterval: not a duration: "often"/],
    [{ tunels: {} }, /^scrooge: config: unknown field "tunels" \(a typo\?/],
    [{ tunnels: { mtu: 100 } }, /^scrooge: config tunnels\.mtu: /],
    [{ neighbors: { nope: { priority: 2 } } }, /^scrooge: config neighbors\["nope"\]: not a base64 ed25519 public key$/],
    [{ metrics: { listen: 'everywhere' } }, /^scrooge: config metrics\.listen: not a listen address/],
  ])('bad config %j is one line naming the field', async (body, re) => {
    const r = await cli('run', '--config', config(body));
    expect(r.code).toBe(1);
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
    expect(r.firstLine).toMatch(re);
  });

  it('a missing or unreadable config file', async () => {
    const r = await cli('run', '--config', join(dir, 'nope.json'));
    expect(r).toMatchObject({ code: 1 });
    expect(r.firstLine).toMatch(/^scrooge: config: cannot read .*nope\.json: ENOENT$/);
    writeFileSync(join(dir, 'bad.json'), '{ not json');
    expect((await cli('run', '--config', join(dir, 'bad.json'))).firstLine).toMatch(/is not valid JSON/);
  });

  it('a missing key file says how to make one', async () => {
    const r = await cli('run', '--config', config({ tunnels: { enabled: false }, traffic: { enabled: false } }));
    expect(r.code).toBe(1);
    expect(r.err.trimEnd().split('\n')).toHaveLength(1);
    expect(r.firstLine).toMatch(/cannot read key file .*ENOENT \(create one with `scrooge keygen --out FILE`\)/);
  });

  it('talking to an agent that is not running', async () => {
    const r = await cli('status', '--socket', join(dir, 'none.sock'));
    expect(r.code).toBe(1);
    expect(r.firstLine).toMatch(/^scrooge: the scrooge agent is not running \(nothing answers on .*none\.sock\) \(start it with `scrooge run --config FILE`/);
  });

  it('help for every command', async () => {
    const r = await cli('--help');
    for (const name of ['keygen', 'pubkey', 'run', 'status', 'neighbors', 'tunnels', 'routes', 'priority', 'cap', 'alias', 'share', 'tc', 'sim', 'demo']) {
      expect(r.out).toContain(`  ${name}`);
      const h = await cli('help', name);
      expect(h.code).toBe(0);
      expect(h.out).toMatch(/^usage: scrooge /);
    }
  });
});
