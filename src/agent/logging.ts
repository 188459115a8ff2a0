/**
 * One pino logger for the daemon: JSON lines on stdout (or pretty for a person with --pretty),
 * a `component` per part (child loggers), and keys redacted wherever they appear.
 */
import { pino, type Logger } from 'pino';

export const REDACT = ['privateKey', '*.privateKey', 'seed', '*.seed', 'passphrase', '*.passphrase'];

export async function createLogger(opts: { level: string; pretty?: boolean; name?: string }): Promise<Logger> {
  const base = { level: opts.level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid, ...(opts.name ? { node: opts.name } : {}) } };
  // Synchronous: the volume is small, and a crash must not take its last lines with it.
  if (!opts.pretty) return pino(base, pino.destination({ dest: 1, sync: true }));
  const { build: pretty } = await import('pino-pretty');
  return pino(base, pretty({ colorize: process.stdout.isTTY, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', sync: true }));
}
