/** `scrooge` entry point (bin/scrooge loads this). The dispatcher is in cli.ts. */
import * as nodeModule from 'node:module';
import type { CliIO } from './command.js';
import { main, reportError } from './cli.js';

// `scrooge neighbors | head` closes our stdout early: that is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

// Node 22 and later keep compiled code on disk: the next start (20 agents at once, on a
// router's slow CPU) skips most of the compiling. Node 20 has no such cache; nothing happens.
(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();

const io: CliIO = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.exitCode = reportError(err, undefined, io);
  },
);
