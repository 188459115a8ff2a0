import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type SimPlan, IFNAME_MAX, describeUnapplied, lossThreshold, planRun, validateRunId } from '../../src/sim/plan.js';
import type { SimRun } from '../../src/sim/run.js';
import { type Topology, parseScenario } from '../../src/sim/scenario.js';
import { runStatus } from '../../src/sim/status.js';
import { waitForTunnels } from '../../src/sim/wait.js';

const SCENARIOS = fileURLToPath(new URL('../../core-scenarios/', import.meta.url));
const REFERENCE = fileURLToPath(new URL('../fixtures/core/', import.meta.url));
const scenario = (name: string) => parseScenario(readFileSync(SCENARIOS + name, 'utf8'));
const xml = (body: string) => parseScenario(`<scenario>${body}</scenario>`);
const dev = (id: number, name: string, type = 'prouter') => `<device id="${id}" name="${name}" type="${type}" class=""><position x="${100 * id}" y="100"/></device>`;
/** Two devices joined directly, with `options` on the link. */
const direct = (options: string) =>
  xml(`<devices>${dev(1, 'a')}${dev(2, 'b')}</devices><links><link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/>${options}</link></links>`);
/** Device `a` attached to switch `s`, with `options` on the link. */
const onSwitch = (options: string, type = 'SWITCH', deviceType = 'prouter') =>
  xml(`<networks><network id="9" name="s" type="${type}"/></networks><devices>${dev(1, 'a', deviceType)}</devices><links><link node1="1" node2="9"><iface1 id="0"/>${options}</link></links>`);

const batch = (list: SimPlan['ipBatches'], ns: string) => list.find((b) => b.namespace === ns)?.lines ?? [];
const ruleset = (plan: SimPlan, ns: string) => plan.nftRulesets.find((r) => r.namespace === ns)?.ruleset ?? '';

describe('run ids', () => {
  it.each(['a', 'x1', 't0a9f3c', 'abcdefghij'])('accepts %s', (id) => expect(() => validateRunId(id)).not.toThrow());
  it.each(['', 'A1', 'a-b', 'a_b', 'abcdefghijk', 'a b', '../x'])('rejects "%s"', (id) => {
    expect(() => validateRunId(id)).toThrow(expect.objectContaining({ code: 'ERUNID' }));
  });
});

describe('planRun on two-nodes.xml', () => {
  const plan = planRun(scenario('two-nodes.xml'), 't1');
  it('creates namespaces, sysctls and the veth pair in one host batch, sysctls first', () => {
    expect(plan.hostBatch).toEqual([
      'netns add t1-n1',
      'netns add t1-n2',
      'netns exec t1-n1 sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1',
      'netns exec t1-n2 sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1',
      'link add eth0 index 10 netns t1-n1 type veth peer name eth0 index 11 netns t1-n2',
    ]);
  });
  it('configures each namespace in one ip batch: MAC, addresses (IPv6 nodad), up', () => {
    expect(batch(plan.ipBatches, 't1-n2')).toEqual([
      'link set dev lo up',
      'link set dev eth0 address 00:00:00:aa:00:01',
      'address add 10.0.0.3/24 dev eth0',
      'address add 2001:db8::3/64 dev eth0 nodad',
      'link set dev eth0 up',
    ]);
    expect(plan.tcBatches).toEqual([]);
    expect(plan.nftRulesets).toEqual([]);
    expect(plan.unapplied).toEqual([]);
  });
});

describe('planRun is deterministic and survives run.json', () => {
  const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.xml'));
  it.each(files)('%s', (file) => {
    const t = scenario(file);
    const again = JSON.parse(JSON.stringify(t)) as Topology; // as stored in run.json
    expect(planRun(again, 'r1')).toEqual(planRun(t, 'r1'));
    expect(JSON.stringify(planRun(scenario(file), 'r1'))).toBe(JSON.stringify(planRun(t, 'r1')));
  });
});

