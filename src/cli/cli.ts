/**
 * The CLI dispatcher: picks the command, prints errors as one clear line.
 * Commands live in src/cli/commands/, one module each, loaded only when used so that
 * `scrooge run` starts fast.
 */
import { ScroogeError, UsageError } from '../errors.js';
import type { CliIO, Command } from './command.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  keygen: { summary: 'write a new identity key', load: async () => (await import('./commands/keys.js')).keygen },
  pubkey: { summary: "print a key file's public key", load: async () => (await import('./commands/keys.js')).pubkey },
  run: { summary: 'run the agent (foreground)', load: async () => (await import('./commands/run.js')).run },
  status: { summary: "show the agent's identity, interfaces and counters", load: async () => (await import('./commands/agent.js')).status },
  neighbors: { summary: 'list neighbors and their tunnels', load: async () => (await import('./commands/agent.js')).neighbors },
  tunnels: { summary: 'list tunnels', load: async () => (await import('./commands/agent.js')).tunnels },
  routes: { summary: 'list the routes babeld learned over the tunnels', load: async () => (await import('./commands/agent.js')).routes },
  priority: { summary: "set a neighbor's priority (weight)", load: async () => (await import('./commands/agent.js')).priority },
  cap: { summary: "cap a neighbor's bandwidth", load: async () => (await import('./commands/agent.js')).cap },
  alias: { summary: 'name a neighbor', load: async () => (await import('./commands/agent.js')).alias },
  share: { summary: 'set the share of bandwidth sold to neighbors', load: async () => (await import('./commands/agent.js')).share },
  tc: { summary: 'show or plan traffic control', load: async () => (await import('./commands/tc.js')).tc },
  demo: { summary: 'run the demo mesh', load: async () => (await import('./commands/demo.js')).demo },
  sim: { summary: 'build CORE scenarios in network namespaces', load: async () => (await import('./commands/sim.js')).sim },
};

function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: scrooge COMMAND [ARGS...]\n\ncommands:\n${lines.join('\n')}\n\nscrooge help COMMAND shows a command's usage.\n`;
}

export async function main(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    io.out(helpText());
    return name ? 0 : 2;
  }
  if (name === 'help') {
    const target = rest[0] ? COMMANDS[rest[0]] : undefined;
    if (rest[0] && !target) {
      io.err(`scrooge: unknown command '${rest[0]}'\n`);
      return 2;
    }
    io.out(target ? (await target.load()).usage : helpText());
    return 0;
  }
  if (name === '--version') {
    io.out('scrooge 0.1.0\n');
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    io.err(`scrooge: unknown command '${name}' (see scrooge --help)\n`);
    return 2;
  }
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(command.usage);
    return 0;
  }
  try {
    return await command.run(rest, io, { dispatch: main });
  } catch (err) {
    return reportError(err, command, io);
  }
}

export function reportError(err: unknown, command: Command | undefined, io: CliIO): number {
  if (err instanceof UsageError) {
    io.err(`scrooge ${command?.name ?? ''}: ${err.message}\n${command ? '\n' + command.usage : ''}`);
    return 2;
  }
  if (err instanceof ScroogeError) {
    // One line: what went wrong, then what to do about it.
    io.err(`scrooge: ${err.message}${err.hint ? ` (${err.hint})` : ''}\n`);
    return 1;
  }
  const e = err as Error;
  io.err(`scrooge: unexpected error: ${e?.message ?? String(err)}\n`);
  if (process.env['SCROOGE_DEBUG']) io.err(`${e?.stack ?? ''}\n`);
  return 70; // EX_SOFTWARE
}
