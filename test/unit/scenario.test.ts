import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { withHooks } from '../../src/sim/nodeconfig.js';
import {
  type Topology,
  agentPairs,
  deviceByName,
  hearingPairs,
  interfaceRole,
  isIPv6,
  parseScenario,
  runsAgent,
  segments,
} from '../../src/sim/scenario.js';

// Files written by CORE itself (copied from ../shared/reference/core so CI has them).
const REFERENCE = fileURLToPath(new URL('../fixtures/core/', import.meta.url));
const SCENARIOS = fileURLToPath(new URL('../../core-scenarios/', import.meta.url));
const reference = (name: string) => parseScenario(readFileSync(REFERENCE + name, 'utf8'));
const scenario = (name: string) => parseScenario(readFileSync(SCENARIOS + name, 'utf8'));

/** A scenario with the given body inside <scenario>. */
const xml = (body: string) => `<?xml version="1.0"?><scenario>${body}</scenario>`;
const dev = (id: number, name: string, type = 'prouter', extra = '') =>
  `<device id="${id}" name="${name}" type="${type}" class="" ${extra}><position x="${100 * id}" y="100"/></device>`;
const twoDevices = `<devices>${dev(1, 'a')}${dev(2, 'b')}</devices>`;

const pairNames = (t: Topology, segmentId: string) =>
  hearingPairs(segments(t).find((s) => s.id === segmentId)!)
    .map(([a, b]) => [a.device.name, b.device.name].sort().join('-'))
    .sort();

describe('reference files written by CORE', () => {
  it('parses tutorial1-scenario.xml (two PCs on a direct link)', () => {
    const t = reference('tutorial1-scenario.xml');
    expect(t.networks).toEqual([]);
    expect(t.devices).toEqual([
      { id: 1, name: 'n1', type: 'PC', services: ['DefaultRoute'], position: { x: 250, y: 250 } },
      { id: 2, name: 'n2', type: 'PC', services: ['DefaultRoute'], position: { x: 500, y: 250 } },
    ]);
    expect(t.links).toHaveLength(1);
    expect(t.links[0]).toMatchObject({
      node1: 1,
      node2: 2,
      iface1: { id: 0, name: 'eth0', mac: '00:00:00:aa:00:00', ip4: { address: '10.0.0.20', prefix: 24 }, ip6: { address: '2001::14', prefix: 64 } },
      iface2: { id: 0, name: 'eth0', mac: '00:00:00:aa:00:01', ip4: { address: '10.0.0.21', prefix: 24 } },
      options: { bandwidth: 0, delay: 0, loss: 0 },
      unidirectional: false,
    });
    expect(agentPairs(t)).toEqual([['n1', 'n2']]);
  });

  it('parses sample1.xml (routers, MDRs, PCs, a switch and a basic_range WLAN)', () => {
    const t = reference('sample1.xml');
    expect(t.devices.map((d) => d.name)).toEqual(['n1', 'n3', 'n2', 'n9', 'n6', 'n7', 'n5', 'n8', 'n11', 'n12', 'n13', 'n14', 'n15']);
    expect(t.networks).toEqual([
      { id: 4, name: 'n4', type: 'SWITCH', position: { x: 192, y: 252 }, basicRange: null },
      {
        id: 10,
        name: 'wlan10',
        type: 'WIRELESS_LAN',
        position: { x: 852, y: 564 },
        basicRange: { range: 240, bandwidth: 54_000_000, delay: 50_000, jitter: 0, error: 0 },
      },
    ]);
    expect(deviceByName(t, 'n5')).toMatchObject({ type: 'mdr', services: ['zebra', 'OSPFv2', 'OSPFv3MDR', 'IPForward'] });
    expect(t.links).toHaveLength(15);
    const n3n2 = t.links.find((l) => l.node1 === 3 && l.node2 === 2)!;
    expect(n3n2.options).toEqual({ bandwidth: 100_000_000, delay: 25_000, jitter: 0, loss: 0, dup: 0, buffer: 0 });
    expect(n3n2.egress.node1).toEqual(n3n2.egress.node2);
    // WLAN links carry no options; /32 and /128 addresses are kept as written.
    const n8 = t.links.find((l) => l.node2 === 8)!;
    expect(n8).toMatchObject({ node1: 10, iface1: null, iface2: { ip4: { address: '10.0.0.8', prefix: 32 }, ip6: { address: 'a::8', prefix: 128 } } });
    // Canvas distances against range 240 (see the test below for the arithmetic).
    expect(pairNames(t, 'wlan10')).toEqual(['n5-n8', 'n6-n7', 'n6-n8', 'n6-n9', 'n7-n8']);
    expect(pairNames(t, 'n4')).toHaveLength(10); // 5 members on a switch: everyone hears everyone
    expect(segments(t)).toHaveLength(2 + 5); // two networks, five direct links
  });
});