describe('names fit the kernel', () => {
  const files = [
    ...readdirSync(SCENARIOS)
      .filter((f) => f.endsWith('.xml'))
      .map((f) => SCENARIOS + f),
    REFERENCE + 'sample1.xml',
    REFERENCE + 'tutorial1-scenario.xml',
  ];
  it.each(files)('%s: interface names <= 15 bytes and unique per namespace; namespaces unique', (file) => {
    const plan = planRun(parseScenario(readFileSync(file, 'utf8')), 'abcdefghij');
    const ends = plan.veths.flatMap((v) => [v.a, v.b]);
    for (const e of ends) expect(e.ifname.length).toBeLessThanOrEqual(IFNAME_MAX);
    const keys = ends.map((e) => `${e.namespace}/${e.ifname}`);
    expect(new Set(keys).size).toBe(keys.length);
    const names = plan.namespaces.map((n) => n.name);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n.startsWith('abcdefghij-')).toBe(true);
    // Veth ends have distinct, explicit ifindexes (see VETH_INDEX_BASE).
    const indexes = plan.hostBatch.flatMap((l) => [...l.matchAll(/ index (\d+) /g)].map((m) => m[1]));
    expect(indexes).toHaveLength(2 * plan.veths.length);
    expect(new Set(indexes).size).toBe(indexes.length);
  });

  const tooLong = 'x'.repeat(33);
  it.each([
    ['a 33-character device name', xml(`<devices>${dev(1, tooLong)}</devices>`), /device name "x{33}" cannot be used/],
    ['a device name with a slash', xml(`<devices>${dev(1, 'a/b')}</devices>`), /device name "a\/b" cannot be used/],
    ['a network name starting with a dash', xml(`<networks><network id="1" name="-s" type="SWITCH"/></networks>`), /network name "-s" cannot be used/],
    [
      'a 16-character interface name',
      xml(`<devices>${dev(1, 'a')}${dev(2, 'b')}</devices><links><link node1="1" node2="2"><iface1 id="0" name="abcdefghijklmnop"/><iface2 id="0"/></link></links>`),
      /interface name "abcdefghijklmnop" of a cannot be used/,
    ],
    [
      'a bridge port name over 15 bytes (huge ids)',
      xml(`<networks><network id="1" name="s" type="SWITCH"/></networks><devices>${dev(12345678, 'a')}</devices><links><link node1="12345678" node2="1"><iface1 id="1234567"/></link></links>`),
      /interface name "p12345678i1234567" of s cannot be used/,
    ],
  ] as const)('rejects %s', (_what, topology, message) => {
    expect(() => planRun(topology, 't1')).toThrow(expect.objectContaining({ code: 'ESCENARIO', message: expect.stringMatching(message) }));
  });
});

describe('sysctls', () => {
  it.each([
    ['prouter', true],
    ['router', true],
    ['mdr', true],
    ['PC', false],
    ['host', false],
  ] as const)('%s: forwarding %s; accept_dad 0 always', (type, forwarding) => {
    const plan = planRun(xml(`<devices>${dev(1, 'a', type)}</devices>`), 't1');
    const keys = plan.namespaces[0]!.sysctls.map(([k]) => k);
    expect(keys).toContain('net.ipv6.conf.default.accept_dad');
    expect(keys.includes('net.ipv4.ip_forward')).toBe(forwarding);
    expect(keys.includes('net.ipv6.conf.all.forwarding')).toBe(forwarding);
  });
  it('runs every sysctl before the first interface is created', () => {
    const plan = planRun(scenario('lan-20.xml'), 't1');
    const lastSysctl = plan.hostBatch.findLastIndex((l) => l.includes(' sysctl '));
    const firstLink = plan.hostBatch.findIndex((l) => l.startsWith('link add'));
    expect(lastSysctl).toBeGreaterThan(0);
    expect(lastSysctl).toBeLessThan(firstLink);
    expect(plan.hostBatch.filter((l) => l.startsWith('netns add'))).toHaveLength(21);
  });
  it('turns IPv6 off in a network namespace (the bridge is L2 only)', () => {
    const plan = planRun(scenario('lan-5.xml'), 't1');
    expect(plan.namespaces.find((n) => n.name === 't1-sw')!.sysctls).toContainEqual(['net.ipv6.conf.default.disable_ipv6', '1']);
  });
});

