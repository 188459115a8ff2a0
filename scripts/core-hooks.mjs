// Writes (or, with --check, checks) the CORE hook of every scenario in core-scenarios/ from the
// generator `scrooge sim up` uses (src/sim/nodeconfig.ts), so a scenario behaves the same in CORE
// and in `scrooge sim`. Run it after adding or changing a scenario:
//   npm run build && node scripts/core-hooks.mjs [--check]
// It runs `scrooge sim hooks` of the build (dist/scrooge.js) on core-scenarios/*.xml.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'scrooge.js');
if (!existsSync(cli)) {
  console.error('scripts/core-hooks.mjs: dist/scrooge.js not found: run `npm run build` first');
  process.exit(2);
}
const args = process.argv.slice(2);
if (args.some((a) => a !== '--check')) {
  console.error('usage: node scripts/core-hooks.mjs [--check]');
  process.exit(2);
}
const dir = join(root, 'core-scenarios');
const files = readdirSync(dir).filter((f) => f.endsWith('.xml')).sort().map((f) => join(dir, f));
const r = spawnSync(process.execPath, [cli, 'sim', 'hooks', ...args, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
