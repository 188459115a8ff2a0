/**
 * The kernel backend: `ip link add ... type wireguard`, configured with `wg setconf` from
 * wireguard-tools (the private key in a 0600 file in the agent's 0700 state directory: never on
 * argv, and `wg` reads /dev/stdin with fopen, which fails on the socket pair node gives a child
 * as stdin), read back with one `wg show all dump` (netlink, scoped to this network namespace).
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { TunnelIntent } from '../../neighbors/core.js';
import type { Runner } from '../runner.js';
import { BaseBackend, type WireGuardHost } from './backend.js';
import { systemHost } from './host.js';
import { parseWgDump, wgConfig, type LiveTunnel } from './text.js';

export interface KernelHost extends WireGuardHost {
  /** Writes `text` to a fresh 0600 file only root can read, runs `use(path)`, removes the file. */
  withSecretFile<T>(text: string, use: (path: string) => Promise<T>): Promise<T>;
}

/** Key files live for one `wg setconf`, in the agent's state directory (0700), never in /tmp. */
export function kernelHost(run: Runner, secretDir: string): KernelHost {
  return {
    ...systemHost(run),
    async withSecretFile(text, use) {
      await fs.mkdir(secretDir, { recursive: true, mode: 0o700 });
      const file = join(secretDir, `wg.${randomBytes(4).toString('hex')}.conf`);
      const handle = await fs.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
      try {
        await handle.writeFile(text);
        await handle.close();
        return await use(file);
      } finally {
        await fs.rm(file, { force: true });
      }
    },
  };
}

export class KernelBackend extends BaseBackend {
  readonly kind = 'kernel' as const;
  readonly slowToCreate = false;

  constructor(protected override readonly host: KernelHost, log: Logger | undefined) {
    super(host, log);
  }

  /** Creating a kernel interface is cheap: nothing to prepare. */
  override async prepare(_ifname: string): Promise<void> {}

  protected async configure(t: TunnelIntent): Promise<void> {
    await this.host.withSecretFile(wgConfig(t), (file) => this.host.run(['wg', 'setconf', t.ifname, file]));
  }

  protected async create(missing: readonly TunnelIntent[]): Promise<Map<string, string>> {
    const failed = new Map<string, string>();
    if (!missing.length) return failed;
    try {
      await this.host.run(['ip', '-batch', '-'], { input: missing.map((t) => `link add dev ${t.ifname} type wireguard`).join('\n') + '\n' });
    } catch {
      for (const t of missing) {
        try {
          await this.host.run(['ip', 'link', 'add', 'dev', t.ifname, 'type', 'wireguard']);
        } catch (err) {
          failed.set(t.ifname, (err as Error).message);
        }
      }
    }
    return failed;
  }

  async read(ifnames: readonly string[]): Promise<Map<string, LiveTunnel>> {
    if (!ifnames.length) return new Map();
    const { stdout } = await this.host.run(['wg', 'show', 'all', 'dump']);
    const all = parseWgDump(stdout, true);
    return new Map([...all].filter(([k]) => ifnames.includes(k)));
  }
}
