// The one generator of a sim node's config, set-up and CORE hook (src/sim/nodeconfig.ts): what
// `scrooge sim up` gives each node is what the CORE hooks give it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/cli.js';
import type { CliIO } from '../../src/cli/command.js';
import { parseConfig } from '../../src/config/config.js';
import { agentConfig, agentEnv, probeTimeoutMs } from '../../src/sim/agents.js';
import { MESH4_PREFIX, currentHook, hookScript, nodeConfig, nodeSetup, simMeshAddress4, withHooks } from '../../src/sim/nodeconfig.js';
import { planRun } from '../../src/sim/plan.js';
import { parseScenario, runsAgent, type Topology } from '../../src/sim/scenario.js';

const SCENARIOS = fileURLToPath(new URL('../../core-scenarios/', import.meta.url));
const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.xml')).sort();
const scenario = (name: string) => parseScenario(readFileSync(SCENARIOS + name, 'utf8'));

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { out: (t) => void (out += t), err: (t) => void (err += t) };
  const code = await main(argv, io);
  return { code, out, err };
}

describe('nodeConfig', () => {
  const t = scenario('uplink.xml');

  it('turns routing with babeld on, with a mesh IPv4 address from the device id', () => {
    const a = nodeConfig(t, 'A', '/run/x/A');
    expect(a).toEqual({
      keyFile: '/run/x/A/node.key',
      stateDir: '/run/x/A/state',
      controlSocket: '/run/x/A/control.sock',
      interfaces: [{ name: 'eth0' }],
      uplinks: [],
      routing: { mode: 'babeld', meshAddress4: '10.99.0.1', accept4: MESH4_PREFIX },
    });
    // R has an uplink (eth1 to the host U): a gateway by the default gateway "auto".
    const r = nodeConfig(t, 'R', '/d');
    expect(r['uplinks']).toEqual([{ interface: 'eth1', rate: '1gbit' }]);
    expect(r['routing']).toEqual({ mode: 'babeld', meshAddress4: '10.99.0.3', accept4: '10.99.0.0/16' });
    const parsed = parseConfig(r, '/d');
    expect(parsed.routing.gateway).toEqual({ ipv4: true, ipv6: true });
    expect(parsed.routing.masquerade).toBe(true);
  });

  it('maps device ids 1..65535 into 10.99.0.0/16, and no others', () => {
    const d = (id: number) => ({ id, name: 'x', type: 'prouter', services: [], position: null });
    expect([1, 255, 256, 300, 65535].map((id) => simMeshAddress4(d(id)))).toEqual(['10.99.0.1', '10.99.0.255', '10.99.1.0', '10.99.1.44', '10.99.255.255']);
    expect([0, 65536, -1].map((id) => simMeshAddress4(d(id)))).toEqual([undefined, undefined, undefined]);
  });

  it('every agent of every scenario gets a config the agent accepts, with its own mesh address', () => {
    for (const file of files) {
      const topo = scenario(file);
      const seen = new Set<string>();
      for (const d of topo.devices.filter(runsAgent)) {
        const c = parseConfig(nodeConfig(topo, d, `/run/${d.name}`), '/');
        expect(c.routing.mode, `${file} ${d.name}`).toBe('babeld');
        expect(seen.has(c.routing.meshAddress4!), `${file}: ${d.name}'s mesh address is unique`).toBe(false);
        seen.add(c.routing.meshAddress4!);
      }
    }
  });

  it('a link bandwidth becomes the rate; a lone node meshes on lo', () => {
    const demo = nodeConfig(scenario('demo.xml'), 'R', '/d');
    expect(demo['uplinks']).toEqual([{ interface: 'eth1', rate: 20_000_000 }]);
    const lone = parseScenario('<scenario><devices><device id="1" name="solo" type="prouter" class=""/></devices></scenario>');
    expect(nodeConfig(lone, 'solo', '/d')['interfaces']).toEqual(['lo']);
  });

  it('overlays: the scenario\'s own, then the run\'s, each global then per node; routing can be turned off', () => {
    const withOwn: Topology = { ...t, overlay: { share: 0.5, nodes: { R: { share: 1, routing: { masquerade: false } } } } };
    expect(nodeConfig(withOwn, 'A', '/d')['share']).toBe(0.5);
    expect(nodeConfig(withOwn, 'R', '/d')['share']).toBe(1);
    expect(nodeConfig(withOwn, 'R', '/d')['routing']).toEqual({ mode: 'babeld', meshAddress4: '10.99.0.3', accept4: MESH4_PREFIX, masquerade: false });
    const off = nodeConfig(withOwn, 'R', '/d', { routing: { mode: 'off' }, nodes: { R: { share: 0.25 } } });
    expect(off['share']).toBe(0.25);
    expect((off['routing'] as { mode: string }).mode).toBe('off');
    expect(parseConfig(off, '/').routing.mode).toBe('off');
  });

  it('refuses a host and an unknown device, clearly', () => {
    expect(() => nodeConfig(t, 'U', '/d')).toThrow(expect.objectContaining({ code: 'ENOAGENT', message: 'device U is of type "host": it runs no agent' }));
    expect(() => nodeConfig(t, 'Z', '/d')).toThrow(expect.objectContaining({ code: 'ENONODE', message: expect.stringContaining('no device "Z" (devices: A, B, R, M, U)') }));
  });

  it('agentConfig (sim up) is nodeConfig with the run\'s control socket', () => {
    const d = t.devices.find((x) => x.name === 'B')!;
    expect(agentConfig(t, d, '/d', '/s.sock', { share: 1 })).toEqual({ ...nodeConfig(t, d, '/d', { share: 1 }), controlSocket: '/s.sock' });
  });
});

