// The one command runner (src/system/runner.ts), with real (harmless) processes: argv without
// a shell, LC_ALL=C, stdin input, the exit codes that are fine for a call, timeouts, cancels,
// and errors that carry argv and stderr.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { CommandError } from '../../src/errors.js';
import { createRunner } from '../../src/system/runner.js';

const run = createRunner();

describe('command runner', () => {
  it('runs argv without a shell and returns stdout and stderr whole', async () => {
    const r = await run(['sh', '-c', 'printf "a b\\n"; printf "oops" >&2', 'ignored $HOME']);
    expect(r).toMatchObject({ exitCode: 0, stdout: 'a b\n', stderr: 'oops' });
    const literal = await run(['printf', '%s', '$HOME; rm -rf /']);
    expect(literal.stdout).toBe('$HOME; rm -rf /');
  });

  it('sets LC_ALL=C and keeps the rest of the environment', async () => {
    const r = await run(['sh', '-c', 'echo "$LC_ALL $PATH"']);
    expect(r.stdout.trim()).toBe(`C ${process.env['PATH']}`);
  });

  it('feeds input on stdin (for batches and secrets)', async () => {
    expect((await run(['cat'], { input: 'line 1\nline 2\n' })).stdout).toBe('line 1\nline 2\n');
    // A command that does not read its input is judged by its exit code only.
    expect((await run(['true'], { input: 'x'.repeat(1 << 20) })).exitCode).toBe(0);
  });

  it('a failing command is a CommandError with argv, exit code and stderr; okExitCodes widen success', async () => {
    const err = await run(['sh', '-c', 'echo "RTNETLINK answers: File exists" >&2; exit 2']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err).toMatchObject({ exitCode: 2, argv: ['sh', '-c', 'echo "RTNETLINK answers: File exists" >&2; exit 2'] });
    expect((err as Error).message).toMatch(/exited 2: RTNETLINK answers: File exists$/);
    expect((await run(['sh', '-c', 'exit 1'], { okExitCodes: [0, 1] })).exitCode).toBe(1);
  });

  it("the runner's own timeout (config commandTimeout) applies where a command sets none", async () => {
    const slow = createRunner({ timeoutMs: 150 });
    await expect(slow(['sleep', '5'])).rejects.toThrow(/timed out after 150 ms/);
    await expect(slow(['sleep', '0.3'], { timeoutMs: 2000 })).resolves.toMatchObject({ exitCode: 0 });
    expect(parseConfig({ keyFile: 'k', stateDir: 's', interfaces: ['eth0'], commandTimeout: '120s' }, '/').commandTimeout).toBe(120_000);
    expect(parseConfig({ keyFile: 'k', stateDir: 's', interfaces: ['eth0'] }, '/').commandTimeout).toBe(10_000);
  });

  it('a missing program, a timeout and a cancel are errors that say so', async () => {
    await expect(run(['no-such-program-scrooge'])).rejects.toThrow(/did not run \(ENOENT\)/);
    await expect(run(['sleep', '5'], { timeoutMs: 100 })).rejects.toThrow(/timed out after 100 ms/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await expect(run(['sleep', '5'], { signal: ac.signal })).rejects.toThrow(/was cancelled/);
  });

  it('an empty argv is a caller bug', async () => {
    await expect(run([])).rejects.toThrow(TypeError);
  });
});
