/**
 * The agent's state directory: what must survive a restart (PROTOCOL.md §5, README "State").
 *   seq.json       the sequence epoch, written before the first message of each run
 *   replay.json    per-sender sequence high-water marks (receiver side of replay protection)
 *   settings.json  operator changes made at run time: share, and per neighbor alias/priority/cap
 *   tunnels.json   which tunnel interface belongs to which neighbor, for adoption after a crash
 * Every write is atomic (temp file, fsync, rename) so a crash never leaves half a file.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { ScroogeError } from '../errors.js';
import { parseU64 } from '../protocol/bytes.js';

export interface StoredTunnel {
  neighbor: string;
  role: 'initiator' | 'responder';
  listenPort: number;
  iface: string;
}

export interface StoredNeighborSettings {
  alias?: string | undefined;
  priority?: number | undefined;
  /** bit/s, or null for "no cap" (overrides a cap from the config file). */
  cap?: number | null | undefined;
}

export interface StoredSettings {
  share?: number;
  neighbors: Record<string, StoredNeighborSettings>;
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

  private read<T>(name: string): T | undefined {
    let text: string;
    try {
      text = readFileSync(join(this.dir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ScroogeError('ESTATEDIR', `cannot read ${join(this.dir, name)}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      // A corrupt file is treated as absent; the atomic writes make this unlikely.
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
  writeReplay(entries: unknown): void {
    this.write('replay.json', entries, false);
  }

  readSettings(): StoredSettings {
    const s = this.read<StoredSettings>('settings.json');
    return { ...(typeof s?.share === 'number' ? { share: s.share } : {}), neighbors: s?.neighbors && typeof s.neighbors === 'object' ? s.neighbors : {} };
  }
  writeSettings(s: StoredSettings): void {
    this.write('settings.json', s, true);
  }

  readTunnels(): Record<string, StoredTunnel> {
    const t = this.read<Record<string, StoredTunnel>>('tunnels.json');
    return t && typeof t === 'object' ? t : {};
  }
  writeTunnels(t: Record<string, StoredTunnel>): void {
    this.write('tunnels.json', t, false);
  }
}
