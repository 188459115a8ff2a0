/** `scrooge` entry point (bin/scrooge loads this). The dispatcher is in cli.ts. */
import * as nodeModule from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { AGENT_V8_FLAGS } from '../config/tunables.js';
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

// The daemon's V8 flags (tunables.ts), set before any of its code loads or its heap grows.
if (process.argv[2] === 'run') for (const flag of (process.env['SCROOGE_V8_FLAGS'] ?? AGENT_V8_FLAGS).split(/\s+/).filter(Boolean)) setFlagsFromString(flag);

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
