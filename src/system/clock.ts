/**
 * The one clock the agent runs on (after Tailscale's tstime.Clock): monotonic time for the
 * core's timers, wall-clock time where the world speaks it (WireGuard's handshake times, the
 * sequence epoch), and timers that return a cancel function. Tests drive a fake one
 * (test/unit/fakeclock.ts) through hours in milliseconds.
 */
export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Unix milliseconds. */
  wall(): number;
  /** Runs `fn` once after `ms`; the timer never keeps the process alive. Returns a cancel. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

/** Runs `fn` every `ms` on `clock` until the returned cancel is called. */
export function every(clock: Clock, ms: number, fn: () => void): () => void {
  let cancel = () => {};
  let stopped = false;
  const arm = () => {
    cancel = clock.setTimeout(() => {
      if (stopped) return;
      arm();
      fn();
    }, ms);
  };
  arm();
  return () => {
    stopped = true;
    cancel();
  };
}

/**
 * Serializes an async job: `kick()` runs it now, or once more after the run in progress if it
 * is running (however often it was kicked meanwhile). Never two runs at once; `idle()` resolves
 * when none is running or due.
 */
export function coalescing(job: () => Promise<void>, onError: (err: unknown) => void): { kick(): Promise<void>; idle(): Promise<void> } {
  let running: Promise<void> | undefined;
  let again = false;
  const run = (): Promise<void> => {
    running = (async () => {
      do {
        again = false;
        try {
          await job();
        } catch (err) {
          onError(err);
        }
      } while (again);
    })().finally(() => {
      running = undefined;
    });
    return running;
  };
  return {
    kick() {
      if (running) {
        again = true;
        return running;
      }
      return run();
    },
    idle: () => running ?? Promise.resolve(),
  };
}