describe('nodeSetup', () => {
  const t = scenario('uplink.xml');
  const setup = (name: string, overlay: Record<string, unknown> | null = null) => {
    const d = t.devices.find((x) => x.name === name)!;
    return nodeSetup(t, d, runsAgent(d) ? nodeConfig(t, d, '', overlay) : null);
  };

  it('a gateway gets on-link default routes out of its uplink; other agents nothing', () => {
    expect(setup('R')).toEqual(['route replace 0.0.0.0/0 dev eth1', 'route replace ::/0 dev eth1']);
    expect(setup('A')).toEqual([]);
    expect(setup('R', { routing: { mode: 'off' } })).toEqual([]);
    expect(setup('R', { nodes: { R: { routing: { gateway: { ipv4: true, ipv6: false } } } } })).toEqual(['route replace 0.0.0.0/0 dev eth1']);
    expect(setup('R', { nodes: { R: { routing: { gateway: false } } } })).toEqual([]);
    // An overlay naming an uplink the device does not have: no route to a missing interface.
    expect(setup('R', { nodes: { R: { uplinks: [{ interface: 'wan9', rate: '1mbit' }] } } })).toEqual([]);
  });

  it('a DefaultRoute host behind an uplink routes via its router; one on the mesh gets none', () => {
    expect(setup('U')).toEqual(['route replace 0.0.0.0/0 via 10.0.1.2', 'route replace ::/0 via 2001:db8:1::2']);
    expect(setup('M')).toEqual([]);
  });

  it('planRun puts the set-up of each node in routeBatches', () => {
    const plan = planRun(t, 't1');
    expect(plan.routeBatches).toEqual([
      { namespace: 't1-R', lines: ['route replace 0.0.0.0/0 dev eth1', 'route replace ::/0 dev eth1'] },
      { namespace: 't1-U', lines: ['route replace 0.0.0.0/0 via 10.0.1.2', 'route replace ::/0 via 2001:db8:1::2'] },
    ]);
    expect(planRun(t, 't1', { routing: { mode: 'off' } }).routeBatches.map((b) => b.namespace)).toEqual(['t1-U']);
    expect(planRun(scenario('lan-5.xml'), 't1').routeBatches).toEqual([]);
  });
});

describe('the scenario\'s own overlay (session_metadata "scrooge.overlay")', () => {
  const base = '<devices><device id="1" name="a" type="prouter" class=""/></devices>';
  it('is read as JSON, entities decoded', () => {
    const t = parseScenario(`<scenario>${base}<session_metadata><configuration name="canvas" value="{}"/><configuration name="scrooge.overlay" value="{&quot;routing&quot;: {&quot;mode&quot;: &quot;off&quot;}}"/></session_metadata></scenario>`);
    expect(t.overlay).toEqual({ routing: { mode: 'off' } });
    expect((nodeConfig(t, 'a', '/d')['routing'] as { mode: string }).mode).toBe('off');
  });
  it('is absent when there is none, and bad JSON is a clear error', () => {
    expect('overlay' in parseScenario(`<scenario>${base}</scenario>`)).toBe(false);
    expect(() => parseScenario(`<scenario>${base}<session_metadata><configuration name="scrooge.overlay" value="{nope"/></session_metadata></scenario>`)).toThrow(
      expect.objectContaining({ code: 'ESCENARIO', message: expect.stringContaining('<configuration name="scrooge.overlay">: the value of scrooge.overlay is not valid JSON') }),
    );
    expect(() => parseScenario(`<scenario>${base}<session_metadata><configuration name="scrooge.overlay" value="[1]"/></session_metadata></scenario>`)).toThrow(/must be a JSON object/);
  });
});

