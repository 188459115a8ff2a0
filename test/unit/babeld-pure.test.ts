// The routing component's pure parts: mesh addresses (golden vectors), babeld's config and
// control lines, and the parser of babeld's local protocol (real lines captured from babeld
// 1.12.1 on this machine, and random bytes that must never throw).
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MESH_PREFIX6, checkMeshAddress4, checkPrefix4, inPrefix4, isMeshAddress6, isReservedInterfaceId, meshAddress6, parseIPv4,
} from '../../src/routing/address.js';
import { DEFAULT_TIMERS, PLACEHOLDER_INTERFACE, babeldConfig, babeldPaths, flushInterfaceCommand, interfaceCommand } from '../../src/routing/config.js';
import { BabeldTable, parseLine } from '../../src/routing/protocol.js';

const hex = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));

describe('mesh addresses', () => {
  // IID = SHA-256("scrooge mesh address" || key)[0..8), computed independently with node:crypto.
  it.each([
    ['00'.repeat(32), 'fdb5:c7c7:82e9:0:311f:cc68:caa8:8b9b'],
    ['0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', 'fdb5:c7c7:82e9:0:31ec:a6f8:724c:89d9'],
    // RFC 8032 §7.1 TEST 1 public key
    ['d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'fdb5:c7c7:82e9:0:cf93:ce4d:84df:6303'],
  ])('key %s -> %s', (key, address) => {
    expect(meshAddress6(hex(key))).toBe(address);
    expect(isMeshAddress6(address)).toBe(true);
  });

  it('is stable and differs between keys', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (a, b) => {
      expect(meshAddress6(a)).toBe(meshAddress6(Uint8Array.from(a)));
      expect(isMeshAddress6(meshAddress6(a))).toBe(true);
      if (Buffer.compare(a, b) !== 0) expect(meshAddress6(a)).not.toBe(meshAddress6(b));
    }));
  });

  it('names reserved interface ids', () => {
    expect(isReservedInterfaceId(new Uint8Array(8))).toBe(true);
    expect(isReservedInterfaceId(hex('fdffffffffffff80'))).toBe(true);
    expect(isReservedInterfaceId(hex('fdffffffffffffff'))).toBe(true);
    expect(isReservedInterfaceId(hex('fdffffffffffff7f'))).toBe(false);
    expect(isReservedInterfaceId(hex('311fcc68caa88b9b'))).toBe(false);
  });

  it('rejects a key of the wrong length (a caller bug)', () => {
    expect(() => meshAddress6(new Uint8Array(31))).toThrow(/"identityKey" expected 32 bytes, got 31/);
  });

  it('knows its prefix', () => {
    expect(MESH_PREFIX6).toBe('fdb5:c7c7:82e9::/64');
    expect(isMeshAddress6('fdb5:c7c7:82e9:1::1')).toBe(false);
    expect(isMeshAddress6('fe80::1')).toBe(false);
    expect(isMeshAddress6('nonsense')).toBe(false);
  });

  it.each([
    ['10.55.0.1', true], ['192.168.7.9', true], ['0.1.2.3', false], ['127.0.0.1', false], ['169.254.1.1', false],
    ['224.0.0.1', false], ['255.255.255.255', false], ['10.0.0.256', false], ['10.0.0', false], ['010.0.0.1', false], ['', false],
  ])('mesh IPv4 %s valid: %s', (text, ok) => {
    expect(checkMeshAddress4(text).ok).toBe(ok);
  });

  it('IPv4 prefixes', () => {
    expect(checkPrefix4('10.55.0.0/16')).toEqual({ ok: true, value: { address: '10.55.0.0', length: 16 } });
    expect(checkPrefix4('10.55.0.1/16').ok).toBe(false);
    expect(checkPrefix4('10.55.0.0/33').ok).toBe(false);
    expect(checkPrefix4('0.0.0.0/0').ok).toBe(true);
    expect(inPrefix4('10.55.3.4', { address: '10.55.0.0', length: 16 })).toBe(true);
    expect(inPrefix4('10.56.3.4', { address: '10.55.0.0', length: 16 })).toBe(false);
    expect(parseIPv4('1.2.3.4')).toBe(0x01020304);
  });
});