describe('bridges', () => {
  it.each([
    ['SWITCH', 'link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0'],
    ['HUB', 'link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0 ageing_time 0'],
    ['WIRELESS_LAN', 'link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0'],
  ] as const)('%s: %s, ports enslaved, bridge up last', (type, line) => {
    const plan = planRun(onSwitch('', type), 't1');
    expect(plan.hostBatch).toContain('link add eth0 index 10 netns t1-a type veth peer name p1i0 index 11 netns t1-s');
    expect(batch(plan.ipBatches, 't1-s')).toEqual(['link set dev lo up', line, 'link set dev p1i0 master br0 up', 'link set dev br0 up']);
  });
});

describe('bandwidth: htb on the egress of both ends', () => {
  it('shapes both veth ends of a direct link (bw-10m.xml)', () => {
    const plan = planRun(scenario('bw-10m.xml'), 't1');
    const expected = (dev: string) => [
      `qdisc replace dev ${dev} root handle 1: htb default 1`,
      `class replace dev ${dev} parent 1: classid 1:1 htb rate 10000000bit ceil 10000000bit quantum 125000`,
    ];
    expect(plan.tcBatches).toEqual([
      { namespace: 't1-n1', lines: expected('eth0') },
      { namespace: 't1-n2', lines: expected('eth0') },
    ]);
  });
  it('shapes the device interface and the bridge port of a device-network link', () => {
    const plan = planRun(onSwitch('<options bandwidth="2000000"/>', 'SWITCH', 'host'), 't1');
    expect(plan.tcBatches.map((b) => [b.namespace, b.lines[1]])).toEqual([
      ['t1-a', 'class replace dev eth0 parent 1: classid 1:1 htb rate 2000000bit ceil 2000000bit quantum 25000'],
      ['t1-s', 'class replace dev p1i0 parent 1: classid 1:1 htb rate 2000000bit ceil 2000000bit quantum 25000'],
    ]);
  });
  it("leaves an agent's uplink to the agent (it shapes to the link's bandwidth itself)", () => {
    // A lone agent on the switch: its interface is an uplink, not a mesh interface.
    const plan = planRun(onSwitch('<options bandwidth="2000000"/>'), 't1');
    expect(plan.tcBatches.map((b) => b.namespace)).toEqual(['t1-s']);
    expect(plan.notes.join('\n')).toMatch(/a:eth0: bandwidth 2000000 bit\/s is shaped by the agent/);
  });
  it('turns buffer into the queue limit', () => {
    const plan = planRun(direct('<options bandwidth="1000000" buffer="50"/>'), 't1');
    expect(plan.tcBatches[0]!.lines).toContain('qdisc replace dev eth0 parent 1:1 handle 10: pfifo limit 50');
    expect(plan.unapplied).toEqual([]);
  });
  it('shapes each direction of a unidirectional link by its own entry', () => {
    const t = xml(
      `<devices>${dev(1, 'a')}${dev(2, 'b')}</devices><links>` +
        `<link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/><options bandwidth="1000000" unidirectional="1"/></link>` +
        `<link node1="2" node2="1"><iface1 id="0"/><iface2 id="0"/><options bandwidth="0" unidirectional="1"/></link></links>`,
    );
    expect(planRun(t, 't1').tcBatches.map((b) => b.namespace)).toEqual(['t1-a']);
  });
  it('shapes WLAN members with basic_range bandwidth', () => {
    const plan = planRun(scenario('wlan-3.xml'), 't1');
    expect(plan.tcBatches.map((b) => b.namespace)).toEqual(['t1-n1', 't1-n2', 't1-n3', 't1-wlan']);
    expect(batch(plan.tcBatches, 't1-wlan').filter((l) => l.startsWith('class'))).toHaveLength(3);
  });
});

describe('loss: nftables netdev ingress on the receiving end', () => {
  it.each([
    [10, 100_000],
    [0.5, 5000],
    [100, 1_000_000],
  ])('%f%% -> numgen random mod 1000000 < %i', (loss, k) => {
    expect(lossThreshold(loss)).toBe(k);
  });
  it('drops on both ends of a lossy link, so each direction loses loss%', () => {
    const plan = planRun(onSwitch('<options loss="10"/>'), 't1');
    expect(ruleset(plan, 't1-a')).toBe(
      'table netdev scrooge_sim {\n' +
        '  chain loss0 {\n' +
        '    type filter hook ingress device "eth0" priority 0; policy accept;\n' +
        '    numgen random mod 1000000 < 100000 drop\n' +
        '  }\n' +
        '}\n',
    );
    expect(ruleset(plan, 't1-s')).toContain('hook ingress device "p1i0"');
  });
  it('drops only what leaves the lossy end of a unidirectional link, where it arrives', () => {
    const t = xml(
      `<devices>${dev(1, 'a')}${dev(2, 'b')}</devices><links>` +
        `<link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/><options loss="20" unidirectional="1"/></link>` +
        `<link node1="2" node2="1"><iface1 id="0"/><iface2 id="0"/><options loss="0" unidirectional="1"/></link></links>`,
    );
    expect(planRun(t, 't1').nftRulesets.map((r) => r.namespace)).toEqual(['t1-b']);
  });
});

