/**
 * Named errors with a stable `code`, so the CLI can print one clear line and scripts can match
 * on the code (in the style of execa's ExecaError and js-libp2p's errors.ts).
 *
 * Untrusted input (datagrams) never throws: decoders return `{ ok: false, reason }`. These
 * classes are for a person's mistakes (config, CLI arguments) and for the environment
 * (missing tools, a command that failed).
 */
export class ScroogeError extends Error {
  readonly code: string;
  /** What the operator should do about it, printed after the message. */
  readonly hint: string | undefined;
  constructor(code: string, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ScroogeError';
    this.code = code;
    this.hint = hint;
  }
}

/** Bad command-line arguments: the CLI prints the message and the command's usage, exit 2. */
export class UsageError extends ScroogeError {
  constructor(message: string) {
    super('EUSAGE', message);
    this.name = 'UsageError';
  }
}

/** A config file that does not validate; `path` names the offending field. */
export class ConfigError extends ScroogeError {
  readonly path: string;
  constructor(path: string, message: string) {
    super('ECONFIG', path ? `config ${path}: ${message}` : `config: ${message}`);
    this.name = 'ConfigError';
    this.path = path;
  }
}

/** A system command that exited badly; carries argv and stderr. */
export class CommandError extends ScroogeError {
  readonly argv: readonly string[];
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(argv: readonly string[], exitCode: number | undefined, stderr: string, why?: string) {
    const shown = argv.join(' ');
    const reason = why ?? (exitCode === undefined ? 'did not run' : `exited ${exitCode}`);
    const detail = stderr.trim().split('\n').slice(-3).join(' | ');
    super('ECOMMAND', `\`${shown}\` ${reason}${detail ? `: ${detail}` : ''}`);
    this.name = 'CommandError';
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}
