// Start-up failures leave nothing behind (issue 10, defects 4 and 5): `scrooge run` whose agent
// cannot start removes the signal handlers it installed; the wireguard-go backend is chosen
// without wireguard-tools, which it never runs.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/cli.js';
import { detectBackend } from '../../src/system/wireguard/index.js';
import { createRunner } from '../../src/system/runner.js';

const dir = mkdtempSync(join(tmpdir(), 'scrooge-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('start-up failures', () => {
  it('scrooge run that fails to start leaves no SIGTERM/SIGINT handler behind', async () => {
    const config = join(dir, 'config.json');
    // Discovery only (no root needed), and a key file that does not exist: start() fails.
    writeFileSync(config, JSON.stringify({ keyFile: 'missing.key', stateDir: 'state', interfaces: ['eth0'], tunnels: { enabled: false }, traffic: { enabled: false } }));
    const before = [process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')];
    let err = '';
    const code = await main(['run', '--config', config, '--log-level', 'fatal'], { out: () => {}, err: (t) => void (err += t) });
    expect(code).toBe(1);
    expect(err).toMatch(/missing\.key/);
    expect([process.listenerCount('SIGTERM'), process.listenerCount('SIGINT')]).toEqual(before);
  });

  it('the userspace backend needs wireguard-go only, not wg', async () => {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'wireguard-go'), '#!/bin/sh\nexit 1\n');
    chmodSync(join(bin, 'wireguard-go'), 0o755);
    const path = process.env['PATH'];
    process.env['PATH'] = bin; // no `wg` anywhere
    try {
      const backend = await detectBackend({ run: createRunner() }, { prefer: 'userspace', logFile: join(dir, 'wg.log'), secretDir: join(dir, 'keys') });
      expect(backend.kind).toBe('userspace');
    } finally {
      process.env['PATH'] = path;
    }
  });
});
