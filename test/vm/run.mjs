#!/usr/bin/env node
/**
 * Runs one command inside the test VM (issue 14) and exits with its exit code.
 *
 *   node test/vm/run.mjs [options] -- COMMAND [ARG...]
 *
 *   --timeout S   kill the VM after S seconds (default 600); exit code 124 then
 *   --mem SIZE    guest memory (default 6G: lan-20 runs 20 agents and their tunnels)
 *   --smp N       guest CPUs (default: the host's, at most 2)
 *   --accel A     kvm, tcg or auto (default): kvm only where the CPU shows VT-x/AMD-V
 *   --cpu MODEL   qemu CPU model (default: host under kvm, max under tcg)
 *   --verbose     show the kernel's boot messages
 *   --out DIR     keep the VM's output folder (/io inside: cmd, rc, and whatever the command
 *                 writes to $SCROOGE_VM_OUT) in DIR instead of a temporary folder
 *
 * The image comes from image.sh (built or taken from its cache). The VM has no network device:
 * every test host is a network namespace inside it, as on the host. It sees this repository
 * read-only over 9p at the same path as here (and node_modules wherever its symlink points),
 * and one writable 9p folder at /io. COMMAND runs as root in the repository, with the SCROOGE_*
 * and CI variables of this environment, and its output comes back on the serial console.
 *
 * The VM always ends: init powers it off after the command; a VM still running at the timeout
 * is killed, and so is one left behind when this process is interrupted.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = realpathSync(resolve(HERE, '../..'));

function usage(message) {
  console.error(`vm: ${message}\nusage: node test/vm/run.mjs [--timeout S] [--mem SIZE] [--smp N] [--accel kvm|tcg|auto] [--out DIR] -- COMMAND [ARG...]`);
  process.exit(2);
}

const opts = { timeout: 600, mem: '6G', smp: Math.min(2, cpus().length), accel: 'auto', cpu: undefined, out: undefined, verbose: false };
const argv = process.argv.slice(2);
let command;
while (argv.length) {
  const a = argv.shift();
  if (a === '--') { command = argv.splice(0); break; }
  const value = () => argv.shift() ?? usage(`${a} needs a value`);
  if (a === '--timeout') opts.timeout = Number(value());
  else if (a === '--mem') opts.mem = value();
  else if (a === '--smp') opts.smp = Number(value());
  else if (a === '--accel') opts.accel = value();
  else if (a === '--cpu') opts.cpu = value();
  else if (a === '--out') opts.out = resolve(value());
  else if (a === '--verbose') opts.verbose = true;
  else usage(`unknown option ${a}`);
}
if (!command?.length) usage('no command');
if (!(opts.timeout > 0)) usage('--timeout must be a positive number of seconds');
if (!['auto', 'kvm', 'tcg'].includes(opts.accel)) usage('--accel is kvm, tcg or auto');

function log(text) {
  console.error(`vm: ${text}`);
}

/** KVM needs /dev/kvm and a CPU that shows virtualization: these machines have the first only. */
function kvmWorks() {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return false;
  }
  return /^flags\s*:.*\b(vmx|svm)\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
}

function shellQuote(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

// ------------------------------------------------------------------------ image

const built = spawnSync('bash', [join(HERE, 'image.sh')], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
if (built.status !== 0) {
  log(`image.sh failed (exit ${built.status})`);
  process.exit(125);
}
const image = built.stdout.trim().split('\n').pop();

if (spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' }).status !== 0) {
  log('qemu-system-x86_64 missing: apt-get install -y --no-install-recommends qemu-system-x86');
  process.exit(125);
}

// ------------------------------------------------------------------------ shares and command

/** Read-only shares: the repository, and node_modules where it is a symlink out of it (a worktree). */
const shares = [REPO];
const nm = join(REPO, 'node_modules');
if (existsSync(nm) && lstatSync(nm).isSymbolicLink()) shares.push(realpathSync(nm));

const ioDir = opts.out ?? mkdtempSync(join(tmpdir(), 'scrooge-vm-'));
mkdirSync(join(ioDir, 'out'), { recursive: true });
rmSync(join(ioDir, 'rc'), { force: true });
const env = Object.entries(process.env).filter(([k]) => k.startsWith('SCROOGE_') || k === 'CI');
writeFileSync(join(ioDir, 'cmd'), [
  ...env.map(([k, v]) => `export ${k}=${shellQuote(v)}`),
  'export SCROOGE_VM=1 SCROOGE_VM_OUT=/io/out',
  `cd ${shellQuote(REPO)}`,
  command.length === 1 ? command[0] : command.map(shellQuote).join(' '),
  '',
].join('\n'));

const accel = opts.accel === 'auto' ? (kvmWorks() ? 'kvm' : 'tcg') : opts.accel;
const qemuArgs = [
  '-M', 'pc', '-accel', accel === 'kvm' ? 'kvm' : 'tcg,thread=multi', '-cpu', opts.cpu ?? (accel === 'kvm' ? 'host' : 'max'),
  '-smp', String(opts.smp), '-m', opts.mem,
  '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
  '-nic', 'none',
  '-kernel', join(image, 'vmlinux'), '-initrd', join(image, 'initrd.cpio'),
  '-append', [
    'console=ttyS0', opts.verbose ? 'initcall_debug ignore_loglevel' : 'quiet', 'panic=-1', 'rdinit=/init',
    // A test machine, not a router: no speculation mitigations (each costs TCG a lot), no
    // watchdogs, and trust the emulated clock rather than checking it.
    'mitigations=off', 'cryptomgr.notests', 'initcall_blacklist=crypto_kdf108_init', 'nowatchdog', 'tsc=reliable', 'no_timer_check',
    'scrooge.io=io', `scrooge.shares=${shares.map((p, i) => `p${i}:${p}`).join(',')}`,
  ].join(' '),
  '-virtfs', `local,path=${ioDir},mount_tag=io,security_model=none`,
  ...shares.flatMap((p, i) => ['-virtfs', `local,path=${p},mount_tag=p${i},security_model=none,readonly=on`]),
];

// ------------------------------------------------------------------------ boot, run, always end

log(`booting (${accel}, ${opts.smp} CPUs, ${opts.mem}, timeout ${opts.timeout} s): ${command.join(' ')}`);
const startedAt = Date.now();
const qemu = spawn('qemu-system-x86_64', qemuArgs, { stdio: ['ignore', 'pipe', 'inherit'] });
let timedOut = false;
const kill = () => {
  if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
};
const timer = setTimeout(() => {
  timedOut = true;
  log(`timeout after ${opts.timeout} s: killing the VM`);
  kill();
}, opts.timeout * 1000);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { kill(); process.exit(130); });
process.on('exit', kill);

let pending = '';
qemu.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  if (pending !== null) {
    pending += chunk.toString();
    if (pending.includes('scrooge-vm: running')) {
      log(`boot took ${((Date.now() - startedAt) / 1000).toFixed(1)} s (qemu start -> command)`);
      pending = null;
    } else if (pending.length > 1 << 16) pending = pending.slice(-256);
  }
});

const code = await new Promise((res) => qemu.on('exit', (c, s) => res(c ?? s)));
clearTimeout(timer);
const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
let rc;
try {
  rc = Number(readFileSync(join(ioDir, 'rc'), 'utf8').trim());
} catch {
  rc = timedOut ? 124 : 125;
  log(`the command left no exit code (qemu ended with ${code}${timedOut ? ', timed out' : ''})`);
}
log(`VM ended after ${seconds} s; command exit code ${rc}`);
if (!opts.out) rmSync(ioDir, { recursive: true, force: true });
process.exit(rc);
