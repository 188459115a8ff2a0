// The core stays pure (STYLE.md): protocol, neighbor logic and traffic planning import no
// sockets, processes, file system or timers and never read the clock. Cheap to check, so check.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const CORE_DIRS = ['src/protocol', 'src/neighbors', 'src/traffic', 'src/config'];
const FORBIDDEN: [RegExp, string][] = [
  [/from ['"](node:)?(dgram|child_process|net|fs|fs\/promises|os|http|https|worker_threads)['"]/, 'an I/O module'],
  [/from ['"]execa['"]/, 'execa'],
  [/from ['"]pino['"]/, 'the logger'],
  [/\bDate\.now\(\)|new Date\(\)|performance\.now\(\)/, 'the clock'],
  [/\brequire\(|\bimport\(/, 'a module loaded at run time'],
  [/\b(setTimeout|setInterval|setImmediate)\(/, 'a timer'],
  [/from ['"]\.\.\/(system|agent|cli|sim)\//, 'an effects module'],
];

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('pure core', () => {
  const all = CORE_DIRS.flatMap(files);
  it('has files to check', () => expect(all.length).toBeGreaterThan(5));
  it.each(all)('%s imports no I/O, timers or clock', (file) => {
    const text = readFileSync(file, 'utf8');
    for (const [re, what] of FORBIDDEN) expect(re.test(text), `${file} uses ${what}`).toBe(false);
  });
});
