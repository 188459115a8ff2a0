/** Small helpers the edges share: bounded concurrency and a file test. */
import { promises as fs } from 'node:fs';

/**
 * `fn` over `items`, at most `limit` at a time, results in order. Every item runs; then the
 * first error, if any, is thrown.
 */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length) throw errors[0];
  return out;
}

/** True if `path` exists (anything: file, socket, directory). */
export async function exists(path: string): Promise<boolean> {
  try {
    await fs.access(path);
    return true;
  } catch {
    return false;
  }
}
