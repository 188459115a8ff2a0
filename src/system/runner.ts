/**
 * The one command runner: every `ip`, `wg`, `tc`, `nft`, `iptables` call goes through here.
 * argv array (never a shell), LC_ALL=C so output is parseable, a timeout, the exit codes that
 * are fine for this call, and a CommandError carrying argv and stderr otherwise.
 * Secrets go in on stdin (`input`) or a 0600 file, never on argv.
 * (After Tailscale's osrouter/runner.go.)
 */
import { execa } from 'execa';
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
  signal?: AbortSignal;
}

export interface RunResult {
  argv: readonly string[];
  exitCode: number;
  stdout: string;
  stderr: string;
}

export type Runner = (argv: readonly string[], options?: RunOptions) => Promise<RunResult>;

const DEFAULT_TIMEOUT_MS = 10_000;

export function createRunner(deps: { logger?: Logger } = {}): Runner {
  const log = deps.logger?.child({ component: 'runner' });
  return async (argv, options = {}) => {
    if (argv.length === 0 || !argv[0]) throw new TypeError('runner: empty argv');
    const full = options.netns ? ['ip', 'netns', 'exec', options.netns, ...argv] : [...argv];
    const started = performance.now();
    const result = await execa(full[0]!, full.slice(1), {
      reject: false,
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      env: { LC_ALL: 'C' },
      ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' as const }),
      ...(options.signal ? { cancelSignal: options.signal } : {}),
      stripFinalNewline: false,
    });
    const ms = Math.round(performance.now() - started);
    const ok = options.okExitCodes ?? [0];
    const stdout = typeof result.stdout === 'string' ? result.stdout : '';
    const stderr = typeof result.stderr === 'string' ? result.stderr : '';
    if (result.timedOut || result.isCanceled || result.exitCode === undefined || !ok.includes(result.exitCode)) {
      const why = result.timedOut
        ? `timed out after ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`
        : result.isCanceled
          ? 'was cancelled'
          : result.exitCode === undefined
            ? `did not run (${result.code ?? result.signal ?? 'unknown'})`
            : undefined;
      log?.debug({ argv: full, ms, exitCode: result.exitCode, stderr: stderr.trim() }, 'command failed');
      throw new CommandError(full, result.exitCode, stderr, why);
    }
    log?.trace({ argv: full, ms }, 'command');
    return { argv: full, exitCode: result.exitCode, stdout, stderr };
  };
}
