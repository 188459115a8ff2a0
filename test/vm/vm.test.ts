/**
 * The kernel WireGuard backend (issue 14), from `npm test`: where this kernel can make WireGuard
 * links, natively; elsewhere (these machines) inside the test VM (run.mjs: qemu, TCG).
 *
 * Always: netns-kernel.sh, the netns tests that matter for the kernel path (two-nodes with
 * iperf3 beside a bare kernel pair, lan-5 started at once, kill -9 + adoption, the untunneled
 * drop, the line of five over babeld), about 4 minutes under TCG. With SCROOGE_VM_FULL=1 also
 * smoke-agent.sh (two-nodes through the CLI as an operator runs it).
 *
 * Needs root, a built dist/, and qemu-system-x86 where the kernel has no module. Not part of the
 * netns project: it is one VM boot per test, not namespaces on this host.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const isRoot = process.getuid?.() === 0;

/** True if this kernel makes WireGuard links (probed with a throwaway interface). */
function kernelHasWireGuard(): boolean {
  if (!isRoot) return false;
  const probe = `scvm${randomBytes(3).toString('hex')}`;
  if (spawnSync('ip', ['link', 'add', 'dev', probe, 'type', 'wireguard'], { stdio: 'ignore' }).status !== 0) return false;
  spawnSync('ip', ['link', 'del', 'dev', probe], { stdio: 'ignore' });
  return true;
}
const native = kernelHasWireGuard();
const haveQemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' }).status === 0;

/** Runs `sh SCRIPT` natively or in the VM; resolves with its exit code, printing its output. */
function runScript(script: string, env: Record<string, string>, timeoutS: number): Promise<number> {
  const argv = native ? ['sh', script] : [process.execPath, 'test/vm/run.mjs', '--timeout', String(timeoutS), '--', 'sh', script];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

describe.skipIf(!isRoot || (!native && !haveQemu))(`kernel WireGuard backend (${native ? 'this kernel' : 'in a VM'})`, () => {
  it('the netns tests of the kernel path (two-nodes, lan-5, kill -9, untunneled drop, line of five over babeld)', async () => {
    expect(await runScript('test/vm/netns-kernel.sh', native ? { SCROOGE_TEST_SLOWDOWN: '1' } : {}, 1500)).toBe(0);
  }, 1_800_000);

  it.runIf(process.env['SCROOGE_VM_FULL'] === '1')('two-nodes with tunnels.backend "kernel" through the CLI: tunnels, ping over them, nothing left after sim down', async () => {
    expect(await runScript('test/vm/smoke-agent.sh', {}, 480)).toBe(0);
  }, 600_000);
});
