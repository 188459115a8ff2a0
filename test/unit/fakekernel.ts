/**
 * A stateful fake of the parts of tc and nft Scrooge uses (STYLE.md: a fake OS that keeps
 * tables and prints them as sorted text, and throws on anything it does not understand), so
 * planner tests check the state reached, not the exact commands. `kernelRunner` puts it behind
 * the command runner TrafficControl uses.
 */
import { CommandError } from '../../src/errors.js';
import type { RunOptions, RunResult, Runner } from '../../src/system/runner.js';

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
  nftTable: { sets: Map<string, string[]>; rules: string[]; input: string[]; nat: string[]; counter: number } | undefined;
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

  /** A device appears (a tunnel interface was made). */
  addDevice(dev: string): void {
    this.devices.add(dev);
    this.indexes.set(dev, this.nextIndex++);
  }

  /** A device goes, and its qdiscs with it. */
  removeDevice(dev: string): void {
    this.devices.delete(dev);
    this.qdiscs.delete(dev);
  }

  /** `tc -s class show dev DEV` as this iproute2 prints it (counters all zero). */
  classShow(dev: string): string {
    const q = this.qdiscs.get(dev);
    if (!q) return '';
    return [...q.classes].map(([id, c]) => {
      const where = c.parent === q.handle ? 'root' : `parent ${c.parent}`;
      return `class htb ${id} ${where} ${c.params}\n Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0)\n`;
    }).join('');
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
      if (line === `table ${T}`) this.nftTable ??= { sets: new Map(), rules: [], input: [], nat: [], counter: 0 };
      else if (line === `delete table ${T}`) {
        if (!this.nftTable) throw new Error('fake nft: no table to delete');
        this.nftTable = undefined;
      } else if (line === `table ${T} {`) {
        this.nftTable ??= { sets: new Map(), rules: [], input: [], nat: [], counter: 0 };
        for (i++; lines[i]!.trim() !== '}'; i++) {
          const m = /^(set|map) (\w+) \{/.exec(lines[i]!.trim());
          if (m && !this.nftTable.sets.has(m[2]!)) this.nftTable.sets.set(m[2]!, []);
        }
      } else if (line === `flush chain ${T} forward`) this.table().rules = [];
      else if (line === `flush chain ${T} input`) this.table().input = [];
      else if (line === `flush chain ${T} postrouting`) this.table().nat = [];
      else if (/^flush (set|map) inet scrooge \w+$/.test(line)) this.set(line.split(' ')[4]!).length = 0;
      else if (line.startsWith(`add element ${T} `)) {
        const m = /^add element inet scrooge (\w+) \{ (.*) \}$/.exec(line);
        if (!m) throw new Error(`fake nft: cannot parse: ${line}`);
        this.set(m[1]!).push(...m[2]!.split(', '));
      } else if (line.startsWith(`add rule ${T} forward `)) this.table().rules.push(line.slice(`add rule ${T} forward `.length));
      else if (line.startsWith(`add rule ${T} input `)) this.table().input.push(line.slice(`add rule ${T} input `.length));
      else if (line.startsWith(`add rule ${T} postrouting `)) this.table().nat.push(line.slice(`add rule ${T} postrouting `.length));
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
      for (const r of t.input) out.push(`nft input rule: ${r}`);
      for (const r of t.nat) out.push(`nft postrouting rule: ${r}`);
    }
    return out.join('\n');
  }
}

/**
 * A runner that understands exactly the commands TrafficControl uses, backed by a FakeKernel.
 * `fqCodel: false`: the kernel has no fq_codel (as these machines). `refuse`: a tc batch
 * containing a line that matches is refused, as the kernel refuses a change it cannot make.
 */
export function kernelRunner(kernel: FakeKernel, opts: { fqCodel?: boolean; refuse?: () => RegExp | undefined } = {}): Runner & { calls: string[][] } {
  const calls: string[][] = [];
  const run = async (argv: readonly string[], o: RunOptions = {}): Promise<RunResult> => {
    calls.push([...argv]);
    const ok = (stdout = '') => ({ argv, exitCode: 0, stdout, stderr: '' });
    const cmd = argv.join(' ');
    if (cmd === 'nft list tables') return ok();
    if (cmd === 'tc -j qdisc show') return ok(JSON.stringify([...kernel.qdiscs].map(([dev, q]) => ({ dev, kind: q.kind, handle: q.handle ?? '0:', root: true }))));
    if (cmd === 'nft -f -') {
      kernel.nft(o.input!);
      return ok();
    }
    if (cmd === 'nft -j list counter inet scrooge untunneled' || cmd === 'nft -j list counter inet scrooge discovery_dropped') {
      if (!kernel.nftTable) throw new CommandError(argv, 1, 'Error: No such file or directory');
      return ok(JSON.stringify({ nftables: [{ metainfo: {} }, { counter: { packets: kernel.nftTable.counter, bytes: 0 } }] }));
    }
    if (argv[0] === 'tc' && argv[1] === '-s' && argv[2] === 'class' && argv[3] === 'show' && argv[4] === 'dev') return ok(kernel.classShow(argv[5]!));
    if (cmd === 'tc -batch -' || cmd === 'tc -force -batch -') {
      const refuse = opts.refuse?.();
      for (const line of o.input!.trim().split('\n')) {
        if (!opts.fqCodel && / fq_codel$/.test(line)) throw new CommandError(argv, 2, 'Error: Specified qdisc kind is unknown.');
        if (refuse?.test(line)) throw new CommandError(argv, 2, `RTNETLINK answers: Invalid argument (refused: ${line})`);
        try {
          kernel.tc(line);
        } catch (err) {
          if (cmd.includes('-force')) continue;
          throw new CommandError(argv, 1, (err as Error).message);
        }
      }
      return ok();
    }
    throw new Error(`fake runner: unexpected command: ${cmd}`);
  };
  return Object.assign(run, { calls });
}