describe('hearingPairs on a basic_range WLAN', () => {
  // sample1's WLAN, range 240: n8(672,420) n6(780,228) n7(816,348) n5(540,348) n9(672,96)
  const cases: Array<[string, string, number, boolean]> = [
    ['n8', 'n6', Math.hypot(108, 192), true], // 220.3
    ['n8', 'n9', 324, false],
    ['n6', 'n5', Math.hypot(240, 120), false], // 268.3
    ['n6', 'n9', Math.hypot(108, 132), true], // 170.6
    ['n7', 'n5', 276, false],
  ];
  const t = reference('sample1.xml');
  const pairs = pairNames(t, 'wlan10');
  it.each(cases)('%s and %s at %f px: hear each other = %s', (a, b, _d, hears) => {
    expect(pairs.includes([a, b].sort().join('-'))).toBe(hears);
  });

  const wlan = (config: string, positions: Array<[number, number]>) =>
    parseScenario(
      xml(
        `<networks><network id="9" name="w" type="WIRELESS_LAN"/></networks><devices>` +
          positions.map(([x, y], i) => `<device id="${i + 1}" name="d${i + 1}" type="prouter" class=""><position x="${x}" y="${y}"/></device>`).join('') +
          `</devices><links>` +
          positions.map((_, i) => `<link node1="9" node2="${i + 1}"><iface2 id="0"/></link>`).join('') +
          `</links>${config}`,
      ),
    );
  const range = (r: number) =>
    `<mobility_configurations><mobility_configuration node="9" model="basic_range"><configuration name="range" value="${r}"/></mobility_configuration></mobility_configurations>`;

  it('takes range boundaries inclusively, as BasicRangeModel.calclink (d > range unlinks)', () => {
    expect(pairNames(wlan(range(100), [[100, 100], [200, 100], [300, 100]]), 'w')).toEqual(['d1-d2', 'd2-d3']);
  });
  it('lets nobody hear a device without a position (x or y = 0 is unset in CORE)', () => {
    expect(pairNames(wlan(range(1000), [[100, 100], [0, 100], [300, 100]]), 'w')).toEqual(['d1-d3']);
  });
  it('passes nothing on a WLAN without basic_range, and fills in missing values with defaults', () => {
    expect(pairNames(wlan('', [[100, 100], [110, 100]]), 'w')).toEqual([]);
    const t = wlan(range(50), [[100, 100], [110, 100]]);
    expect(t.networks[0]!.basicRange).toEqual({ range: 50, bandwidth: 54_000_000, delay: 5000, jitter: 0, error: 0 });
  });
});

