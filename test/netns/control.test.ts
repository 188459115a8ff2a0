/**
 * Bad requests on the control socket change nothing (issue 10, defects 1 and 2): every value is
 * checked by the same schema as the config file; a bad one is refused with one line naming the
 * field, nothing is stored in settings.json, and the kernel's classes stay as they were. On
 * uplink.xml, whose router R shapes a real uplink, so a priority reaches real tc classes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/agent/control.js';
import { agentTunnelStatus } from '../../src/sim/agents.js';
import { downRun, upRun } from '../../src/sim/build.js';
import { controlSocketPath, loadRun, logsDir, nodeDir, type SimRun } from '../../src/sim/run.js';
import { waitForTunnels } from '../../src/sim/wait.js';
import { inNs, isRoot, newRunId, SCENARIOS, step } from './lib.js';

describe.skipIf(!isRoot)('control socket: bad requests change nothing (netns, root)', () => {
  let run: SimRun;

  beforeAll(async () => {
    const id = newRunId();
    step(id, 'sim up uplink.xml with agents, R shaping a 20 Mbit/s uplink');
    await upRun({ scenarioPath: join(SCENARIOS, 'uplink.xml'), id, agents: true, configOverlay: { nodes: { R: { uplinks: [{ interface: 'eth1', rate: '20mbit' }] } } } });
    run = await loadRun(id);
    const waited = await waitForTunnels(run, 30_000, { status: agentTunnelStatus });
    if (!waited.ok) throw new Error(`tunnels not up: ${JSON.stringify(waited.pairs.filter((p) => !p.ok))}`);
  }, 60_000);

  afterAll(async () => {
    if (run) await downRun(run.id);
  });

  const settingsFile = () => join(nodeDir(run.id, 'R'), 'state', 'settings.json');
  const settingsText = () => {
    try {
      return readFileSync(settingsFile(), 'utf8');
    } catch {
      return '(none)';
    }
  };
  const classes = async () => (await inNs(run.nodes['R']!, ['tc', 'class', 'show', 'dev', 'eth1'])).split('\n').sort().join('\n');

  it.each([
    ['priority', 'abc'], ['priority', 0], ['priority', -1], ['priority', 1e9], ['priority', 2.5], ['priority', null],
    ['cap', 'fast'], ['cap', -5], ['alias', '9lives'], ['alias', 42],
  ])('%s %j is refused naming the field; nothing stored, no class changed', async (field, value) => {
    const socket = controlSocketPath(run.id, 'R');
    const beforeSettings = settingsText();
    const beforeClasses = await classes();
    const request = controlRequest(socket, 'set', { neighbor: run.agents.keys!['A'], [field]: value });
    await expect(request).rejects.toThrow(new RegExp(`^${field}: `));
    expect(settingsText()).toBe(beforeSettings);
    expect(await classes()).toBe(beforeClasses);
    // Still answering, nothing retried in a loop: the log holds no traffic error.
    const log = readFileSync(join(logsDir(run.id), 'R.log'), 'utf8');
    expect(log).not.toMatch(/applying traffic control failed/);
  });

  it.each([[2], [0], [-0.5], ['half']])('share %j is refused naming the field', async (value) => {
    const before = settingsText();
    await expect(controlRequest(controlSocketPath(run.id, 'R'), 'set', { share: value })).rejects.toThrow(/^share: /);
    expect(settingsText()).toBe(before);
  });

  it('a request for an unknown neighbor, or with an unknown field, is refused', async () => {
    const socket = controlSocketPath(run.id, 'R');
    await expect(controlRequest(socket, 'set', { neighbor: 'nobody', priority: 2 })).rejects.toThrow(/no neighbor "nobody"/);
    await expect(controlRequest(socket, 'set', { neighbor: run.agents.keys!['A'], prio: 2 })).rejects.toThrow(/unknown field "prio"/);
    await expect(controlRequest(socket, 'frobnicate')).rejects.toThrow(/does not know the command "frobnicate"/);
  });

  it('status {stats: false} answers from what the agent knows (no kernel counter read); an unknown field is refused', async () => {
    const socket = controlSocketPath(run.id, 'R');
    type Status = { pid: number; tunnels: number; traffic: { backend: string; untunneledDrops: number | null } };
    const full = (await controlRequest(socket, 'status')) as Status;
    const cheap = (await controlRequest(socket, 'status', { stats: false })) as Status;
    expect(typeof full.traffic.untunneledDrops).toBe('number');
    expect(cheap.traffic).toEqual({ backend: full.traffic.backend, untunneledDrops: null, discoveryDrops: null });
    expect(cheap.pid).toBe(full.pid);
    expect(cheap.tunnels).toBe(full.tunnels);
    await expect(controlRequest(socket, 'status', { stat: false })).rejects.toThrow(/unknown field "stat"/);
  });

  it('a good change still works and is stored', async () => {
    const socket = controlSocketPath(run.id, 'R');
    const r = (await controlRequest(socket, 'set', { neighbor: run.agents.keys!['A'], priority: 3 })) as { priority: number };
    expect(r.priority).toBe(3);
    expect(JSON.parse(settingsText()).neighbors[run.agents.keys!['A']!]).toEqual({ priority: 3 });
  });
});