describe('the CORE hooks', () => {
  it.each(files)('%s: its hook is what the generator writes, starting each agent and setting up each host', (file) => {
    const text = readFileSync(SCENARIOS + file, 'utf8');
    const t = parseScenario(text);
    expect(currentHook(text)).toBe(hookScript(t));
    expect(withHooks(text, t)).toBe(text);
    const calls = hookScript(t).split('\n').filter((l) => /^(start_agent|set_up) /.test(l));
    expect(calls).toEqual(t.devices.map((d) => `${runsAgent(d) ? 'start_agent' : 'set_up'} ${d.name}`));
  });

  it('the hook is valid POSIX sh and keeps the UNTESTED IN CORE note', () => {
    const script = hookScript(scenario('uplink.xml'));
    expect(script).toContain('UNTESTED IN CORE');
    execFileSync('sh', ['-n'], { input: script });
  });

  it('withHooks adds a section to a file without one and replaces an old one, touching nothing else', () => {
    const t = scenario('two-nodes.xml');
    const bare = '<?xml version="1.0"?>\n<scenario name="x">\n  <devices/>\n</scenario>\n';
    const added = withHooks(bare, t);
    expect(added.startsWith('<?xml version="1.0"?>\n<scenario name="x">\n  <devices/>\n  <session_hooks>\n')).toBe(true);
    expect(added.endsWith('</session_hooks>\n</scenario>\n')).toBe(true);
    const old = bare.replace('</scenario>', '  <session_hooks>\n    <hook name="old.sh" state="4"><![CDATA[echo]]></hook>\n  </session_hooks>\n</scenario>');
    expect(withHooks(old, t)).toBe(added);
    expect(withHooks(added, t)).toBe(added);
  });
});

describe('scrooge sim node-config / node-setup / hooks', () => {
  it('print what the generator gives a node; hooks --check passes on core-scenarios and rewrites a stale file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'simcfg-'));
    try {
      const overlay = join(dir, 'o.json');
      writeFileSync(overlay, JSON.stringify({ nodes: { R: { share: 1 } } }));
      const t = scenario('uplink.xml');
      const c = await cli('sim', 'node-config', SCENARIOS + 'uplink.xml', 'R', '--dir', dir, '--overlay', overlay);
      expect(c.code).toBe(0);
      expect(JSON.parse(c.out)).toEqual(nodeConfig(t, 'R', dir, { nodes: { R: { share: 1 } } }));
      const s = await cli('sim', 'node-setup', SCENARIOS + 'uplink.xml', 'U');
      expect(s.out).toBe('route replace 0.0.0.0/0 via 10.0.1.2\nroute replace ::/0 via 2001:db8:1::2\n');
      expect((await cli('sim', 'node-setup', SCENARIOS + 'uplink.xml', 'A')).out).toBe('');
      const host = await cli('sim', 'node-config', SCENARIOS + 'uplink.xml', 'U', '--dir', dir);
      expect(host.code).toBe(1);
      expect(host.err).toMatch(/device U is of type "host": it runs no agent/);
      expect((await cli('sim', 'node-config', SCENARIOS + 'uplink.xml', 'R')).err).toMatch(/--dir DIR is required/);

      const check = await cli('sim', 'hooks', '--check', ...files.map((f) => SCENARIOS + f));
      expect(check.code, check.err).toBe(0);
      const stale = join(dir, 'stale.xml');
      const text = readFileSync(SCENARIOS + 'uplink.xml', 'utf8');
      writeFileSync(stale, text.replace('start_agent R\n', ''));
      expect((await cli('sim', 'hooks', '--check', stale)).code).toBe(1);
      expect((await cli('sim', 'hooks', stale)).code).toBe(0);
      expect(readFileSync(stale, 'utf8')).toBe(text);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the harness probe timeout', () => {
  it('is the base on a plain machine and a thirtieth of a longer readiness budget on a slow one', () => {
    expect(probeTimeoutMs(2000, NaN)).toBe(2000);
    expect(probeTimeoutMs(2000, 0)).toBe(2000);
    expect(probeTimeoutMs(2000, 20_000)).toBe(2000);
    expect(probeTimeoutMs(3000, 600_000)).toBe(20_000);
  });
});

describe('the agents\' environment', () => {
  it('is the sim\'s less NODE_EXTRA_CA_CERTS (a CA bundle parsed at every start, for no TLS), and the sim\'s own is left as it was', () => {
    const env = { PATH: '/usr/bin', NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt', NODE_OPTIONS: '--max-old-space-size=64', SCROOGE_V8_FLAGS: '' };
    expect(agentEnv(env)).toEqual({ PATH: '/usr/bin', NODE_OPTIONS: '--max-old-space-size=64', SCROOGE_V8_FLAGS: '' });
    expect(env.NODE_EXTRA_CA_CERTS).toBe('/etc/ssl/certs/ca-certificates.crt');
    expect(agentEnv({ PATH: '/bin' })).toEqual({ PATH: '/bin' });
  });
});
