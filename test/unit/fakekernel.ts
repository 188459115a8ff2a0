/**
 * A stateful fake of the parts of tc and nft Scrooge uses (STYLE.md: a fake OS that keeps
 * tables and prints them as sorted text, and throws on anything it does not understand), so
 * planner tests check the state reached, not the exact commands.
 */
interface FakeClass {
  parent: string;
  params: string;
}
interface FakeQdisc {
  kind: string;
  handle?: string;
  classes: Map<string, FakeClass>;
  leaves: Map<string, string>;
}

export class FakeKernel {
  readonly qdiscs = new Map<string, FakeQdisc>();
  nftTable: { sets: Map<string, string[]>; rules: string[]; counter: number } | undefined;
  /** Every tc command line ever run, for "nothing changed" checks. */
  readonly tcLog: string[] = [];

  private readonly indexes = new Map<string, number>();
  private nextIndex = 1;

  constructor(readonly devices: Set<string>) {
    for (const d of devices) this.indexes.set(d, this.nextIndex++);
  }

  ifindex(dev: string): number | undefined {
    return this.devices.has(dev) ? this.indexes.get(dev) : undefined;
  }

  /** The device goes and comes back (a tunnel rebuilt): a new ifindex, and no qdisc. */
  recreate(dev: string): void {
    this.qdiscs.delete(dev);
    this.indexes.set(dev, this.nextIndex++);
  }

  tc(line: string): void {
    this.tcLog.push(line);
    const w = line.trim().split(/\s+/);
    const dev = w[3]!;
    if (w[2] !== 'dev') throw new Error(`fake tc: cannot parse: ${line}`);
    if (!this.devices.has(dev)) throw new Error(`fake tc: Cannot find device "${dev}"`);
    const q = this.qdiscs.get(dev);
    const verb = `${w[0]} ${w[1]}`;
    if (verb === 'qdisc replace' && w[4] === 'root') {
      if (w[5] === 'pfifo') this.qdiscs.set(dev, { kind: 'pfifo', classes: new Map(), leaves: new Map() });
      else if (w[5] === 'handle' && w[7] === 'htb') {
        if (q?.kind === 'htb' && q.handle === w[6]) throw new Error('fake tc: Change operation not supported by specified qdisc');
        this.qdiscs.set(dev, { kind: 'htb', handle: w[6]!, classes: new Map(), leaves: new Map() });
      } else throw new Error(`fake tc: cannot parse: ${line}`);
    } else if (verb === 'qdisc del' && w[4] === 'root') {
      if (!q) throw new Error('fake tc: no qdisc to delete');
      this.qdiscs.delete(dev);
    } else if (verb === 'qdisc add' && w[4] === 'parent') {
      if (!q?.classes.has(w[5]!)) throw new Error(`fake tc: no class ${w[5]} for leaf qdisc`);
      q.leaves.set(w[5]!, w.slice(8).join(' '));
    } else if (w[0] === 'class') {
      if (q?.kind !== 'htb') throw new Error('fake tc: classes need an htb root');
      const classid = w[w.indexOf('classid') + 1]!;
      if (verb === 'class del') {
        if (!q.classes.has(classid)) throw new Error(`fake tc: no class ${classid}`);
        if ([...q.classes.values()].some((c) => c.parent === classid)) throw new Error(`fake tc: class ${classid} has children`);
        q.classes.delete(classid);
        q.leaves.delete(classid);
        return;
      }
      const parent = w[w.indexOf('parent') + 1]!;
      if (parent !== q.handle && !q.classes.has(parent)) throw new Error(`fake tc: no parent ${parent}`);
      const params = w.slice(w.indexOf('htb') + 1).join(' ');
      if (verb === 'class add') {
        if (q.classes.has(classid)) throw new Error(`fake tc: class ${classid} exists`);
        q.classes.set(classid, { parent, params });
      } else if (verb === 'class change') {
        if (!q.classes.has(classid)) throw new Error(`fake tc: no class ${classid} to change`);
        q.classes.set(classid, { parent, params });
      } else throw new Error(`fake tc: cannot parse: ${line}`);
    } else {
      throw new Error(`fake tc: cannot parse: ${line}`);
    }
  }

  nft(text: string): void {
    const lines = text.split('\n');
    const T = 'inet scrooge';
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (!line) continue;
      if (line === `table ${T}`) this.nftTable ??= { sets: new Map(), rules: [], counter: 0 };
      else if (line === `delete table ${T}`) {
        if (!this.nftTable) throw new Error('fake nft: no table to delete');
        this.nftTable = undefined;
      } else if (line === `table ${T} {`) {
        this.nftTable ??= { sets: new Map(), rules: [], counter: 0 };
        for (i++; lines[i]!.trim() !== '}'; i++) {
          const m = /^(set|map) (\w+) \{/.exec(lines[i]!.trim());
          if (m && !this.nftTable.sets.has(m[2]!)) this.nftTable.sets.set(m[2]!, []);
        }
      } else if (line === `flush chain ${T} forward`) this.table().rules = [];
      else if (/^flush (set|map) inet scrooge \w+$/.test(line)) this.set(line.split(' ')[4]!).length = 0;
      else if (line.startsWith(`add element ${T} `)) {
        const m = /^add element inet scrooge (\w+) \{ (.*) \}$/.exec(line);
        if (!m) throw new Error(`fake nft: cannot parse: ${line}`);
        this.set(m[1]!).push(...m[2]!.split(', '));
      } else if (line.startsWith(`add rule ${T} forward `)) this.table().rules.push(line.slice(`add rule ${T} forward `.length));
      else throw new Error(`fake nft: cannot parse: ${line}`);
    }
  }

  private table() {
    if (!this.nftTable) throw new Error('fake nft: no table inet scrooge');
    return this.nftTable;
  }

  private set(name: string): string[] {
    const s = this.table().sets.get(name);
    if (!s) throw new Error(`fake nft: no set or map ${name}`);
    return s;
  }

  /** The whole state as sorted text. */
  render(): string {
    const out: string[] = [];
    for (const [dev, q] of [...this.qdiscs].sort(([a], [b]) => (a < b ? -1 : 1))) {
      out.push(`qdisc ${dev} ${q.kind} ${q.handle ?? ''}`);
      for (const [id, c] of [...q.classes].sort(([a], [b]) => (a < b ? -1 : 1))) out.push(`  class ${dev} ${id} parent ${c.parent} ${c.params}${q.leaves.has(id) ? ` leaf ${q.leaves.get(id)}` : ''}`);
    }
    const t = this.nftTable;
    if (!t) out.push('(no nft table)');
    else {
      for (const [name, items] of [...t.sets].sort(([a], [b]) => (a < b ? -1 : 1))) out.push(`nft ${name}: ${[...items].sort().join(', ')}`);
      for (const r of t.rules) out.push(`nft rule: ${r}`);
    }
    return out.join('\n');
  }
}