describe('babeld config', () => {
  const paths = babeldPaths('/var/lib/scrooge');
  const mesh6 = 'fdb5:c7c7:82e9:0:311f:cc68:caa8:8b9b';

  it('puts every file in the state directory', () => {
    expect(paths).toEqual({
      config: '/var/lib/scrooge/babeld.conf', socket: '/var/lib/scrooge/babeld.sock', pid: '/var/lib/scrooge/babeld.pid',
      state: '/var/lib/scrooge/babeld.state', log: '/var/lib/scrooge/babeld.log',
    });
    expect(() => babeldPaths('/' + 'x'.repeat(100))).toThrow(/longer than 107 bytes/);
    expect(() => babeldPaths('/a dir')).toThrow(/whitespace/);
  });

  it('a plain node: its addresses only, nothing of the raw segments', () => {
    expect(babeldConfig({ paths, mesh6, mesh4: '10.55.0.1', accept4: '10.55.0.0/16' })).toBe(`# Written by the Scrooge agent at every babeld start; edits are lost.
local-path-readwrite /var/lib/scrooge/babeld.sock
pid-file /var/lib/scrooge/babeld.pid
state-file /var/lib/scrooge/babeld.state
skip-kernel-setup true
random-id true
smoothing-half-life 0
interface ${PLACEHOLDER_INTERFACE}

# Accept host routes inside the mesh prefixes and default routes; nothing else.
in ip fdb5:c7c7:82e9::/64 eq 128 allow
in ip 10.55.0.0/16 eq 32 allow
in ip ::/0 eq 0 allow
in ip 0.0.0.0/0 eq 0 allow
in deny

# Announce the mesh addresses (on lo) and, on a gateway, its real default routes.
redistribute local ip ${mesh6}/128 eq 128 allow
redistribute local ip 10.55.0.1/32 eq 32 allow
redistribute local deny
redistribute deny

# Traffic this node sends over the mesh leaves from its mesh address (tunnels have only an
# fe80, and a raw segment address would not be routable back).
install ip ::/0 pref-src ${mesh6}
install ip 0.0.0.0/0 pref-src 10.55.0.1
`);
  });

  it('a gateway announces its default routes of any protocol, boot included', () => {
    const text = babeldConfig({ paths, mesh6, gateway: { ipv6: true, ipv4: true } });
    const redistribute = text.split('\n').filter((l) => l.startsWith('redistribute'));
    expect(redistribute).toEqual([
      `redistribute local ip ${mesh6}/128 eq 128 allow`,
      'redistribute local deny',
      'redistribute ip ::/0 eq 0 allow',
      'redistribute proto 3 ip ::/0 eq 0 allow',
      'redistribute ip 0.0.0.0/0 eq 0 allow',
      'redistribute proto 3 ip 0.0.0.0/0 eq 0 allow',
      'redistribute deny',
    ]);
    expect(text).not.toMatch(/pref-src 10\./);
    const v4only = babeldConfig({ paths, mesh6, gateway: { ipv6: false, ipv4: true } });
    expect(v4only).not.toMatch(/::\/0 eq 0 allow\nredistribute proto 3 ip ::/);
    expect(v4only).toMatch(/redistribute proto 3 ip 0\.0\.0\.0\/0 eq 0 allow/);
  });

  it('rejects bad values (a caller bug) before anything is written', () => {
    expect(() => babeldConfig({ paths, mesh6: 'fd00::1' })).toThrow(/"mesh6" is not an address in fdb5:c7c7:82e9::\/64/);
    expect(() => babeldConfig({ paths, mesh6, mesh4: '127.0.0.1' })).toThrow(/"mesh4"/);
    expect(() => babeldConfig({ paths, mesh6, accept4: '10.0.0.1/8' })).toThrow(/"accept4"/);
  });

  it('interface lines carry every parameter (1.12.1 ignores `default` at run time)', () => {
    expect(interfaceCommand('sc0123456789abc')).toBe('interface sc0123456789abc type tunnel hello-interval 0.5 update-interval 1 split-horizon true v4-via-v6 true');
    expect(interfaceCommand('wg0', { helloIntervalMs: 1000, updateIntervalMs: 16_000 })).toBe('interface wg0 type tunnel hello-interval 1 update-interval 16 split-horizon true v4-via-v6 true');
    expect(flushInterfaceCommand('wg0')).toBe('flush interface wg0');
    expect(DEFAULT_TIMERS).toEqual({ helloIntervalMs: 500, updateIntervalMs: 1000 });
  });

  it.each(['', 'a b', 'wg0\ndump', 'x'.repeat(16), 'wg0;', 'a/b'])('refuses interface name %j', (name) => {
    expect(() => interfaceCommand(name)).toThrow(TypeError);
    expect(() => flushInterfaceCommand(name)).toThrow(TypeError);
  });

  it('refuses timers babeld would misread', () => {
    expect(() => interfaceCommand('wg0', { helloIntervalMs: 0, updateIntervalMs: 4000 })).toThrow(RangeError);
    expect(() => interfaceCommand('wg0', { helloIntervalMs: NaN, updateIntervalMs: 4000 })).toThrow(RangeError);
  });
});

