/**
 * Routing over tunnels with the real babeld, no agent: three namespaces in a line A - B - C,
 * each pair joined by a hand-built wireguard-go tunnel that carries one fe80 address per node
 * (as the agent's tunnels do), a RoutingSupervisor per node running babeld on the tunnels only
 * and the mesh addresses on lo. Real packets: A pings C's mesh addresses (IPv6, and IPv4 over
 * IPv6 next hops), traceroute crosses B; timings are measured and printed: tunnel added ->
 * route installed, dead tunnel -> withdrawn, babeld killed -> routes back, tunnel removed ->
 * withdrawn while babeld keeps running (the flush-interface case).
 *
 * Needs root, babeld, wireguard-go, wg, ping and traceroute. Touches only its own namespaces
 * (`bl<id>*`), its own wireguard-go interfaces (`w<id>*`) and a temporary folder.
 */
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RoutingSupervisor, spawnBabeld } from '../../src/routing/supervisor.js';
import { Lab, babeldProcesses, wireguardGoOf } from './babeldlab.js';
import { isRoot, ping, runner, step, until } from './lib.js';

/** Milliseconds until `check` holds (polled every 20 ms). */
async function timeUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<number> {
  const t0 = performance.now();
  await until(what, async () => (await check()) || undefined, timeoutMs);
  return Math.round(performance.now() - t0);
}

const figures: string[] = [];
function figure(text: string): void {
  figures.push(text);
  step('figure', text);
}

/** True if `name`'s babeld has a usable (finite metric, installed) route to `prefix`. */
async function usable(lab: Lab, name: string, prefix: string): Promise<boolean> {
  const routes = await lab.node(name).routing.routes();
  return routes.some((r) => r.prefix === prefix && r.installed && r.reachable);
}

/** The tunnel passes packets (WireGuard handshake done): the agent adds a tunnel to babeld only then. */
async function tunnelWorks(lab: Lab, a: string, b: string): Promise<void> {
  const dev = `w${lab.id}${a}${b}`;
  await until(`${a}-${b} tunnel passes packets`, () => ping(lab.node(a).ns, `${lab.node(b).linkLocal}%${dev}`), 10_000);
}