describe('our scenarios', () => {
  const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.xml'));
  it('has every scenario the issue asks for', () => {
    for (const f of ['two-nodes', 'chain-3', 'lan-5', 'lan-10', 'lan-20', 'uplink', 'demo', 'wlan-3', 'bw-10m']) {
      expect(files).toContain(`${f}.xml`);
    }
  });
  it.each(files)('%s parses, follows the CORE-loadable conventions and starts agents in a hook', (file) => {
    const text = readFileSync(SCENARIOS + file, 'utf8');
    const t = parseScenario(text);
    for (const d of t.devices) {
      if (d.type === 'host') expect(d.services).toEqual(['DefaultRoute']);
      else expect({ name: d.name, type: d.type, services: d.services }).toEqual({ name: d.name, type: 'prouter', services: [] });
    }
    for (const l of t.links) {
      for (const i of [l.iface1, l.iface2]) {
        if (i?.ip4) expect(i.ip4.address).not.toMatch(/\.1$/); // DefaultRoute routes via the first host address
        if (i?.ip6) expect(i.ip6.address).not.toMatch(/::1$/);
      }
    }
    for (const n of t.networks) if (n.type === 'WIRELESS_LAN') expect(n.basicRange).not.toBeNull();
    expect(text).toMatch(/<hook name="scrooge-start\.sh" state="4">/);
    // The hook is exactly what the generator writes (node scripts/core-hooks.mjs rewrites it).
    expect(withHooks(text, t), `${file}: run \`npm run build && node scripts/core-hooks.mjs\``).toBe(text);
    for (const d of t.devices.filter(runsAgent)) expect(text).toContain(`start_agent ${d.name}\n`);
    for (const d of t.devices.filter((x) => !runsAgent(x))) expect(text).not.toContain(`start_agent ${d.name}\n`);
  });

  it('lan-N: N agents on one switch, every pair hears each other', () => {
    for (const n of [5, 10, 20]) {
      const t = scenario(`lan-${n}.xml`);
      expect(t.devices).toHaveLength(n);
      expect(t.networks.map((x) => x.type)).toEqual(['SWITCH']);
      expect(agentPairs(t)).toHaveLength((n * (n - 1)) / 2);
    }
  });

  it('chain-3: only neighbors on the chain are agent pairs', () => {
    expect(agentPairs(scenario('chain-3.xml'))).toEqual([
      ['n1', 'n2'],
      ['n2', 'n3'],
    ]);
  });

  it('wlan-3: the ends are out of range of each other', () => {
    expect(agentPairs(scenario('wlan-3.xml'))).toEqual([
      ['n1', 'n2'],
      ['n2', 'n3'],
    ]);
  });

  it('bw-10m: a 10 Mbit/s direct link', () => {
    expect(scenario('bw-10m.xml').links[0]!.options.bandwidth).toBe(10_000_000);
  });

  const uplink = scenario('uplink.xml');
  it.each([
    ['A', 'eth0', 'mesh'],
    ['B', 'eth0', 'mesh'],
    ['R', 'eth0', 'mesh'],
    ['R', 'eth1', 'uplink'],
    ['M', 'eth0', 'none'],
    ['U', 'eth0', 'none'],
  ] as const)('uplink: %s %s is %s', (device, iface, role) => {
    expect(interfaceRole(uplink, device, iface)).toBe(role);
  });
  it('uplink: agent pairs leave out the hosts M and U', () => {
    expect(agentPairs(uplink)).toEqual([
      ['A', 'B'],
      ['A', 'R'],
      ['B', 'R'],
    ]);
  });
  it('demo: R has an uplink, M and U run no agent, n2 hears only n3 (two tunnels from R), R sells it all', () => {
    const t = scenario('demo.xml');
    expect(interfaceRole(t, 'R', 'eth1')).toBe('uplink');
    expect(interfaceRole(t, 'n3', 'eth1')).toBe('mesh');
    expect(t.devices.filter((d) => !runsAgent(d)).map((d) => d.name)).toEqual(['M', 'U']);
    expect(agentPairs(t)).toEqual([['R', 'n1'], ['R', 'n3'], ['n1', 'n3'], ['n2', 'n3']]);
    expect(t.overlay).toEqual({ nodes: { R: { share: 1 } } });
  });
});

describe('runsAgent: type host runs no agent, every other type does', () => {
  it.each([
    ['host', false],
    ['prouter', true],
    ['router', true],
    ['mdr', true],
    ['PC', true],
  ] as const)('%s -> %s', (type, runs) => {
    expect(runsAgent({ id: 1, name: 'x', type, services: [], position: null })).toBe(runs);
  });
});

describe('interfaceRole on a segment shared with non-agents only', () => {
  it('is uplink for an agent whose switch has only hosts', () => {
    const t = parseScenario(
      xml(
        `<networks><network id="9" name="s" type="SWITCH"/></networks><devices>${dev(1, 'r')}${dev(2, 'h1', 'host')}${dev(3, 'h2', 'host')}</devices>` +
          `<links>${[1, 2, 3].map((i) => `<link node1="${i}" node2="9"><iface1 id="0"/></link>`).join('')}</links>`,
      ),
    );
    expect(interfaceRole(t, 'r', 'eth0')).toBe('uplink');
    expect(agentPairs(t)).toEqual([]);
  });
});

