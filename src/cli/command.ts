/**
 * What every CLI command looks like, and the one argument parser they share (node's
 * util.parseArgs in strict mode, turned into UsageErrors a person can read).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
}

/** What the dispatcher hands every command: a way to run another command (`sim ctl` does). */
export interface CliContext {
  dispatch(argv: string[], io: CliIO): Promise<number>;
}

export interface Command {
  name: string;
  summary: string;
  /** Usage text shown by `scrooge help NAME` and after a usage error. */
  usage: string;
  run(args: string[], io: CliIO, cli: CliContext): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses `args` strictly: unknown options and missing values are UsageErrors. */
export function parseCommandLine<O extends Options>(
  args: string[],
  options: O,
  positionals: { min?: number; max?: number; names?: string } = {},
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^.*?: /, '').replace(/\. To specify.*$/, ''));
  }
  const n = parsed.positionals.length;
  if (positionals.min !== undefined && n < positionals.min)
    throw new UsageError(`missing argument${positionals.names ? `: expected ${positionals.names}` : ''}`);
  if (positionals.max !== undefined && n > positionals.max)
    throw new UsageError(`unexpected argument '${parsed.positionals[positionals.max]}'`);
  return parsed;
}

/** Splits `a b -- c d` into the part before `--` and the part after. */
export function splitAtDoubleDash(args: string[]): [string[], string[] | undefined] {
  const i = args.indexOf('--');
  return i < 0 ? [args, undefined] : [args.slice(0, i), args.slice(i + 1)];
}

/** Writes `value` as pretty JSON followed by a newline. */
export function printJson(io: CliIO, value: unknown): void {
  io.out(JSON.stringify(value, null, 2) + '\n');
}

/** Formats rows as an aligned text table with a header line. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