// Captured from babeld 1.12.1 (dump and monitor) in the namespaces of test/netns/babeld.test.ts.
const CAPTURED = `BABEL 1.0
version babeld-1.12.1
host vm
my-id b8:f5:bb:d4:92:a9:1d:08
ok
add interface scrooge-idle up false
add interface w1ab up true ipv6 fe80::a
add neighbour 55b1cd4a2990 address fe80::b1 if w1ab reach f000 ureach 0000 rxcost 96 txcost 96 cost 96
change neighbour 55aac40ce960 address fe80::b1 if w2ab reach ff80 ureach 0000 rxcost 96 txcost 96 rtt 17.036 rttcost 6 cost 102
add xroute 10.55.0.1/32-0.0.0.0/0 prefix 10.55.0.1/32 from 0.0.0.0/0 metric 0
add xroute fd5c::a/128-::/0 prefix fd5c::a/128 from ::/0 metric 0
add route 55b1cd4a3060 prefix 10.55.0.3/32 from 0.0.0.0/0 installed yes id f4:db:ae:d4:cb:68:01:ec metric 192 refmetric 96 via fe80::b1 if w1ab
add route 55b1cd4a2f70 prefix fd5c::c/128 from ::/0 installed yes id f4:db:ae:d4:cb:68:01:ec metric 192 refmetric 96 via fe80::b1 if w1ab
change route 56323b3bca80 prefix fd5c::b/128 from ::/0 installed no id c4:5e:7d:c2:96:43:ff:61 metric 65535 refmetric 0 via fe80::b1 if w1ab
flush route 56323b3bca80 prefix fd5c::b/128 from ::/0 installed no id c4:5e:7d:c2:96:43:ff:61 metric 96 refmetric 0 via fe80::b1 if w1ab
flush interface w2ab up false
no No such interface
bad
ok`;

