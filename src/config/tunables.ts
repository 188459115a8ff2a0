/**
 * Every tunable in one place, each with why it has its value (after wireguard-go's
 * constants.go). The config file's defaults come from here (config.ts), and so do the pure
 * core's (neighbors/core.ts) and the agent's internal timings. The protocol's own constants
 * (port, group, sizes) are not tunables: they live in src/protocol.
 * Pure: constants only.
 */

// ---------------------------------------------------------------- discovery (config defaults)

/** Hellos every second: a new neighbor is found within about a second, at ~100 bytes/s a link. */
export const HELLO_INTERVAL_MS = 1000;
/** ±25 %: neighbors started together drift apart instead of sending in lockstep. */
export const HELLO_JITTER = 0.25;
/** Quiet after 3.5 hellos missed: three lost datagrams in a row are not a departure. */
export const DEAD_INTERVAL_HELLOS = 3.5;
/**
 * Once a tunnel works, a neighbor's hellos are confirmed, and so verified, every 3 dead
 * intervals (10.5 s), not every half one: the handshakes prove the link two-way (PROTOCOL.md
 * §6; measured in core.ts).
 */
export const UP_CONFIRM_DEAD_INTERVALS = 3;
/** Bound on the neighbor table: a LAN of 256 routers is far past any real mesh segment. */
export const MAX_NEIGHBORS = 256;
/**
 * Places for strangers (heard, never two-way): enough for a crowd of new neighbors arriving at
 * once, few enough that keys made up by the thousand never crowd out real ones; the oldest
 * stranger gives way to a newer one (PROTOCOL.md §7 "The neighbor table").
 */
export const MAX_STRANGERS = 64;

// ---------------------------------------------------------------- tunnels (config defaults)

/** 1000 listen ports after WireGuard's usual 51820: one per neighbor, with room to spare. */
export const TUNNEL_PORT_RANGE: readonly [number, number] = [51820, 52819];
/** WireGuard's default MTU: 1500 less the IPv6 + UDP + WireGuard overhead (80 bytes). */
export const TUNNEL_MTU = 1420;
/** Persistent keepalive: a quiet neighbor's tunnel proves it alive every 5 s (PROTOCOL.md §6). */
export const KEEPALIVE_MS = 5000;
/** A tunnel silent for three keepalives and a second is dead (one lost keepalive is not). */
export const DEAD_AFTER_KEEPALIVES = 3;
export const DEAD_AFTER_SLACK_MS = 1000;
/**
 * A kernel command (ip, tc, nft, wg) that has not finished in this long has hung: it is killed and
 * counts as failed. Ours take milliseconds; a router starved of CPU (or a VM without
 * acceleration, 30x slower) needs more: config `commandTimeout`.
 */
export const COMMAND_TIMEOUT_MS = 10_000;
/** WireGuard retries a handshake for 5 s (REKEY_TIMEOUT) and more: 15 s is three of its tries. */
export const HANDSHAKE_TIMEOUT_MS = 15_000;
/** Fresh tunnel keys daily: WireGuard re-keys its sessions itself; this bounds a key's life. */
export const REKEY_AFTER_MS = 24 * 3_600_000;
/** Offers are retransmitted, and failed tunnel setups retried, after 1 s, 2 s, 4 s, then 8 s. */
export const RETRY_MIN_MS = 1000;
export const RETRY_MAX_MS = 8000;
/** A port that failed to bind (someone else holds it) is not tried again for a minute. */
export const BUSY_PORT_MS = 60_000;
/** New tunnels per second for all neighbors together (20/s, bursts of 40: a 20-node LAN at once). */
export const NEW_TUNNELS_PER_SECOND = 20;
export const NEW_TUNNELS_BURST = 40;
/**
 * Interfaces made ahead for neighbors that proved the link two-way but have no tunnel yet
 * (a wireguard-go start is the slow part of a new tunnel). Bounded: each is a process, and a
 * stranger that became two-way may never get a tunnel.
 */
export const MAX_PREPARED_TUNNELS = 16;

// ---------------------------------------------------------------- traffic (config defaults)

/**
 * The kernel's budgets for strangers on the discovery port, per source and all together
 * (bursts equal). Per source as the agent's (20/s); all together a little above the agent's
 * 300/s, leaving room for the junk it drops before its budget: what the kernel passes beyond
 * that is read only to be dropped as rate-limited, and fills the socket that the agent, when
 * starved of CPU, drains late; an overflow then loses real neighbors' hellos at random. At
 * 1000/s a 20,000/s flood from 200 addresses overflowed a starved agent's socket in 2 of 4
 * benchmark runs (91 % of real hellos processed); at 400/s the socket holds 2.5 times longer.
 */
export const GUARD_PER_SOURCE = 20;
export const GUARD_STRANGERS = 400;

