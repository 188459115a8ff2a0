/** V8's full garbage collection for the daemon (issue 13: memory given back when idle; see FULL_GC_MS). */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** The full collection `--expose-gc` gives, set at run time; undefined where the runtime refuses. */
export function v8FullCollection(): (() => void) | undefined {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as unknown;
  return typeof gc === 'function' ? () => void (gc as () => void)() : undefined;
}
