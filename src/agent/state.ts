/**
 * The agent's state directory: what must survive a restart (PROTOCOL.md §5, README "State").
 *   seq.json       the sequence epoch, written before the first message of each run
 *   replay.json    per-sender sequence high-water marks (receiver side of replay protection),
 *                  with each sender's newest skipped (unverified) message, verified at load
 *   settings.json  operator changes made at run time: share, and per neighbor alias/priority/cap
 *   tunnels.json   which tunnel interface belongs to which neighbor, for adoption after a crash
 * Every write is atomic (temp file, fsync, rename) so a crash never leaves half a file.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { parseStoredSettings, type StoredSettings } from '../config/config.js';
import { ScroogeError } from '../errors.js';
import { parseU64 } from '../protocol/bytes.js';

export interface StoredTunnel {
  neighbor: string;
  role: 'initiator' | 'responder';
  listenPort: number;
  iface: string;
}

export class StateDir {
  constructor(readonly dir: string) {}

  /** Creates the directory (0700). Errors say what to do. */
  ensure(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      chmodSync(this.dir, 0o700);
    } catch (err) {
      throw new ScroogeError('ESTATEDIR', `cannot create state directory ${this.dir}: ${(err as NodeJS.ErrnoException).code ?? err}`, 'set "stateDir" in the config to a writable directory');
    }
  }

  /**
   * A state file's JSON, or undefined if there is none. A corrupt snapshot (replay marks,
   * tunnels) is treated as absent; a corrupt file an operator's changes live in (`strict`) is
   * an error: silently starting without them would undo them. The atomic writes make both
   * unlikely.
   */
  private read<T>(name: string, strict = false): T | undefined {
    const path = join(this.dir, name);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ScroogeError('ESTATEDIR', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      if (strict) throw new ScroogeError('ESETTINGS', `${path} is not valid JSON: ${(err as Error).message}`, 'correct it, or remove the file to start from the config file\'s settings');
      return undefined;
    }
  }

  /**
   * Write-then-rename, so a reader never sees half a file. `durable` adds an fsync: needed for
   * the epoch (it must be on disk before we send) and for what the operator set; not for the
   * tunnel and replay snapshots, which are rewritten often and only help a quick restart
   * (an fsync per tunnel change blocks the event loop on a busy disk).
   */
  private write(name: string, value: unknown, durable: boolean): void {
    const path = join(this.dir, name);
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(value, null, 1) + '\n');
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    if (durable) {
      // The rename itself is only durable once the directory is on disk too.
      const dir = openSync(this.dir, 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    }
  }

  readEpoch(): bigint | undefined {
    const v = this.read<{ epoch?: unknown }>('seq.json')?.epoch;
    return typeof v === 'string' ? parseU64(v) : undefined;
  }
  writeEpoch(epoch: bigint): void {
    this.write('seq.json', { epoch: epoch.toString() }, true);
  }

  readReplay(): unknown {
    return this.read('replay.json');
  }
  writeReplay(entries: unknown, force = false): void {
    this.writeSnapshot('replay.json', entries, force);
  }

  /** settings.json, validated by the config's own schema: a bad value is an error naming the file and field. */
  readSettings(): StoredSettings {
    return parseStoredSettings(this.read<unknown>('settings.json', true), join(this.dir, 'settings.json'));
  }
  writeSettings(s: StoredSettings): void {
    this.write('settings.json', s, true);
  }

  /** Snapshots are rewritten only when they change (they are looked at after every tunnel pass). */
  private readonly lastSnapshot = new Map<string, string>();

  private writeSnapshot(name: string, value: unknown, force: boolean): void {
    const text = JSON.stringify(value);
    if (!force && this.lastSnapshot.get(name) === text) return;
    this.lastSnapshot.set(name, text);
    this.write(name, value, false);
  }

  readTunnels(): Record<string, StoredTunnel> {
    const t = this.read<Record<string, StoredTunnel>>('tunnels.json');
    return t && typeof t === 'object' ? t : {};
  }
  writeTunnels(t: Record<string, StoredTunnel>, force = false): void {
    this.writeSnapshot('tunnels.json', t, force);
  }
}