describe('WLAN range filtering', () => {
  it('wlan-3: accepts frames only between ports in range, drops the rest', () => {
    const plan = planRun(scenario('wlan-3.xml'), 't1');
    const rules = ruleset(plan, 't1-wlan');
    expect(rules).toContain('table bridge scrooge_sim');
    expect(rules).toContain('type filter hook forward priority 0; policy drop;');
    for (const pair of ['"p1i0" . "p2i0"', '"p2i0" . "p1i0"', '"p2i0" . "p3i0"', '"p3i0" . "p2i0"']) expect(rules).toContain(pair);
    expect(rules).not.toContain('"p1i0" . "p3i0"');
    expect(rules).not.toContain('"p3i0" . "p1i0"');
  });
  it('a WLAN without basic_range drops everything and says so', () => {
    const t = xml(
      `<networks><network id="9" name="w" type="WIRELESS_LAN"/></networks><devices>${dev(1, 'a')}${dev(2, 'b')}</devices>` +
        `<links><link node1="9" node2="1"><iface2 id="0"/></link><link node1="9" node2="2"><iface2 id="0"/></link></links>`,
    );
    const plan = planRun(t, 't1');
    expect(ruleset(plan, 't1-w')).not.toContain('accept\n');
    expect(plan.notes).toEqual(['w: WIRELESS_LAN without a basic_range configuration passes no packets (as in CORE)']);
  });
});

describe('options this kernel cannot apply are listed once', () => {
  it('sample1.xml: the delays of two links and of the WLAN', () => {
    const plan = planRun(parseScenario(readFileSync(REFERENCE + 'sample1.xml', 'utf8')), 't1');
    expect(plan.unapplied.map(describeUnapplied)).toEqual([
      'delay 25000 us on n3:eth1 <-> n2:eth0',
      'delay 50000 us on n2:eth2 <-> n15:eth0',
      'delay 50000 us on wlan10 (basic_range)',
    ]);
  });
  it.each([
    ['<options delay="100" jitter="20" dup="1.5"/>', ['delay 100 us on a:eth0 <-> b:eth0', 'jitter 20 us on a:eth0 <-> b:eth0', 'dup 1.5% on a:eth0 <-> b:eth0']],
    ['<options buffer="30"/>', ['buffer 30 packets (no shaping to queue in) on a:eth0 <-> b:eth0']],
    ['<options delay="0" bandwidth="0" loss="0.0" dup="0" jitter="0" unidirectional="0" buffer="0"/>', []],
  ] as const)('%s', (options, expected) => {
    expect(planRun(direct(options), 't1').unapplied.map(describeUnapplied)).toEqual(expected);
  });
  it('names the direction of a one-way option', () => {
    const t = xml(
      `<devices>${dev(1, 'a')}${dev(2, 'b')}</devices><links>` +
        `<link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/><options delay="7" unidirectional="1"/></link>` +
        `<link node1="2" node2="1"><iface1 id="0"/><iface2 id="0"/><options delay="0" unidirectional="1"/></link></links>`,
    );
    expect(planRun(t, 't1').unapplied.map(describeUnapplied)).toEqual(['delay 7 us on a:eth0 -> b:eth0']);
  });
});

