/**
 * Operator settings per neighbor (alias, priority, cap) and the node's share: the config file's
 * values, overridden by changes made at run time through the CLI, which are persisted in the
 * state directory so a restart loses nothing.
 */
import { ScroogeError } from '../errors.js';
import { ALIAS } from '../config/config.js';
import type { StoredNeighborSettings, StoredSettings } from './state.js';

export const DEFAULT_PRIORITY = 1;

export interface EffectiveNeighborSettings {
  alias: string | undefined;
  priority: number;
  /** bit/s; undefined = no cap. */
  cap: number | undefined;
}

export class Settings {
  constructor(
    private readonly fromConfig: { share: number; neighbors: Record<string, { alias?: string | undefined; priority?: number | undefined; cap?: number | null | undefined }> },
    private stored: StoredSettings,
    private readonly persist: (s: StoredSettings) => void,
  ) {}

  get share(): number {
    return this.stored.share ?? this.fromConfig.share;
  }

  neighbor(key: string): EffectiveNeighborSettings {
    const c = this.fromConfig.neighbors[key] ?? {};
    const s = this.stored.neighbors[key] ?? {};
    const cap = s.cap !== undefined ? s.cap : c.cap;
    return { alias: s.alias ?? c.alias, priority: s.priority ?? c.priority ?? DEFAULT_PRIORITY, cap: cap ?? undefined };
  }

  /** Keys that have any setting (so a neighbor not currently heard can still be named). */
  knownKeys(): string[] {
    return [...new Set([...Object.keys(this.fromConfig.neighbors), ...Object.keys(this.stored.neighbors)])];
  }

  /**
   * Resolves what a person typed: an alias, a full key, or a unique key prefix (4+ characters)
   * among `candidates` (neighbors in the table) and keys with settings.
   */
  resolve(name: string, candidates: readonly string[]): string {
    const keys = [...new Set([...candidates, ...this.knownKeys()])];
    const byAlias = keys.filter((k) => this.neighbor(k).alias === name);
    if (byAlias.length === 1) return byAlias[0]!;
    if (keys.includes(name)) return name;
    const byPrefix = name.length >= 4 ? keys.filter((k) => k.startsWith(name)) : [];
    if (byPrefix.length === 1) return byPrefix[0]!;
    if (byPrefix.length > 1)
      throw new ScroogeError('EAMBIGUOUS', `"${name}" matches ${byPrefix.length} neighbors: ${byPrefix.map((k) => k.slice(0, 12)).join(', ')}`, 'type more of the key, or use an alias');
    throw new ScroogeError('ENONEIGHBOR', `no neighbor "${name}"`, name.length < 4 && !ALIAS.test(name) ? 'give at least 4 characters of its key' : 'see `scrooge neighbors` for keys and aliases');
  }

  update(key: string, change: StoredNeighborSettings): EffectiveNeighborSettings {
    if (change.alias !== undefined) {
      const taken = this.knownKeys().find((k) => k !== key && this.neighbor(k).alias === change.alias);
      if (taken) throw new ScroogeError('EALIAS', `alias "${change.alias}" is already used by ${taken.slice(0, 12)}`);
    }
    const next = { ...this.stored.neighbors[key], ...change };
    this.stored = { ...this.stored, neighbors: { ...this.stored.neighbors, [key]: next } };
    this.persist(this.stored);
    return this.neighbor(key);
  }

  setShare(share: number): void {
    this.stored = { ...this.stored, share };
    this.persist(this.stored);
  }
}
