/** Reads and validates a config file (the pure part is src/config/config.ts). */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseConfig, type Config } from '../config/config.js';
import { ConfigError } from '../errors.js';

export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(json, dirname(resolve(path)));
}
