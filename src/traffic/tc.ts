/**
 * The tc half of the plan: the commands (for one `tc -batch`) that turn the trees the kernel
 * has into the trees the plan wants. Only differences become commands, so applying the same
 * plan twice does nothing and a priority change touches only the classes whose numbers moved.
 * Deletions go children first, additions parents first.
 */
import { HANDLE, type TcClass, type TcTree } from './plan.js';

function classLine(verb: 'add' | 'change', dev: string, c: TcClass): string {
  return `class ${verb} dev ${dev} parent ${c.parent} classid ${c.classid} htb rate ${c.rate}bit ceil ${c.ceil}bit burst ${c.burst} cburst ${c.cburst} prio ${c.prio} quantum ${c.quantum}`;
}

function leafHandle(c: TcClass): string {
  return `${c.classid.split(':')[1]}:`;
}

function depth(c: TcClass, byId: Map<string, TcClass>): number {
  let d = 0;
  for (let p = byId.get(c.parent); p; p = byId.get(p.parent)) d++;
  return d;
}

function sameNumbers(a: TcClass, b: TcClass): boolean {
  return a.parent === b.parent && a.rate === b.rate && a.ceil === b.ceil && a.prio === b.prio && a.quantum === b.quantum && a.burst === b.burst && a.cburst === b.cburst;
}

/** Commands that build a tree from nothing (replacing whatever root qdisc the device had). */
export function buildTree(t: TcTree): string[] {
  const byId = new Map(t.classes.map((c) => [c.classid, c]));
  // `replace` with another kind always succeeds, whatever the root was (htb cannot `replace`
  // an htb root in place: "change operation not supported"); then the htb root goes on clean.
  const lines = [`qdisc replace dev ${t.dev} root pfifo`, `qdisc replace dev ${t.dev} root handle ${HANDLE}: htb default 10`];
  for (const c of [...t.classes].sort((a, b) => depth(a, byId) - depth(b, byId))) {
    lines.push(classLine('add', t.dev, c));
    if (c.leaf && t.leaf !== 'none') lines.push(`qdisc add dev ${t.dev} parent ${c.classid} handle ${leafHandle(c)} ${t.leaf}`);
  }
  return lines;
}

/**
 * @param current trees as last applied (by device); a device missing here is built from scratch.
 * @param desired the plan's trees.
 * @param present devices that exist now: a tree whose device is gone needs no deletion.
 */
export function tcCommands(current: ReadonlyMap<string, TcTree>, desired: readonly TcTree[], present: (dev: string) => boolean): string[] {
  const lines: string[] = [];
  const wanted = new Map(desired.map((t) => [t.dev, t]));
  for (const [dev, t] of current) {
    if (!wanted.has(dev) && present(dev) && t.kind === 'uplink') lines.push(`qdisc del dev ${dev} root`);
  }
  for (const t of desired) {
    const cur = current.get(t.dev);
    if (!cur || cur.leaf !== t.leaf) {
      lines.push(...buildTree(t));
      continue;
    }
    const have = new Map(cur.classes.map((c) => [c.classid, c]));
    const want = new Map(t.classes.map((c) => [c.classid, c]));
    const gone = cur.classes.filter((c) => !want.has(c.classid)).sort((a, b) => depth(b, have) - depth(a, have));
    for (const c of gone) lines.push(`class del dev ${t.dev} classid ${c.classid}`);
    for (const c of [...t.classes].sort((a, b) => depth(a, want) - depth(b, want))) {
      const before = have.get(c.classid);
      if (!before) {
        lines.push(classLine('add', t.dev, c));
        if (c.leaf && t.leaf !== 'none') lines.push(`qdisc add dev ${t.dev} parent ${c.classid} handle ${leafHandle(c)} ${t.leaf}`);
      } else if (!sameNumbers(before, c)) {
        lines.push(classLine('change', t.dev, c));
      }
    }
  }
  return lines;
}