describe('link details', () => {
  it('merges the two entries of a unidirectional link (corexml.py read_links -> update_link)', () => {
    const t = parseScenario(
      xml(
        twoDevices +
          `<links>` +
          `<link node1="1" node2="2"><iface1 id="0"/><iface2 id="3" name="wan"/><options bandwidth="1000000" loss="5" unidirectional="1"/></link>` +
          `<link node1="2" node2="1"><iface1 id="3" name="wan"/><iface2 id="0"/><options bandwidth="2000000" delay="10" unidirectional="1"/></link>` +
          `</links>`,
      ),
    );
    expect(t.links).toHaveLength(1);
    const l = t.links[0]!;
    expect(l.unidirectional).toBe(true);
    expect(l.iface2!.name).toBe('wan');
    expect(l.egress.node1).toMatchObject({ bandwidth: 1_000_000, loss: 5, delay: 0 });
    expect(l.egress.node2).toMatchObject({ bandwidth: 2_000_000, loss: 0, delay: 10 });
  });

  it('applies a unidirectional link written once to both ends (add_link gives both the options)', () => {
    const t = parseScenario(xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/><options bandwidth="5" unidirectional="1"/></link></links>`));
    expect(t.links[0]!.egress.node2.bandwidth).toBe(5);
  });

  it('reads the older CORE names (node_one, interface_one, per)', () => {
    const t = parseScenario(
      xml(twoDevices + `<links><link node_one="1" node_two="2"><interface_one id="0"/><interface_two id="1"/><options per="2.5"/></link></links>`),
    );
    expect(t.links[0]).toMatchObject({ node1: 1, node2: 2, iface1: { name: 'eth0' }, iface2: { name: 'eth1' }, options: { loss: 2.5 } });
  });

  it('applies an address only when both halves are present; defaults the name to eth<id>', () => {
    const t = parseScenario(
      xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="4" ip4="10.0.0.2" ip6_mask="64"/><iface2 id="0" ip4="10.0.0.3" ip4_mask="24"/></link></links>`),
    );
    expect(t.links[0]!.iface1).toEqual({ id: 4, name: 'eth4', mac: null, ip4: null, ip6: null });
    expect(t.links[0]!.iface2!.ip4).toEqual({ address: '10.0.0.3', prefix: 24 });
  });

  it('accepts the network on either side of a device-network link', () => {
    const t = parseScenario(
      xml(
        `<networks><network id="9" name="s" type="HUB"/></networks>` +
          twoDevices +
          `<links><link node1="1" node2="9"><iface1 id="0"/></link><link node1="9" node2="2"><iface2 id="0"/></link></links>`,
      ),
    );
    expect(segments(t)[0]!.members.map((m) => m.device.name)).toEqual(['a', 'b']);
  });

  it('ignores elements it does not use, and treats position 0 as unset', () => {
    const t = parseScenario(
      xml(
        `<session_options><configuration name="x" value="1"/></session_options><session_hooks><hook name="h" state="4">echo &lt;hi&gt;</hook></session_hooks>` +
          `<devices><device id="1" name="a" type="host" class=""><position x="0" y="5"/><services><service name="DefaultRoute"/></services></device></devices>` +
          `<emane_global_configuration><emulator/></emane_global_configuration>`,
      ),
    );
    expect(t.devices).toEqual([{ id: 1, name: 'a', type: 'host', services: ['DefaultRoute'], position: null }]);
  });
});

