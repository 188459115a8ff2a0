// The core stays pure (STYLE.md): protocol, identity, neighbor logic, traffic planning and config
// import no sockets, processes, file system or timers and never read the clock. Cheap to check,
// so check.
//
// Imports are read with the TypeScript parser, not a regex over `from '...'`: a bare side-effect
// import (`import 'node:fs'`), `export * from`, `import x = require()` and a dynamic `import()`
// all load a module, and all are found. The checker is itself tested on fixture strings below.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, normalize } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const CORE_DIRS = ['src/protocol', 'src/identity', 'src/neighbors', 'src/traffic', 'src/config'];
/** Relative imports may land in the core dirs or in these files (pure too, and checked). */
const CORE_FILES = ['src/errors.ts', 'src/system/wireguard/text.ts', 'src/routing/address.ts', 'src/routing/config.ts', 'src/routing/protocol.ts'];
/** Node built-ins with no I/O: hashing/signing and path arithmetic. */
const PURE_BUILTINS = new Set(['crypto', 'path']);
/** Packages the core may use: crypto primitives and the config schema. */
const PURE_PACKAGES = [/^@noble\/(curves|hashes|ciphers)(\/|$)/, /^zod(\/mini)?$/];

const TEXT_RULES: [RegExp, string][] = [
  [/\bDate\.now\(\)|new Date\(\)|performance\.now\(\)/, 'the clock'],
  [/\b(setTimeout|setInterval|setImmediate)\(/, 'a timer'],
];

/** Every module a source text loads, and every load the parser cannot name (`import(x)`). */
function moduleLoads(text: string): { specifiers: string[]; dynamic: string[] } {
  const sf = ts.createSourceFile('x.ts', text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const specifiers: string[] = [];
  const dynamic: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      specifiers.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const e = node.moduleReference.expression;
      specifiers.push(ts.isStringLiteral(e) ? e.text : e.getText(sf));
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      if (isImport || isRequire) dynamic.push(node.getText(sf));
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      specifiers.push(node.argument.literal.text); // `import('x').T` in a type position
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return { specifiers, dynamic };
}

function isBuiltin(spec: string): boolean {
  return spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]!);
}

/** What is wrong with a core file's text (empty: pure). `file` is its path from the repo root. */
function violations(file: string, text: string): string[] {
  const out: string[] = [];
  const { specifiers, dynamic } = moduleLoads(text);
  for (const d of dynamic) out.push(`loads a module at run time: ${d}`);
  for (const spec of specifiers) {
    if (spec.startsWith('.')) {
      const target = normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
      const inCore = CORE_DIRS.some((d) => target.startsWith(d + '/')) || CORE_FILES.includes(target);
      if (!inCore) out.push(`imports an effects module: ${spec}`);
    } else if (isBuiltin(spec)) {
      if (!PURE_BUILTINS.has(spec.replace(/^node:/, ''))) out.push(`imports an I/O module: ${spec}`);
    } else if (!PURE_PACKAGES.some((re) => re.test(spec))) {
      out.push(`imports a package not known to be pure: ${spec}`);
    }
  }
  for (const [re, what] of TEXT_RULES) if (re.test(text)) out.push(`uses ${what}`);
  return out;
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('pure core', () => {
  const all = [...CORE_DIRS.flatMap(files), ...CORE_FILES];
  it('has files to check in every core dir', () => {
    for (const dir of CORE_DIRS) expect(all.some((f) => f.startsWith(dir + '/')), dir).toBe(true);
  });
  it.each(all)('%s imports no I/O, timers or clock', (file) => {
    expect(violations(file, readFileSync(file, 'utf8'))).toEqual([]);
  });
});

describe('the boundary checker', () => {
  const file = 'src/protocol/x.ts';
  it.each([
    ["import 'node:fs';", 'imports an I/O module: node:fs'],
    ["import 'fs';", 'imports an I/O module: fs'],
    ["import { readFileSync } from 'node:fs';", 'imports an I/O module: node:fs'],
    ["import * as fsp from 'fs/promises';", 'imports an I/O module: fs/promises'],
    ["import type { Socket } from 'node:dgram';", 'imports an I/O module: node:dgram'],
    ["export * from 'node:child_process';", 'imports an I/O module: node:child_process'],
    ["export { setTimeout as later } from 'node:timers';", 'imports an I/O module: node:timers'],
    ["import cp = require('child_process');", 'imports an I/O module: child_process'],
    ["const fs = await import('node:fs');", "loads a module at run time: import('node:fs')"],
    ["const fs = await import ( 'node:fs' );", "loads a module at run time: import ( 'node:fs' )"],
    ["const name = 'fs'; void import(name);", 'loads a module at run time: import(name)'],
    ["const fs = require('fs');", "loads a module at run time: require('fs')"],
    ["type S = import('node:net').Socket;", 'imports an I/O module: node:net'],
    ["import { run } from '../system/runner.js';", 'imports an effects module: ../system/runner.js'],
    ["export { Agent } from '../agent/daemon.js';", 'imports an effects module: ../agent/daemon.js'],
    ["import { execa } from 'execa';", 'imports a package not known to be pure: execa'],
    ["import pino from 'pino';", 'imports a package not known to be pure: pino'],
    ['const t = Date.now();', 'uses the clock'],
    ['setTimeout(() => {}, 1);', 'uses a timer'],
  ])('catches %s', (text, why) => {
    expect(violations(file, text)).toEqual([why]);
  });

  it.each([
    "import { createHash } from 'node:crypto';",
    "import { join } from 'node:path';",
    "import { sha256 } from '@noble/hashes/sha2.js';",
    "import { z } from 'zod';",
    "import { bytesEqual } from './bytes.js';",
    "import { tunnelInterfaceName } from '../neighbors/names.js';",
    "import { ScroogeError } from '../errors.js';",
    "// a comment about import('node:fs') and require('fs') loads nothing",
    "const s = \"import 'node:fs'\";",
  ])('passes %s', (text) => {
    expect(violations(file, text)).toEqual([]);
  });
});

/** Every module a file loads (static, type-only and literal dynamic imports), as repo paths. */
function localImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const { specifiers, dynamic } = moduleLoads(text);
  const literal = dynamic.flatMap((d) => /^import\s*\(\s*'([^']+)'\s*\)$/.exec(d)?.slice(1) ?? []);
  return [...specifiers, ...literal].filter((s) => s.startsWith('.')).map((s) => normalize(join(dirname(file), s)).replace(/\.js$/, '.ts'));
}

/** The first import cycle found in `graph`, as the files around it, or undefined. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (f: string): string[] | undefined => {
    if (state.get(f) === 'done') return undefined;
    if (state.get(f) === 'open') return [...path.slice(path.indexOf(f)), f];
    state.set(f, 'open');
    path.push(f);
    for (const g of graph.get(f) ?? []) {
      const c = visit(g);
      if (c) return c;
    }
    path.pop();
    state.set(f, 'done');
    return undefined;
  };
  for (const f of graph.keys()) {
    const c = visit(f);
    if (c) return c;
  }
  return undefined;
}

describe('no import cycles in src (issue 10, defect 9)', () => {
  it('no module imports, directly or not, a module that imports it', () => {
    const graph = new Map(files('src').map((f) => [f, localImports(f)]));
    expect(findCycle(graph)).toBeUndefined();
  });

  it('the cycle finder finds a cycle through a dynamic import', () => {
    expect(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual(['a', 'b', 'c', 'a']);
    expect(findCycle(new Map([['a', ['b']], ['b', []]]))).toBeUndefined();
  });
});