describe('the pure core stays pure', () => {
  // scenario.ts and plan.ts must run in a unit test with no system underneath (STYLE.md).
  it.each(['scenario.ts', 'plan.ts', 'status.ts'])('src/sim/%s imports no fs, processes, sockets or timers', (file) => {
    const source = readFileSync(fileURLToPath(new URL(`../../src/sim/${file}`, import.meta.url)), 'utf8');
    const imports = [...source.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    for (const m of imports) expect(m).not.toMatch(/^(node:)?(fs|fs\/promises|child_process|net|dgram|timers|os)$|^execa$/);
    expect(source).not.toMatch(/\b(setTimeout|setInterval|Date\.now|process\.)/);
  });
});

describe('sim wait and sim status (pure parts, fake clock)', () => {
  const run = (agents = true): SimRun => {
    const t = scenario('uplink.xml');
    return {
      version: 1,
      id: 'w1',
      scenarioPath: '/x/uplink.xml',
      createdAt: '2026-01-01T00:00:00.000Z',
      state: 'up',
      topology: t,
      namespaces: planRun(t, 'w1').namespaces.map((n) => n.name),
      nodes: Object.fromEntries(t.devices.map((d) => [d.name, `w1-${d.name}`])),
      agents: { enabled: agents, configOverlay: null, pids: { A: { pid: 41, startedAt: '' }, B: { pid: 42, startedAt: '' } } },
      unapplied: [],
      notes: [],
    };
  };
  const clock = () => {
    let t = 0;
    return { now: () => t, sleep: async (ms: number) => void (t += ms) };
  };

  it('waits until every agent pair has a handshake seen from both sides', async () => {
    let polls = 0;
    const peers: Record<string, string[]> = { A: ['B', 'R'], B: ['A', 'R'], R: ['A'] };
    const result = await waitForTunnels(run(), 10_000, {
      ...clock(),
      status: async (_run, node) => {
        if (node === 'R') polls++;
        return { handshakeWith: node === 'R' && polls >= 3 ? ['A', 'B'] : (peers[node] ?? []) };
      },
    });
    expect(result).toEqual({
      ok: true,
      seconds: 0.2, // third poll, 100 ms apart
      sinceAgentsStarted: null,
      pairs: [
        { a: 'A', b: 'B', ok: true },
        { a: 'A', b: 'R', ok: true },
        { a: 'B', b: 'R', ok: true },
      ],
    });
  });

  it('times out naming what is missing; an agent that cannot answer is reported, not fatal', async () => {
    const result = await waitForTunnels(run(), 2000, {
      ...clock(),
      status: async (_run, node) => {
        if (node === 'B') throw new Error('control socket not found');
        return { handshakeWith: node === 'A' ? ['R'] : ['A'] };
      },
    });
    expect(result.ok).toBe(false);
    expect(result.seconds).toBe(2);
    expect(result.pairs.filter((p) => !p.ok)).toEqual([
      { a: 'A', b: 'B', ok: false, missing: 'A has no completed handshake with B; B: control socket not found' },
      { a: 'B', b: 'R', ok: false, missing: 'B: control socket not found; R has no completed handshake with B' },
    ]);
  });

  it('refuses a run started with --no-agents', async () => {
    await expect(waitForTunnels(run(false), 1000, { ...clock(), status: async () => ({ handshakeWith: [] }) })).rejects.toMatchObject({ code: 'ENOAGENTS' });
  });

  it('status: nodes with namespaces, agents, pids and interface roles', () => {
    const s = runStatus(run(), { namespaces: ['w1-A', 'w1-R', 'w1-mesh'], alive: (pid) => pid === 41 });
    expect(s.nodes.map((n) => [n.name, n.namespaceExists, n.agent, n.pid, n.alive])).toEqual([
      ['A', true, true, 41, true],
      ['B', false, true, 42, false],
      ['R', true, true, null, null],
      ['M', false, false, null, null],
      ['U', false, false, null, null],
    ]);
    expect(s.nodes.find((n) => n.name === 'R')!.interfaces).toEqual([
      { name: 'eth0', role: 'mesh', segment: 'mesh', mac: '00:00:00:aa:00:02', addresses: ['10.0.0.4/24', '2001:db8::4/64'] },
      { name: 'eth1', role: 'uplink', segment: 'R:eth1-U:eth0', mac: '00:00:00:aa:00:04', addresses: ['10.0.1.2/24', '2001:db8:1::2/64'] },
    ]);
    expect(s.networks).toEqual([{ name: 'mesh', type: 'SWITCH', namespace: 'w1-mesh', namespaceExists: true, members: ['A:eth0', 'B:eth0', 'R:eth0', 'M:eth0'], config: '' }]);
  });
});