describe('babeld local protocol', () => {
  it('parses every line babeld 1.12.1 printed', () => {
    const lines = CAPTURED.split('\n').map(parseLine);
    expect(lines.filter((l) => !l.ok)).toEqual([]);
    const types = lines.map((l) => (l.ok ? (l.line.type === 'event' ? `${l.line.event.kind} ${l.line.event.type}` : l.line.type) : '?'));
    expect(types).toEqual([
      'banner', 'banner', 'banner', 'banner', 'ok', 'add interface', 'add interface', 'add neighbour', 'change neighbour',
      'add xroute', 'add xroute', 'add route', 'add route', 'change route', 'flush route', 'flush interface', 'no', 'bad', 'ok',
    ]);
  });

  it('reads the fields', () => {
    const n = parseLine('change neighbour 55aac40ce960 address fe80::b1 if w2ab reach ff80 ureach 0000 rxcost 96 txcost 96 rtt 17.036 rttcost 6 cost 102');
    expect(n).toEqual({ ok: true, line: { type: 'event', event: { kind: 'change', type: 'neighbour', entry: {
      id: '55aac40ce960', address: 'fe80::b1', ifname: 'w2ab', reach: 0xff80, ureach: 0, rxcost: 96, txcost: 96, rtt: 17.036, rttcost: 6, cost: 102,
    } } } });
    const r = parseLine('add route 55b1cd4a3060 prefix 10.55.0.3/32 from 0.0.0.0/0 installed yes id f4:db:ae:d4:cb:68:01:ec metric 192 refmetric 96 via fe80::b1 if w1ab');
    expect(r.ok && r.line.type === 'event' && r.line.event.entry).toEqual({
      id: '55b1cd4a3060', prefix: '10.55.0.3/32', from: '0.0.0.0/0', installed: true, routerId: 'f4:db:ae:d4:cb:68:01:ec', metric: 192, refmetric: 96, via: 'fe80::b1', ifname: 'w1ab',
    });
    expect(parseLine('no No such interface')).toEqual({ ok: true, line: { type: 'no', message: 'No such interface' } });
    expect(parseLine('no')).toEqual({ ok: true, line: { type: 'no', message: '' } });
  });

  it.each([
    'add interface w0', 'add interface w0 up maybe', 'add neighbour 1 address fe80::1 if w0 reach zz ureach 0000 rxcost 1 txcost 1 cost 1',
    'add route 1 prefix ::/0 from ::/0 installed perhaps id x metric 1 refmetric 1 via fe80::1 if w0', 'add route 1 prefix ::/0',
    'add widget 1 up true', 'remove interface w0 up true', 'add interface w0 up true up false', 'BABEL', 'hello', '',
    'add interface w0 up true ipv6', 'add xroute k prefix ::/0 from ::/0 metric -1',
  ])('refuses %j without throwing', (line) => {
    expect(parseLine(line).ok).toBe(false);
  });

  it('never throws on random text', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => {
      parseLine(s);
    }));
    fc.assert(fc.property(fc.array(fc.constantFrom('add', 'change', 'flush', 'interface', 'route', 'neighbour', 'xroute', 'up', 'true', 'if', 'w0', 'metric', '1', 'ffff', 'via', 'prefix', '::/0'), { maxLength: 20 }), (w) => {
      parseLine(w.join(' '));
    }));
  });

  it('a table follows add, change and flush', () => {
    const t = new BabeldTable();
    for (const l of CAPTURED.split('\n').map(parseLine)) if (l.ok && l.line.type === 'event') t.apply(l.line.event);
    expect(t.render()).toBe([
      'interface scrooge-idle up false',
      'interface w1ab up true ipv6 fe80::a',
      'neighbour fe80::b1 if w1ab cost 96',
      'neighbour fe80::b1 if w2ab cost 102',
      'xroute 10.55.0.1/32 metric 0',
      'xroute fd5c::a/128 metric 0',
      'route 10.55.0.3/32 via fe80::b1 if w1ab metric 192 installed',
      'route fd5c::c/128 via fe80::b1 if w1ab metric 192 installed',
    ].join('\n'));
    expect(t.neighboursOn('w1ab').map((n) => n.id)).toEqual(['55b1cd4a2990']);
  });
});

describe('pure routing modules', () => {
  const pure = ['address.ts', 'config.ts', 'protocol.ts'];
  it('the folder has the files this test knows', () => {
    expect(readdirSync('src/routing').filter((f) => f.endsWith('.ts')).sort()).toEqual(['address.ts', 'client.ts', 'config.ts', 'protocol.ts', 'supervisor.ts']);
  });
  it.each(pure)('src/routing/%s imports no I/O, timers or clock', (file) => {
    const text = readFileSync(`src/routing/${file}`, 'utf8');
    for (const re of [/from ['"](node:)?[a-z_/]+['"]/, /import ['"]/, /\bDate\.now\(\)|performance\.now\(\)/, /\b(setTimeout|setInterval|setImmediate)\(/, /from ['"]\.\.\/(system|agent|cli|sim)\//, /\brequire\(|\bimport\(/])
      expect(re.test(text), `${file} matches ${re}`).toBe(false);
  });
});
