/**
 * Operator settings per neighbor (alias, priority, cap) and the node's share: the config file's
 * values, overridden by changes made at run time through the CLI, which the agent keeps in its
 * state directory (settings.json) so a restart loses nothing. A value: a change makes a new
 * Settings, which the agent stores only once the kernel holds it.
 */
import type { NeighborSettings, SetRequest, StoredSettings } from '../config/config.js';
import { ALIAS } from '../config/config.js';
import { DEFAULT_PRIORITY } from '../config/tunables.js';
import { ScroogeError } from '../errors.js';

export interface EffectiveNeighborSettings {
  alias: string | undefined;
  priority: number;
  /** bit/s; undefined = no cap. */
  cap: number | undefined;
}

export class Settings {
  constructor(
    private readonly fromConfig: { share: number; neighbors: Readonly<Record<string, NeighborSettings>> },
    /** What settings.json holds (validated by the config's schema). */
    readonly stored: StoredSettings,
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

  /**
   * These settings with a (validated) request applied; nothing is stored. Returns the
   * neighbor the request named, resolved to its key.
   */
  with(request: SetRequest, candidates: readonly string[]): { settings: Settings; neighbor: string | undefined } {
    if ('share' in request) return { settings: new Settings(this.fromConfig, { ...this.stored, share: request.share }), neighbor: undefined };
    const { neighbor: name, ...change } = request;
    const key = this.resolve(name, candidates);
    if (change.alias !== undefined) {
      const taken = this.knownKeys().find((k) => k !== key && this.neighbor(k).alias === change.alias);
      if (taken) throw new ScroogeError('EALIAS', `alias "${change.alias}" is already used by ${taken.slice(0, 12)}`);
    }
    const next = { ...this.stored.neighbors[key], ...change };
    return { settings: new Settings(this.fromConfig, { ...this.stored, neighbors: { ...this.stored.neighbors, [key]: next } }), neighbor: key };
  }
}
