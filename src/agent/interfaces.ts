/**
 * The mesh interfaces the config names, as they are now: which exist with an IPv6 link-local
 * address (the protocol needs one). A missing one is logged once, with what is there instead,
 * and again when it comes; the agent waits for it rather than failing.
 */
import type { Logger } from 'pino';
import type { MeshInterface } from '../neighbors/core.js';

export class InterfaceWatch {
  private readonly missing = new Set<string>();

  constructor(
    private readonly deps: { list: (names: readonly string[]) => MeshInterface[]; allNames: () => string[]; logger: Logger },
    private readonly options: { names: readonly string[] },
  ) {}

  /** The configured interfaces present now (with or without a link-local address). */
  poll(): MeshInterface[] {
    const present = this.deps.list(this.options.names);
    for (const name of this.options.names) {
      const here = present.some((p) => p.name === name && p.linkLocal);
      if (!here && !this.missing.has(name)) {
        this.missing.add(name);
        this.deps.logger.warn({ iface: name, present: this.deps.allNames() }, `mesh interface ${name} is missing or has no IPv6 link-local address; waiting for it`);
      } else if (here && this.missing.delete(name)) {
        this.deps.logger.info({ iface: name }, `mesh interface ${name} is up`);
      }
    }
    return present;
  }
}
