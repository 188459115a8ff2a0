/**
 * `sim exec`: runs a person's command inside a node with the terminal attached. This is not a
 * system call of ours with output to parse, so it does not go through the command runner
 * (which captures output): stdio is inherited and the exit code is passed through.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { ScroogeError } from '../errors.js';
import { type SimRun, requireNode } from './run.js';

/** Runs `argv` in `node`'s namespace; resolves to its exit code (128 + signal if killed). */
export function execInNode(run: SimRun, node: string, argv: readonly string[], liveNamespaces: readonly string[]): Promise<number> {
  const ns = requireNode(run, node);
  if (!liveNamespaces.includes(ns)) {
    throw new ScroogeError('ENONODE', `namespace ${ns} of node ${node} does not exist`, `the run looks broken: scrooge sim down ${run.id}`);
  }
  if (argv.length === 0) throw new ScroogeError('EUSAGE', 'no command to run');
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'inherit' });
    child.once('error', (err) => reject(new ScroogeError('EEXEC', `cannot run ip netns exec: ${err.message}`)));
    child.once('exit', (code, signal) => {
      const signum = signal ? (constants.signals[signal] ?? 0) : 0;
      resolve(code ?? 128 + signum);
    });
  });
}
