/**
 * `scrooge sim` on real namespaces (issue 3, "Must show"). Needs root; touches only namespaces
 * it creates (ids `t<hex>`), loopback, and its own temporary SCROOGE_SIM_DIR.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/cli.js';
import type { CliIO } from '../../src/cli/command.js';
import { upRun } from '../../src/sim/build.js';
import { USERSPACE_SOCKET_DIR as WIREGUARD_SOCKET_DIR } from '../../src/system/wireguard/index.js';
import { runDir } from '../../src/sim/run.js';
import {
  SCENARIOS,
  background,
  down,
  downAll,
  hostState,
  inNs,
  isRoot,
  linkLocal,
  newRunId,
  reach,
  reachUdp,
  runner,
  simWait,
  slow,
  startEcho,
  ctlJson,
  step,
  until,
  up,
  upWithAgents,
  withSim,
} from './lib.js';

afterEach(downAll);

/** The routing part of an agent's status (null when routing is off). */
async function routingOf(id: string, node: string): Promise<{ running: boolean } | null> {
  return (await ctlJson<{ routing?: { running: boolean } | null }>(id, node, 'status')).routing ?? null;
}

/** Runs the CLI in-process and captures what it prints. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { out: (t) => void (out += t), err: (t) => void (err += t) };
  step('cli', `scrooge ${argv.join(' ')}`);
  const code = await main(argv, io);
  return { code, out, err };
}

describe.skipIf(!isRoot)('scrooge sim (netns, root)', () => {
  it('agents run without NODE_EXTRA_CA_CERTS (a CA bundle parsed at every start, for no TLS), with the rest of the environment', async () => {
    const before = process.env['NODE_EXTRA_CA_CERTS'];
    process.env['NODE_EXTRA_CA_CERTS'] = '/etc/ssl/certs/ca-certificates.crt';
    try {
      const { run } = await upWithAgents('two-nodes.xml');
      for (const { pid } of Object.values(run.agents.pids)) {
        const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').map((kv) => kv.split('=')[0]);
        expect(env).toContain('PATH');
        expect(env).not.toContain('NODE_EXTRA_CA_CERTS');
      }
    } finally {
      if (before === undefined) delete process.env['NODE_EXTRA_CA_CERTS'];
      else process.env['NODE_EXTRA_CA_CERTS'] = before;
    }
  });

  it('two-nodes: the nodes reach each other on link-local, IPv4 and IPv6 addresses', async () => {
    await withSim('two-nodes.xml', async ({ run }) => {
      const [n1, n2] = [run.nodes['n1']!, run.nodes['n2']!];
      await Promise.all([startEcho(n1), startEcho(n2)]);
      const ll1 = await linkLocal(n1, 'eth0');
      const ll2 = await linkLocal(n2, 'eth0');
      // Link-local addresses come from the scenario's MACs (EUI-64), since MACs are set before up.
      expect([ll1, ll2]).toEqual(['fe80::200:ff:feaa:0', 'fe80::200:ff:feaa:1']);
      expect(await reach(n1, ['10.0.0.3', '2001:db8::3', `${ll2}%eth0`])).toEqual({
        '10.0.0.3': true,
        '2001:db8::3': true,
        [`${ll2}%eth0`]: true,
      });
      expect(await reach(n2, ['10.0.0.2', '2001:db8::2', `${ll1}%eth0`])).toEqual({
        '10.0.0.2': true,
        '2001:db8::2': true,
        [`${ll1}%eth0`]: true,
      });
      // prouter nodes forward; DAD is off so addresses are not tentative.
      expect((await inNs(n1, ['sysctl', '-n', 'net.ipv6.conf.all.forwarding', 'net.ipv6.conf.eth0.accept_dad'])).split('\n').slice(0, 2)).toEqual(['1', '0']);
      expect(await inNs(n1, ['ip', '-6', 'address', 'show', 'tentative'])).toBe('');
    });
  });

  it('lan-5: every node reaches every other, and a datagram to ff02::1 reaches all the others', async () => {
    await withSim('lan-5.xml', async ({ run }) => {
      const names = ['n1', 'n2', 'n3', 'n4', 'n5'];
      const ns = (n: string) => run.nodes[n]!;
      const v4 = (i: number) => `10.0.0.${i + 2}`;
      const v6 = (i: number) => `2001:db8::${i + 2}`;
      await Promise.all(names.map((n) => startEcho(ns(n))));
      const results = await Promise.all(
        names.map((n, i) => reach(ns(n), names.flatMap((_, j) => (j === i ? [] : [v4(j), v6(j)])))),
      );
      for (const r of results) expect(Object.values(r)).toEqual(Array(8).fill(true));

      // Multicast: receivers in n1..n4 on their mesh interface, n5 sends to ff02::1%eth0.
      const PORT = 7788;
      const receiver = `
        const s = require('node:dgram').createSocket({ type: 'udp6', reuseAddr: true });
        s.on('message', (m, r) => { console.log(JSON.stringify({ from: r.address, data: m.toString() })); process.exit(0); });
        s.bind(${PORT}, '::', () => console.log('ready'));`;
      const receivers = await Promise.all(
        names.slice(0, 4).map(async (n) => {
          const bg = background(ns(n), ['node', '-e', receiver]);
          await bg.line(/^ready$/);
          return bg;
        }),
      );
      const sender = `
        const s = require('node:dgram').createSocket('udp6');
        let n = 0;
        s.bind(0, () => {
          const t = setInterval(() => {
            s.send('hello from n5', ${PORT}, 'ff02::1%eth0');
            if (++n === 10) { clearInterval(t); s.close(); }
          }, 100);
        });`;
      await inNs(ns('n5'), ['node', '-e', sender]);
      const ll5 = await linkLocal(ns('n5'), 'eth0');
      for (const [i, bg] of receivers.entries()) {
        const line = await bg.line(/"data"/);
        step(ns(names[i]!), `multicast received: ${line}`);
        expect(JSON.parse(line)).toEqual({ from: `${ll5}%eth0`, data: 'hello from n5' });
      }
    });
  });

  it('bw-10m: iperf3 TCP measures 9-10.5 Mbit/s in each direction', async () => {
    await withSim('bw-10m.xml', async ({ run }) => {
      const [n1, n2] = [run.nodes['n1']!, run.nodes['n2']!];
      const server = background(n2, ['iperf3', '-s', '-B', '10.0.0.3', '--forceflush']);
      await server.line(/Server listening/);
      for (const reverse of [false, true]) {
        const out = await inNs(n1, ['iperf3', '-c', '10.0.0.3', '-t', '5', '-J', ...(reverse ? ['-R'] : [])], 30_000);
        const mbit = (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
        step(n1, `iperf3 ${reverse ? 'n2 -> n1' : 'n1 -> n2'}: ${mbit.toFixed(2)} Mbit/s`);
        expect(mbit).toBeGreaterThanOrEqual(9);
        expect(mbit).toBeLessThanOrEqual(10.5);
      }
      server.stop();
    });
  });

  it('wlan-3: the ends cannot reach each other, the middle reaches both', async () => {
    await withSim('wlan-3.xml', async ({ run }) => {
      const ns = (n: string) => run.nodes[n]!;
      await Promise.all(['n1', 'n2', 'n3'].map((n) => startEcho(ns(n))));
      expect(await reach(ns('n2'), ['10.0.0.2', '10.0.0.4', '2001:db8::2', '2001:db8::4'])).toEqual({
        '10.0.0.2': true,
        '10.0.0.4': true,
        '2001:db8::2': true,
        '2001:db8::4': true,
      });
      expect(await reach(ns('n1'), ['10.0.0.3', '10.0.0.4', '2001:db8::4'])).toEqual({ '10.0.0.3': true, '10.0.0.4': false, '2001:db8::4': false });
      expect(await reach(ns('n3'), ['10.0.0.3', '10.0.0.2'])).toEqual({ '10.0.0.3': true, '10.0.0.2': false });
    });
  });

  it('uplink: R reaches U over its uplink and A, B, M over the mesh; status shows the roles', async () => {
    await withSim('uplink.xml', async ({ run }) => {
      const ns = (n: string) => run.nodes[n]!;
      await Promise.all(['A', 'M', 'U'].map((n) => startEcho(ns(n))));
      expect(await reach(ns('R'), ['10.0.1.3', '2001:db8:1::3', '10.0.0.2', '10.0.0.5'])).toEqual({
        '10.0.1.3': true,
        '2001:db8:1::3': true,
        '10.0.0.2': true,
        '10.0.0.5': true,
      });
      // The scenario's set-up (nodeconfig.ts): R, the gateway, has default routes out of its
      // uplink; U (DefaultRoute) has default routes to R; M, on the mesh segment, has none.
      expect((await inNs(ns('R'), ['ip', 'route', 'show', 'default'])).trim()).toBe('default dev eth1 scope link');
      expect((await inNs(ns('R'), ['ip', '-6', 'route', 'show', 'default'])).trim()).toMatch(/^default dev eth1 metric \d+ pref medium$/);
      expect((await inNs(ns('U'), ['ip', 'route', 'show', 'default'])).trim()).toBe('default via 10.0.1.2 dev eth0');
      expect((await inNs(ns('U'), ['ip', '-6', 'route', 'show', 'default'])).trim()).toMatch(/^default via 2001:db8:1::2 dev eth0 metric \d+ pref medium$/);
      expect((await inNs(ns('M'), ['ip', 'route', 'show', 'default'])).trim()).toBe('');
      // U is not on the mesh segment; with routes via R (a prouter, so forwarding is on) A
      // reaches it through R's uplink.
      await inNs(ns('A'), ['ip', 'route', 'add', '10.0.1.0/24', 'via', '10.0.0.4']);
      await inNs(ns('U'), ['ip', 'route', 'add', '10.0.0.0/24', 'via', '10.0.1.2']);
      expect(await reach(ns('A'), ['10.0.1.3'])).toEqual({ '10.0.1.3': true });
      // M is a host: no forwarding.
      expect((await inNs(ns('M'), ['sysctl', '-n', 'net.ipv4.ip_forward'])).trim()).toBe('0');
      const status = await cli('sim', 'status', run.id, '--json');
      expect(status.code).toBe(0);
      const s = JSON.parse(status.out) as { nodes: Array<{ name: string; agent: boolean; namespaceExists: boolean; interfaces: Array<{ name: string; role: string }> }> };
      const roles = s.nodes.flatMap((n) => n.interfaces.map((i) => `${n.name}:${i.name}=${i.role}`));
      expect(roles).toEqual(['A:eth0=mesh', 'B:eth0=mesh', 'R:eth0=mesh', 'R:eth1=uplink', 'M:eth0=none', 'U:eth0=none']);
      expect(s.nodes.every((n) => n.namespaceExists)).toBe(true);
      expect(s.nodes.filter((n) => !n.agent).map((n) => n.name)).toEqual(['M', 'U']);
      // Without agents there is nothing to wait for: a clear error, not a timeout.
      const waited = await cli('sim', 'wait', run.id, '--timeout', '1');
      expect(waited.code).toBe(1);
      expect(waited.err).toMatch(/was started with --no-agents/);
      // exec passes the exit code through; an unknown node is a clear error.
      expect((await cli('sim', 'exec', run.id, 'M', '--', 'sh', '-c', 'exit 7')).code).toBe(7);
      const unknown = await cli('sim', 'exec', run.id, 'Z', '--', 'true');
      expect(unknown.code).toBe(1);
      expect(unknown.err).toMatch(/has no node "Z"/);
    });
  });

  it('routing is on by default: on uplink.xml A reaches U through its tunnel to R, with no route set by hand', async () => {
    const { run } = await upWithAgents('uplink.xml');
    const ns = (n: string) => run.nodes[n]!;
    await simWait(run.id);
    // babeld's default routes from the gateway R, over A's tunnel (proto babel), v4 and v6.
    const routes = await until('A has babel default routes', async () => {
      const v4 = (await inNs(ns('A'), ['ip', 'route', 'show', 'default', 'proto', 'babel'])).trim();
      const v6 = (await inNs(ns('A'), ['ip', '-6', 'route', 'show', 'default', 'proto', 'babel'])).trim();
      return v4 && v6 ? { v4, v6 } : undefined;
    }, slow(15_000));
    step(ns('A'), `default routes: ${routes.v4} | ${routes.v6}`);
    expect(routes.v4).toMatch(/^default via inet6 fe80::\S+ dev sc[0-9a-f]+ /);
    expect(routes.v6).toMatch(/^default via fe80::\S+ dev sc[0-9a-f]+ /);
    // A's mesh address is its source; R masquerades, so U needs no route back.
    expect(await inNs(ns('A'), ['ip', '-4', 'address', 'show', 'dev', 'lo'])).toContain('inet 10.99.0.1/32');
    expect(await reach(ns('A'), ['10.0.1.3', '2001:db8:1::3', '10.99.0.3'])).toEqual({ '10.0.1.3': true, '2001:db8:1::3': true, '10.99.0.3': true });
    expect((await routingOf(run.id, 'A'))).toMatchObject({ running: true });
    await down(run.id);

    // {"routing": {"mode": "off"}} turns it off: no babeld, no default route.
    const off = (await upWithAgents('uplink.xml', { routing: { mode: 'off' } })).run;
    await simWait(off.id);
    expect(await routingOf(off.id, 'A')).toBeNull();
    expect((await inNs(off.nodes['A']!, ['ip', 'route', 'show', 'default'])).trim()).toBe('');
    expect((await inNs(off.nodes['R']!, ['ip', 'route', 'show', 'default'])).trim()).toBe(''); // not a gateway
    await down(off.id);
  }, slow(90_000));

  it('down leaves nothing behind: namespaces, host links, processes, stale WireGuard sockets, files', async () => {
    const before = await hostState();
    const { run } = await up('lan-5.xml');
    const ns1 = run.nodes['n1']!;
    // A process that ignores SIGTERM (needs SIGKILL), and a fake wireguard-go UAPI socket that
    // will be left behind when its owner is killed.
    const stubborn = background(ns1, ['sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.1; done']);
    await stubborn.line(/ready/);
    const createdWgDir = !existsSync(WIREGUARD_SOCKET_DIR);
    mkdirSync(WIREGUARD_SOCKET_DIR, { recursive: true });
    const sock = join(WIREGUARD_SOCKET_DIR, `${run.id}.sock`);
    const listener = background(run.nodes['n2']!, [
      'node',
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(sock)}, () => console.log('ready'))`,
    ]);
    await listener.line(/ready/);
    const during = await hostState();
    expect(during.namespaces).toEqual(expect.arrayContaining(run.namespaces));
    expect(during.links).toEqual(before.links); // nothing was created in the host namespace

    const report = await down(run.id);
    expect(report.namespaces.sort()).toEqual([...run.namespaces].sort());
    expect(report.killed).toBeGreaterThanOrEqual(1);
    expect(report.staleSockets).toContain(sock);
    const after = await hostState();
    expect(after.namespaces.filter((n) => !before.namespaces.includes(n))).toEqual([]);
    expect(after.links).toEqual(before.links);
    expect(existsSync(runDir(run.id))).toBe(false);
    expect(existsSync(sock)).toBe(false);
    await until('helper processes to exit', () => stubborn.child.exitCode !== null || stubborn.child.signalCode !== null);
    if (createdWgDir && readdirSync(WIREGUARD_SOCKET_DIR).length === 0) rmdirSync(WIREGUARD_SOCKET_DIR);

    // Idempotent: a second down finds nothing.
    const again = await cli('sim', 'down', run.id);
    expect(again).toMatchObject({ code: 0, out: `run ${run.id}: nothing to remove\n` });
  });

  it('down cleans a crashed run: namespaces without run.json', async () => {
    const id = newRunId();
    await runner(['ip', '-batch', '-'], { input: `netns add ${id}-n1\nnetns add ${id}-sw\n` });
    mkdirSync(join(runDir(id), 'logs'), { recursive: true });
    const report = await down(id);
    expect(report.namespaces.sort()).toEqual([`${id}-n1`, `${id}-sw`]);
    expect((await hostState()).namespaces.filter((n) => n.startsWith(`${id}-`))).toEqual([]);
    expect(existsSync(runDir(id))).toBe(false);
  });

  it('a failed build removes what it made', async () => {
    const before = await hostState();
    const file = join(tmpdir(), `scrooge-bad-${process.pid}.xml`);
    // A multicast MAC: the parser accepts it, the kernel refuses it half-way through the build.
    writeFileSync(
      file,
      `<scenario><devices><device id="1" name="a" type="prouter" class=""/><device id="2" name="b" type="prouter" class=""/></devices>` +
        `<links><link node1="1" node2="2"><iface1 id="0" mac="01:00:5e:00:00:01"/><iface2 id="0"/></link></links></scenario>`,
    );
    const id = newRunId();
    try {
      await expect(upRun({ scenarioPath: file, id, agents: false })).rejects.toMatchObject({ code: 'ECOMMAND' });
    } finally {
      unlinkSync(file);
    }
    const after = await hostState();
    expect(after.namespaces.filter((n) => !before.namespaces.includes(n))).toEqual([]);
    expect(existsSync(runDir(id))).toBe(false);
  });

  it('two runs at once with different ids do not collide', async () => {
    const [a, b] = await Promise.all([up('two-nodes.xml'), up('two-nodes.xml')]);
    // Same addresses in both runs, but each run is its own world: n1 of run A cannot see n2 of
    // run B's echo server, n1 of run B can.
    await startEcho(b.run.nodes['n2']!);
    expect(await reachUdp(a.run.nodes['n1']!, ['10.0.0.3'])).toEqual({ '10.0.0.3': false });
    expect(await reachUdp(b.run.nodes['n1']!, ['10.0.0.3'])).toEqual({ '10.0.0.3': true });
    const list = JSON.parse((await cli('sim', 'list', '--json')).out) as Array<{ id: string; namespaces: string }>;
    expect(list.filter((r) => r.id === a.run.id || r.id === b.run.id).map((r) => r.namespaces)).toEqual(['2/2', '2/2']);
    await down(a.run.id);
    expect(await reachUdp(b.run.nodes['n1']!, ['10.0.0.3'])).toEqual({ '10.0.0.3': true });
    await down(b.run.id);
  });

  it('lan-20 comes up in a couple of seconds; a second up with the same id is refused', async () => {
    const { run, ms } = await up('lan-20.xml');
    expect(run.namespaces).toHaveLength(21);
    expect(ms).toBeLessThan(3000);
    const again = await cli('sim', 'up', join(SCENARIOS, 'lan-20.xml'), '--id', run.id, '--no-agents');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(new RegExp(`sim run "${run.id}" already exists`));
    await down(run.id);
  });
});
