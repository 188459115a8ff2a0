/**
 * Picks the WireGuard backend: the kernel module where the kernel has it, else wireguard-go
 * (these test machines have no module), else one clear error saying what to install.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ScroogeError } from '../../errors.js';
import type { Runner } from '../runner.js';
import type { WireGuardBackend } from './backend.js';
import { KernelBackend, kernelHost } from './kernel.js';
import { UserspaceBackend, userspaceHost, userspaceTimeouts } from './userspace.js';

/** True if `command` is an executable on the PATH (no process spawned). */
async function onPath(command: string): Promise<boolean> {
  const dirs = (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter(Boolean);
  for (const d of dirs) {
    try {
      await fs.access(join(d, command), fsConstants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

async function kernelMayHaveWireGuard(): Promise<boolean> {
  try {
    await fs.access('/sys/module/wireguard');
    return true;
  } catch {
    // not loaded (or built in without a sysfs entry): is a module installed?
  }
  let release: string;
  try {
    release = (await fs.readFile('/proc/sys/kernel/osrelease', 'utf8')).trim();
  } catch {
    return true; // cannot tell: let the probe decide
  }
  try {
    const dep = await fs.readFile(`/lib/modules/${release}/modules.dep`, 'utf8');
    return /\/wireguard\.ko/.test(dep);
  } catch {
    // No modules for this kernel, and none loaded or built in (built-ins show in /sys/module).
    return false;
  }
}

/**
 * wireguard-go watches its control socket with inotify: one inotify instance per tunnel, and the
 * kernel's default allows 128 per user for the whole machine. Past that, daemons fail with
 * "too many open files" and tunnels never come up. Raise the limit (root only) when it is low.
 */
export const INOTIFY_INSTANCES_WANTED = 8192;
const INOTIFY_FILE = '/proc/sys/fs/inotify/max_user_instances';
async function ensureInotifyInstances(log: Logger | undefined): Promise<void> {
  try {
    const current = Number((await fs.readFile(INOTIFY_FILE, 'utf8')).trim());
    if (current >= INOTIFY_INSTANCES_WANTED) return;
    await fs.writeFile(INOTIFY_FILE, String(INOTIFY_INSTANCES_WANTED));
    log?.info({ from: current, to: INOTIFY_INSTANCES_WANTED }, 'raised fs.inotify.max_user_instances: wireguard-go needs one per tunnel');
  } catch (err) {
    log?.warn({ err: (err as Error).message }, `cannot read or raise fs.inotify.max_user_instances; with many tunnels wireguard-go may fail with "too many open files"`);
  }
}

/**
 * `kernel` if `ip link add ... type wireguard` works (probed with a throwaway interface, only
 * where a module can exist at all), else `userspace` if wireguard-go is installed. The kernel
 * backend configures with `wg` (wireguard-tools); wireguard-go is configured over its own
 * socket and needs nothing else.
 */
export async function detectBackend(
  deps: { run: Runner; logger?: Logger },
  opts: { prefer: 'auto' | 'kernel' | 'userspace'; logFile: string; secretDir: string; commandTimeoutMs?: number },
): Promise<WireGuardBackend> {
  const log = deps.logger?.child({ component: 'wireguard' });
  const kernel = async () => {
    if (!(await kernelMayHaveWireGuard())) return false;
    const probe = `scprobe${randomBytes(3).toString('hex')}`;
    try {
      await deps.run(['ip', 'link', 'add', 'dev', probe, 'type', 'wireguard']);
      await deps.run(['ip', 'link', 'del', 'dev', probe]);
      return true;
    } catch {
      return false;
    }
  };
  if (opts.prefer !== 'userspace' && (await kernel())) {
    if (!(await onPath('wg')))
      throw new ScroogeError('ENOWG', 'the kernel has WireGuard but `wg` (wireguard-tools) is not installed', 'install it: apt-get install --no-install-recommends wireguard-tools (or set tunnels.backend to "userspace")');
    log?.info({ backend: 'kernel' }, 'WireGuard backend: kernel module');
    return new KernelBackend(kernelHost(deps.run, opts.secretDir), log);
  }
  if (opts.prefer === 'kernel')
    throw new ScroogeError('ENOWG', 'tunnels.backend is "kernel" but this kernel cannot create WireGuard interfaces', 'load the wireguard module, or set tunnels.backend to "auto"');
  if (await onPath('wireguard-go')) {
    log?.info({ backend: 'userspace' }, 'WireGuard backend: wireguard-go (no kernel module)');
    await ensureInotifyInstances(log);
    return new UserspaceBackend(userspaceHost(deps.run, opts.logFile, userspaceTimeouts(opts.commandTimeoutMs ?? 0)), log);
  }
  throw new ScroogeError('ENOWG', 'no WireGuard: this kernel has no wireguard module and wireguard-go is not installed',
    'install it: apt-get install --no-install-recommends wireguard-go (or load the kernel module)');
}
