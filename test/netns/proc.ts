/**
 * What /proc says about a process: CPU time, memory, liveness. For the netns tests and the
 * benchmarks (no side effects on import).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** proc(5) stat fields from field 3 (state) on; the command name may contain spaces. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** utime + stime of a process, in seconds (throws if it is gone). */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  if (!f) throw new Error(`no process ${pid}`);
  // Fields 14 (utime) and 15 (stime); f[0] is field 3.
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Resident set size in MiB (one decimal), NaN if unknown. */
export function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Anonymous memory of a process (heap, stacks, JIT code: the `Anonymous:` line of
 * /proc/PID/smaps_rollup), MiB. RSS also counts the file-backed pages of the node binary, which
 * every Node process running the same binary shares; this is what one more process costs. (Not
 * USS: a binary only one process maps counts as that process's private pages.)
 */
export function anonMiB(pid: number): number {
  try {
    const m = /^Anonymous:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
  } catch {
    return NaN;
  }
}

/** A process that exists and is not a zombie (PID 1 here does not always reap orphans). */
export function running(pid: number): boolean {
  const s = statFields(pid)?.[0];
  return s !== undefined && s !== 'Z' && s !== 'X';
}

export function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}