/** Sell everything unless the owner says otherwise. */
export const SHARE = 1;
/** A mesh interface of unknown capacity: gigabit Ethernet. */
export const DEFAULT_RATE = 1e9;
/** Neighbors share what is sold in proportion to their priority; unknown ones weigh 1. */
export const DEFAULT_PRIORITY = 1;
/** Priorities are weights from 1 to 1000: finer than any operator needs, small for HTB's quanta. */
export const MAX_PRIORITY = 1000;

// ---------------------------------------------------------------- the agent's own timings

/**
 * V8 flags `scrooge run` sets for itself at its first line (NODE_OPTIONS may not carry them);
 * the environment's SCROOGE_V8_FLAGS replaces them ("" for none). Each measured (issue 13):
 * - `--semi-space-growth-factor=1`: the young generation keeps its first size instead of
 *   doubling in a burst (20 agents converging) and never giving the pages back: ~5 MiB less
 *   per agent on lan-20, no CPU lost.
 * - not `--no-opt`: without the optimizing compiler each agent holds ~5 MiB less, but the
 *   receive path (what a flood hits) verified 6,900-10,300 hellos/s instead of 10,600-11,800
 *   (bench/receive.ts, alternating runs): below its 10,000/s target.
 * - not `--maglev` (Node 20; Node 24 has it on already) nor `--always-sparkplug`: lan-20 to
 *   convergence in alternating runs, agents' CPU with maglev 16.8/13.1/13.0/15.1/14.1 s against
 *   20.8/15.0/12.7/13.0/12.3 s without (no steady gain: the machine's drift is larger);
 *   always-sparkplug 19.1/14.2 s against 20.8/15.0 s, 1.5 MiB more RSS. Neither pays.
 * - not a V8 `--interrupt-budget` (Node 20 only): a quieter first minute, but a busier steady
 *   idle window (0.62-0.66 % of a core against 0.58 %).
 * - not `--single-threaded-gc` nor `--no-lazy-feedback-allocation`: lan-20 agents' CPU to
 *   convergence 13.9/12.7/14.4 s and 11.6/11.7/16.1 s against 12.0/12.0/14.5 s (alternating
 *   runs): nothing beyond the noise.
 */
export const AGENT_V8_FLAGS = '--semi-space-growth-factor=1';

/**
 * The agent sleeps until the core's next deadline (hello, expiry, retry); work whose deadline
 * passed but that waits on something else (an apply, a path) is looked at again after this.
 */
export const TICK_MS = 100;
/** Mesh interfaces (and their link-local addresses) are looked for every second. */
export const INTERFACE_POLL_MS = 1000;
/**
 * Tunnel interfaces are checked against the kernel at least this often (a vanished one, its
 * wireguard-go killed, is rebuilt): often enough to matter, rare enough for an idle router.
 */
export const TUNNEL_CHECK_MS = 5000;
/** Fresh and quiet tunnels are asked for handshakes every 100 ms (a UAPI read each). */
export const WATCH_POLL_MS = 100;
/** Tunnel changes come in bursts; traffic control is applied once per burst, 100 ms after it. */
export const TRAFFIC_DEBOUNCE_MS = 100;
/** The kernel's guard learns newly proven neighbors at most this often (an nft run each time). */
export const GUARD_DEBOUNCE_MS = 1000;
/** A traffic apply the kernel refused is tried again after a second (it may be a passing state). */
export const TRAFFIC_RETRY_MS = 1000;
/**
 * Per-sender sequence marks are saved this often when they changed (no fsync: the page cache
 * survives the agent crashing). After a crash, only messages of the last two seconds before it
 * could be replayed once (PROTOCOL.md §5).
 */
export const REPLAY_SAVE_MS = 2000;
/**
 * How often the agent runs a full garbage collection. Left to itself, V8 lets an idle agent's
 * anonymous memory grow from ~15 to ~23-25 MiB over its first ten minutes (memory held by dead
 * objects it sees no reason to collect yet: one full collection gave back 7.6 MiB of a lan-10
 * agent's 22.9, of which its JS heap only 1.5). Measured on lan-10 (two runs side by side, 9
 * minutes after convergence, medians per agent): anonymous 22.8 MiB without, 16.5 with (RSS
 * 65.6 against 59.4); idle CPU 0.78 against 0.83 % of a core (+6 %, the same sign in a second
 * pair of runs: more than the ~10 ms a collection costs, less than the noise between runs).
 * Not kept: collecting only once the resident size grew by 1 or 2 MiB since the last one
 * (two pairs of runs): idle CPU +1.6 % (noise), but 19.2-19.5 MiB at 9 minutes and climbing.
 */
export const FULL_GC_MS = 60_000;
/** A stop must finish within this, whatever hangs: the service manager is waiting. */
export const STOP_BUDGET_MS = 2000;