async function load(): Promise<string> {
  return (await runner(['cat', '/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
}

describe.skipIf(!isRoot)('babeld over wireguard-go tunnels (netns, root)', () => {
  const lab = new Lab();
  let seg: { ab: { addrA: string; addrB: string }; bc: { addrA: string; addrB: string } };

  beforeAll(async () => {
    step(`lab ${lab.id}`, `load average ${await load()}`);
    await lab.addNodes(['a', 'b', 'c']);
    seg = { ab: await lab.segment('a', 'b'), bc: await lab.segment('b', 'c') };
    for (const N of lab.nodes.values()) await N.routing.start();
  });

  afterAll(async () => {
    await lab.destroy();
    console.log(`\nbabeld routing figures (load average ${await load()}):\n  ${figures.join('\n  ')}\n`);
  });

  it('runs one babeld per node on nothing but its placeholder, with the mesh addresses on lo', async () => {
    for (const N of lab.nodes.values()) {
      const lo = (await runner(['ip', '-n', N.ns, '-br', 'address', 'show', 'dev', 'lo'])).stdout;
      expect(lo).toContain(`${N.mesh6}/128`);
      expect(lo).toContain(`${N.mesh4}/32`);
      expect(N.routing.status().running).toBe(true);
      expect(await N.routing.set([])).toEqual([]);
    }
    expect(babeldProcesses(lab.dir)).toHaveLength(3);
  });

  it('a route over a new tunnel appears fast, and a second tunnel carries it two hops', async () => {
    const [A, B, C] = [lab.node('a'), lab.node('b'), lab.node('c')];
    await lab.tunnel('a', 'b', seg.ab, 51000);
    await tunnelWorks(lab, 'a', 'b');
    let t0 = performance.now();
    await lab.sync('a', 'b');
    await timeUntil('A has a usable route to B', async () => (await usable(lab, 'a', `${B.mesh6}/128`)) && !!(await lab.babelRoute('a', B.mesh6)));
    const oneHop = Math.round(performance.now() - t0);
    figure(`tunnel A-B added to babeld -> A's route to B usable and in the kernel: ${oneHop} ms`);

    await lab.tunnel('b', 'c', seg.bc, 51010);
    await tunnelWorks(lab, 'b', 'c');
    t0 = performance.now();
    await lab.sync('b', 'c');
    await timeUntil('A has usable routes to C', async () => (await usable(lab, 'a', `${C.mesh6}/128`)) && (await usable(lab, 'a', `${C.mesh4}/32`)));
    const twoHops = Math.round(performance.now() - t0);
    // And the way back, before anything pings.
    await until('C has usable routes to A', async () => (await usable(lab, 'c', `${A.mesh6}/128`)) && (await usable(lab, 'c', `${A.mesh4}/32`)), 10_000);
    figure(`tunnel B-C added to babeld -> A's routes to C (two hops, v6 and v4) usable: ${twoHops} ms`);
    expect(oneHop).toBeLessThan(5000);
    expect(twoHops).toBeLessThan(5000);
    step(A.ns, `load average ${await load()}`);

    // `ip route show ... proto babel` filters on the protocol, so it is not printed again.
    const v6 = await lab.babelRoute('a', C.mesh6);
    const v4 = await lab.babelRoute('a', `${C.mesh4}/32`);
    step(A.ns, `ip route: ${v6} | ${v4}`);
    expect(v6).toMatch(new RegExp(`via ${B.linkLocal} dev w${lab.id}ab src ${A.mesh6}`));
    expect(v4).toMatch(new RegExp(`via inet6 ${B.linkLocal} dev w${lab.id}ab src ${A.mesh4}`));
    const states = await A.routing.set([{ ifname: `w${lab.id}ab` }]);
    expect(states).toEqual([{ ifname: `w${lab.id}ab`, state: 'up', linkLocal: A.linkLocal, neighbours: 1 }]);
  });

  it('A reaches C\'s mesh addresses through B, v6 and v4 over v6 next hops', async () => {
    const [A, B, C] = [lab.node('a'), lab.node('b'), lab.node('c')];
    expect(await ping(A.ns, C.mesh6, 3)).toBe(true);
    expect(await ping(A.ns, C.mesh4, 3)).toBe(true);
    expect(await ping(C.ns, A.mesh4, 1)).toBe(true);
    const tr6 = (await runner(['traceroute', '-n', '-q', '1', '-w', '1', C.mesh6], { netns: A.ns, timeoutMs: 20_000 })).stdout;
    const tr4 = (await runner(['traceroute', '-n', '-q', '1', '-w', '1', C.mesh4], { netns: A.ns, timeoutMs: 20_000 })).stdout;
    step(A.ns, `traceroute6:\n${tr6}traceroute4:\n${tr4}`);
    const hops = (out: string) => out.split('\n').slice(1).filter(Boolean).map((l) => l.trim().split(/\s+/)[1]);
    expect(hops(tr6)).toEqual([B.mesh6, C.mesh6]);
    expect(hops(tr4)).toEqual([B.mesh4, C.mesh4]);
  });

  it('announces nothing of the raw segments, and babeld runs on no raw interface', async () => {
    const [A, C] = [lab.node('a'), lab.node('c')];
    const cRoutes = (await runner(['ip', '-n', C.ns, '-4', 'route', 'show'])).stdout;
    expect(cRoutes).not.toMatch(/10\.77\.1\./);
    const routes = await A.routing.routes();
    step(A.ns, `routes(): ${routes.map((r) => `${r.prefix} via ${r.via} ${r.ifname} ${r.metric}${r.installed ? ' installed' : ''}`).join('; ')}`);
    const prefixes = new Set(routes.map((r) => r.prefix));
    expect([...prefixes].sort()).toEqual([`${lab.node('b').mesh6}/128`, `${lab.node('b').mesh4}/32`, `${C.mesh6}/128`, `${C.mesh4}/32`].sort());
    expect(routes.every((r) => r.ifname === `w${lab.id}ab`)).toBe(true);
    expect(routes.filter((r) => r.installed)).toHaveLength(4);
  });

  it('a dead tunnel is withdrawn within seconds, and comes back with its underlay', async () => {
    const [A, B, C] = [lab.node('a'), lab.node('b'), lab.node('c')];
    // The underlay of B-C dies; both tunnel ends still exist (the peer just went silent).
    await runner(['ip', '-n', C.ns, 'link', 'set', 'eb', 'down']);
    try {
      const gone = await timeUntil("A's route to C retracted", async () => !(await usable(lab, 'a', `${C.mesh6}/128`)));
      figure(`B-C underlay dead -> A's route to C retracted (metric infinite): ${gone} ms`);
      expect(gone).toBeLessThan(5000);
      // babeld 1.12.1 keeps a retracted route in the kernel until it expires (hold time, checked
      // every ~30 s): packets to C still go to B, which has no usable way on either.
      step(A.ns, `kernel route to C while retracted: ${(await lab.babelRoute('a', C.mesh6)) ?? '(none)'}`);
      expect(await ping(A.ns, C.mesh6, 1)).toBe(false);
    } finally {
      await runner(['ip', '-n', C.ns, 'link', 'set', 'eb', 'up']);
    }
    const back = await timeUntil("A's route to C back", async () => usable(lab, 'a', `${C.mesh6}/128`));
    figure(`B-C underlay back -> A's route to C usable again: ${back} ms`);
    await until('A pings C again', () => ping(A.ns, C.mesh6, 1), 10_000);
    expect(B.routing.status().restarts).toBe(0);
  });

  it('babeld killed: restarted, its tunnels re-added, routes back within 5 s', async () => {
    const [A, B, C] = [lab.node('a'), lab.node('b'), lab.node('c')];
    const pid = B.routing.status().pid!;
    expect(pid).toBeGreaterThan(1);
    process.kill(pid, 'SIGKILL');
    const t0 = performance.now();
    await until('B babeld restarted', () => B.routing.status().restarts === 1 && B.routing.status().running, 10_000);
    const restarted = Math.round(performance.now() - t0);
    await until("B's routes to A and C back", async () => (await usable(lab, 'b', `${C.mesh6}/128`)) && (await usable(lab, 'b', `${A.mesh6}/128`))
      && !!(await lab.babelRoute('b', C.mesh6)) && !!(await lab.babelRoute('b', A.mesh6)), 10_000);
    const routesBack = Math.round(performance.now() - t0);
    await until('A pings C', () => ping(A.ns, C.mesh6, 1), 10_000);
    const pingBack = Math.round(performance.now() - t0);
    figure(`B's babeld SIGKILLed -> restarted ${restarted} ms, B's routes usable again ${routesBack} ms, A->C ping answers ${pingBack} ms`);
    expect(routesBack).toBeLessThan(5000);
    expect(B.routing.status().pid).not.toBe(pid);
    const states = await B.routing.set([...B.tunnels].map((ifname) => ({ ifname })));
    expect(states.map((s) => s.state)).toEqual(['up', 'up']);
    expect(babeldProcesses(lab.dir)).toHaveLength(3);
  });

  it('a tunnel removed: its routes are withdrawn, babeld keeps running, flushes it only once its neighbour is gone', async () => {
    const [A, B, C] = [lab.node('a'), lab.node('b'), lab.node('c')];
    const t = lab.tunnels.find((x) => x.a === 'b' && x.b === 'c')!;
    const pidB = B.routing.status().pid;
    const t0 = performance.now();
    await lab.removeTunnel(t);
    await lab.sync('b', 'c');
    // At B the interface is gone, so babeld drops its routes over it at once, kernel included.
    const local = await timeUntil("B's kernel route to C gone", async () => !(await lab.babelRoute('b', C.mesh6)));
    const remote = await timeUntil("A's route to C retracted", async () => !(await usable(lab, 'a', `${C.mesh6}/128`)));
    figure(`tunnel B-C removed -> B's kernel route to C gone ${local} ms, A's route retracted ${Math.round(performance.now() - t0)} ms`);
    expect(remote + local).toBeLessThan(5000);
    // babeld 1.12.1 frees a flushed interface but keeps its neighbours: B waits for the neighbour to expire.
    const draining = (await B.routing.set([...B.tunnels].map((ifname) => ({ ifname })))).find((s) => s.ifname === t.ifA);
    step(B.ns, `removed tunnel: ${JSON.stringify(draining)}`);
    expect(draining?.state).toBe('draining');
    const flushed = await timeUntil('B flushed the removed tunnel', () => !B.routing.status().interfaces.some((s) => s.ifname === t.ifA), 30_000);
    figure(`tunnel B-C removed -> neighbour expired and interface flushed after ${Math.round(performance.now() - t0)} ms (drain ${flushed} ms)`);
    expect(B.routing.status().pid).toBe(pidB);
    expect(B.routing.status().running).toBe(true);
    expect((await B.routing.routes()).some((r) => r.ifname === t.ifA)).toBe(false);

    // The same names again (a rebuilt tunnel): babeld takes it, routes come back.
    await lab.tunnel('b', 'c', seg.bc, 51020);
    await tunnelWorks(lab, 'b', 'c');
    const t1 = performance.now();
    await lab.sync('b', 'c');
    await until('A routes to C again', async () => usable(lab, 'a', `${C.mesh6}/128`), 10_000);
    figure(`tunnel B-C rebuilt under the same names -> A's route to C usable: ${Math.round(performance.now() - t1)} ms`);
    await until('A pings C', () => ping(A.ns, C.mesh6, 1), 10_000);
    expect(B.routing.status().pid).toBe(pidB);
  });

  it('a gateway announces the default routes its uplink gives it; A uses them two hops away', async () => {
    const [A, C] = [lab.node('a'), lab.node('c')];
    // U is C's uplink: a host with no routing of its own.
    await lab.addNodes(['u']);
    const U = lab.node('u');
    await runner(['ip', 'link', 'add', 'eu', 'netns', C.ns, 'type', 'veth', 'peer', 'name', 'ec', 'netns', U.ns]);
    await runner(['ip', '-n', U.ns, '-batch', '-'], { input: 'link set lo up\naddress add 10.99.0.1/24 dev ec\naddress add fd99::1/64 dev ec nodad\nlink set ec up\nroute add 10.55.0.0/16 via 10.99.0.2\n' });
    await runner(['ip', '-n', C.ns, '-batch', '-'], { input: 'address add 10.99.0.2/24 dev eu\naddress add fd99::2/64 dev eu nodad\nlink set eu up\n' });
    // Defaults as an operator writes them: `proto boot`, which babeld only matches when named.
    await runner(['ip', '-n', C.ns, 'route', 'add', 'default', 'via', '10.99.0.1']);
    await runner(['ip', '-n', C.ns, '-6', 'route', 'add', 'default', 'via', 'fd99::1']);
    // Filters are fixed when babeld starts: C's supervisor is built again as a gateway.
    await C.routing.stop();
    C.routing = new RoutingSupervisor(
      { run: (argv, o) => runner(argv, { ...o, netns: C.ns }), spawn: (argv, o) => spawnBabeld(['ip', 'netns', 'exec', C.ns, ...argv], o),
        sysctl: { read: async (k) => (await runner(['cat', `/proc/sys/${k}`], { netns: C.ns, okExitCodes: [0, 1] })).stdout.trim() || undefined,
          write: async (k, v) => void (await runner(['sysctl', '-q', '-w', `${k}=${v}`], { netns: C.ns })) } },
      { stateDir: C.stateDir, mesh6: C.mesh6, mesh4: C.mesh4, gateway: { ipv6: true, ipv4: true } },
    );
    await C.routing.start();
    const t0 = performance.now();
    await lab.sync('c');
    await until("A's default routes via the gateway", async () => (await usable(lab, 'a', '0.0.0.0/0')) && (await usable(lab, 'a', '::/0')), 15_000);
    figure(`gateway C (re)started -> A's default routes (v4 and v6) usable: ${Math.round(performance.now() - t0)} ms`);
    const v4 = await lab.babelRoute('a', 'default');
    step(A.ns, `default route: ${v4}`);
    expect(v4).toMatch(/via inet6 fe80::/);
    expect(await ping(A.ns, '10.99.0.1', 2)).toBe(true);
    // Announced: its mesh addresses and the defaults, nothing of its uplink segment.
    const aRoutes = (await A.routing.routes()).map((r) => r.prefix);
    expect(aRoutes.some((p) => p.startsWith('10.99.') || p.startsWith('fd99:'))).toBe(false);
    // The uplink loses its default: the gateway stops announcing one.
    await runner(['ip', '-n', C.ns, 'route', 'del', 'default']);
    // babeld 1.12.1 never retracts a route it stops announcing (~22 s until it expires): the
    // supervisor restarts it cleanly instead, and the new one announces only the v6 default.
    const gone = await timeUntil("A's v4 default retracted", async () => !(await usable(lab, 'a', '0.0.0.0/0')));
    figure(`gateway's uplink v4 default removed -> A's v4 default retracted: ${gone} ms (by the relaunched gateway babeld's SIGTERM)`);
    expect(gone).toBeLessThan(5000);
    await until('C relaunched babeld', () => C.routing.status().relaunches === 1 && C.routing.status().running, 10_000);
    const back = await timeUntil("A's v6 default back", () => usable(lab, 'a', '::/0'));
    figure(`... and A's v6 default usable again from the relaunched babeld after ${back} ms more`);
    expect(await usable(lab, 'a', '0.0.0.0/0')).toBe(false);
    expect(C.routing.status().restarts).toBe(0);
  });

  it('stop leaves nothing: no babeld, socket, pid/state file, babel route or mesh address', async () => {
    for (const N of ['a', 'b', 'c'].map((n) => lab.node(n))) {
      await N.routing.stop();
      await N.routing.stop();
      expect(readdirSync(N.stateDir)).toEqual(['babeld.log']);
      const lo = (await runner(['ip', '-n', N.ns, '-br', 'address', 'show', 'dev', 'lo'])).stdout;
      expect(lo).not.toContain(N.mesh6);
      expect(lo).not.toContain(N.mesh4);
      for (const family of ['-4', '-6'])
        expect((await runner(['ip', family, '-n', N.ns, 'route', 'show', 'proto', 'babel'])).stdout.trim()).toBe('');
      expect((await runner(['cat', '/proc/sys/net/ipv4/ip_forward'], { netns: N.ns })).stdout.trim()).toBe('0');
    }
    expect(babeldProcesses(lab.dir)).toEqual([]);
    expect(wireguardGoOf([...lab.tunnels.flatMap((t) => [t.ifA, t.ifB])])).toHaveLength(4); // the lab's, removed by destroy()
  });

  it('babeld missing: one clear line saying what to install', async () => {
    // Inside a lab namespace, so that even a bug here could not touch the host.
    const ns = lab.node('a').ns;
    const s = new RoutingSupervisor({ run: (argv, o) => runner(argv, { ...o, netns: ns }) }, { stateDir: `${lab.dir}/missing`, mesh6: lab.node('a').mesh6, binary: 'babeld-not-installed' });
    await expect(s.start()).rejects.toThrow('routing is "babeld" but babeld is not installed');
    expect(existsSync(`${lab.dir}/missing`)).toBe(false);
  });
});
