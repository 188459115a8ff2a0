/** The system behind the WireGuard backends' host interfaces (the fake is test/unit/fakewireguard.ts). */
import { createSocket } from 'node:dgram';
import { readdirSync } from 'node:fs';
import type { Runner } from '../runner.js';
import type { WireGuardHost } from './backend.js';

/** True if nothing else holds UDP `port` (v4 or v6). */
export async function udpPortFree(port: number): Promise<boolean> {
  const s = createSocket({ type: 'udp6', ipv6Only: false });
  return new Promise((resolve) => {
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, '::', () => s.close(() => resolve(true)));
  });
}

export function systemHost(run: Runner): WireGuardHost {
  return {
    run,
    async links() {
      // sysfs lists this network namespace's links (`ip netns exec` mounts it for the
      // namespace); cheaper than a process, and it sees links that have no address yet.
      // Synchronous: a directory of a few dozen names in sysfs, read once a second; a trip
      // through the thread pool would cost the idle agent a wakeup more.
      try {
        return readdirSync('/sys/class/net');
      } catch {
        const { stdout } = await run(['ip', '-j', 'link', 'show']);
        return (JSON.parse(stdout || '[]') as { ifname: string }[]).map((l) => l.ifname);
      }
    },
    portFree: udpPortFree,
  };
}
