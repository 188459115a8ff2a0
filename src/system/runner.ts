/**
 * The one command runner: every `ip`, `wg`, `tc`, `nft`, `iptables` call goes through here.
 * argv array (never a shell), LC_ALL=C so output is parseable, a timeout, the exit codes that
 * are fine for this call, and a CommandError carrying argv and stderr otherwise.
 * Secrets go in on stdin (`input`) or a 0600 file, never on argv.
 * (After Tailscale's osrouter/runner.go.)
 *
 * Built on node:child_process directly: the agent is a long-lived daemon on small routers, and
 * execa's module graph alone costs it about 10 MiB of memory for features (streams,
 * interleaving, pipes between processes) that a runner of short `ip`/`tc` calls never uses.
 */
import { COMMAND_TIMEOUT_MS } from '../config/tunables.js';
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { CommandError } from '../errors.js';

export interface RunOptions {
  /** Written to the command's stdin. Use it for secrets and for batches (`nft -f -`). */
  input?: string;
  /** Exit codes that count as success for this call (default [0]). */
  okExitCodes?: readonly number[];
  /** Kill the command after this long (default 10 s). */
  timeoutMs?: number;
  /** Run inside this network namespace (`ip netns exec NAME ...`). */
  netns?: string;
  /** Added to the environment (which LC_ALL=C still overrides). */
  env?: Readonly<Record<string, string>>;
  signal?: AbortSignal;
}

export interface RunResult {
  argv: readonly string[];
  exitCode: number;
  stdout: string;
  stderr: string;
}

export type Runner = (argv: readonly string[], options?: RunOptions) => Promise<RunResult>;

/** Output kept per stream: our commands print kilobytes; a runaway one must not fill memory. */
const MAX_OUTPUT = 16 << 20;

interface Finished {
  exitCode: number | undefined;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Why it did not run or did not finish: ENOENT, a timeout, a cancel. */
  why: string | undefined;
}

function execute(argv: readonly string[], options: RunOptions, defaultTimeoutMs: number): Promise<Finished> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let why: string | undefined;
    let settled = false;
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...options.env, LC_ALL: 'C' },
      stdio: [options.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
    const timer = setTimeout(() => {
      why = `timed out after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    const onAbort = () => {
      why = 'was cancelled';
      child.kill('SIGKILL');
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (exitCode: number | undefined, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve({ exitCode, signal, stdout, stderr, why });
    };
    child.stdout!.setEncoding('utf8').on('data', (d: string) => void (stdout.length < MAX_OUTPUT && (stdout += d)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => void (stderr.length < MAX_OUTPUT && (stderr += d)));
    child.once('error', (err: NodeJS.ErrnoException) => {
      why ??= `did not run (${err.code ?? err.message})`;
      finish(undefined, null);
    });
    child.once('close', (code, signal) => finish(code ?? undefined, signal));
    if (options.input !== undefined) {
      // A command that exits before reading all of its input is judged by its exit code.
      child.stdin!.on('error', () => {});
      child.stdin!.end(options.input);
    }
    if (options.signal?.aborted) onAbort();
  });
}

/** @param deps.timeoutMs for commands that do not set their own (default COMMAND_TIMEOUT_MS) */
export function createRunner(deps: { logger?: Logger; timeoutMs?: number } = {}): Runner {
  const defaultTimeoutMs = deps.timeoutMs ?? COMMAND_TIMEOUT_MS;
  const log = deps.logger?.child({ component: 'runner' });
  return async (argv, options = {}) => {
    if (argv.length === 0 || !argv[0]) throw new TypeError('runner: empty argv');
    const full = options.netns ? ['ip', 'netns', 'exec', options.netns, ...argv] : [...argv];
    const started = performance.now();
    const r = await execute(full, options, defaultTimeoutMs);
    const ms = Math.round(performance.now() - started);
    const ok = options.okExitCodes ?? [0];
    if (r.why !== undefined || r.exitCode === undefined || !ok.includes(r.exitCode)) {
      const why = r.why ?? (r.exitCode === undefined ? `did not run (killed by ${r.signal ?? 'a signal'})` : undefined);
      log?.debug({ argv: full, ms, exitCode: r.exitCode, stderr: r.stderr.trim() }, 'command failed');
      throw new CommandError(full, r.exitCode, r.stderr, why);
    }
    log?.trace({ argv: full, ms }, 'command');
    return { argv: full, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  };
}