describe('malformed scenarios name the element', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['not XML', 'this is not <xml', /^scenario: malformed XML at line 1/],
    ['unclosed element', '<scenario><devices></scenario>', /malformed XML/],
    ['wrong root', '<core><devices/></core>', /^<core>: the root element must be <scenario>/],
    ['EMANE network', xml(`<networks><network id="4" name="n4" type="EMANE"/></networks>`), /^<network id="4" name="n4">: unsupported type "EMANE"/],
    ['network without type', xml(`<networks><network id="4" name="n4"/></networks>`), /^<network id="4" name="n4">: missing type/],
    ['duplicate id', xml(`<networks><network id="1" name="s" type="SWITCH"/></networks><devices>${dev(1, 'a')}</devices>`), /^<network id="1" name="s">: duplicate id 1/],
    ['duplicate name', xml(`<devices>${dev(1, 'a')}${dev(2, 'a')}</devices>`), /^<device id="2" name="a">: duplicate name "a"/],
    ['docker class', xml(`<devices><device id="1" name="a" type="PC" class="docker"/></devices>`), /^<device id="1" name="a">: class="docker" is not supported/],
    ['device without type', xml(`<devices><device id="1" name="a" class=""/></devices>`), /^<device id="1" name="a">: missing type/],
    ['non-integer id', xml(`<devices><device id="1.5" name="a" type="PC"/></devices>`), /^<device id="1.5" name="a">: id="1.5" is not an integer/],
    ['link to unknown id', xml(twoDevices + `<links><link node1="1" node2="7"><iface1 id="0"/></link></links>`), /^<link node1="1" node2="7">: unknown node id 7/],
    ['link without iface id', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 name="eth0"/><iface2 id="0"/></link></links>`), /^<iface1 name="eth0">: missing id/],
    ['link without iface2', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0"/></link></links>`), /^<link node1="1" node2="2">: missing <iface2> for device b/],
    ['link to itself', xml(twoDevices + `<links><link node1="1" node2="1"><iface1 id="0"/><iface2 id="1"/></link></links>`), /a link must join two different nodes/],
    [
      'network-network link',
      xml(`<networks><network id="8" name="s" type="SWITCH"/><network id="9" name="t" type="HUB"/></networks><links><link node1="8" node2="9"/></links>`),
      /^<link node1="8" node2="9">: links between two networks are not supported/,
    ],
    ['bad MAC', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0" mac="00:11"/><iface2 id="0"/></link></links>`), /^<iface1 id="0">: mac="00:11" is not a MAC address/],
    ['bad IPv4', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0" ip4="10.0.0.256" ip4_mask="24"/><iface2 id="0"/></link></links>`), /ip4="10.0.0.256" is not an IPv4 address/],
    ['bad IPv6', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0" ip6="2001:::1" ip6_mask="64"/><iface2 id="0"/></link></links>`), /ip6="2001:::1" is not an IPv6 address/],
    ['IPv4 mask 33', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0" ip4="10.0.0.2" ip4_mask="33"/><iface2 id="0"/></link></links>`), /ip4_mask="33" must be at most 32/],
    ['loss over 100', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/><options loss="150"/></link></links>`), /^<options>: loss="150" must be at most 100/],
    ['negative bandwidth', xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/><options bandwidth="-1"/></link></links>`), /bandwidth="-1" must be at least 0/],
    [
      'interface id used twice',
      xml(twoDevices + `<links><link node1="1" node2="2"><iface1 id="0"/><iface2 id="0"/></link><link node1="1" node2="2"><iface1 id="0"/><iface2 id="1"/></link></links>`),
      /interface id 0 of a is already used by another link/,
    ],
    [
      'basic_range on a switch',
      xml(
        `<networks><network id="9" name="s" type="SWITCH"/></networks><mobility_configurations><mobility_configuration node="9" model="basic_range"/></mobility_configurations>`,
      ),
      /^<mobility_configuration node="9" model="basic_range">: basic_range applies to a WIRELESS_LAN/,
    ],
    [
      'basic_range for an unknown node',
      xml(`<mobility_configurations><mobility_configuration node="3" model="basic_range"/></mobility_configurations>`),
      /unknown node id 3/,
    ],
  ];
  it.each(cases)('%s', (_name, text, message) => {
    expect(() => parseScenario(text)).toThrow(expect.objectContaining({ code: 'ESCENARIO', message: expect.stringMatching(message) }));
  });
});

describe('isIPv6', () => {
  it.each([
    ['::', true],
    ['::1', true],
    ['a:1::21', true],
    ['2001:db8::ffff:10.0.0.1', true],
    ['1:2:3:4:5:6:7:8', true],
    ['1:2:3:4:5:6:7:8:9', false],
    ['1::2::3', false],
    ['12345::', false],
    ['fe80::1%eth0', false],
    ['::ffff:256.0.0.1', false],
    ['1:2:3:4:5:6:7:1.2.3.4', false],
    ['1:2:3:4:5:6:1.2.3.4', true],
    ['1.2.3.4', false],
  ] as const)('%s -> %s', (text, ok) => {
    expect(isIPv6(text)).toBe(ok);
  });
});
