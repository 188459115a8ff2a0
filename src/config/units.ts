/**
 * Rates and durations as operators write them: `100mbit`, `2.5mbit`, `500kbit`, `1gbit`, `64000`
 * (bit/s, as tc understands them); `500ms`, `1s`, `2.5s`, `24h`, or a number of milliseconds.
 * Parsers return undefined on bad input; callers turn that into an error naming the field.
 */
const RATE = /^([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?$/i;
const RATE_FACTOR: Record<string, number> = {
  bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9,
  // tc's "bps" is bytes per second; accept it as tc does.
  bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9,
};

/** Parses a rate into bits per second (integer, >= 1), or undefined. */
export function parseRate(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 1 ? Math.round(value) : undefined;
  const m = RATE.exec(value.trim());
  if (!m) return undefined;
  const bits = Number(m[1]) * RATE_FACTOR[(m[2] ?? 'bit').toLowerCase()]!;
  return Number.isFinite(bits) && bits >= 1 && bits <= 1e12 ? Math.round(bits) : undefined;
}

/** Formats bits per second the way tc prints it (for display and tc commands). */
export function formatRate(bitsPerSecond: number): string {
  const units: [number, string][] = [[1e9, 'gbit'], [1e6, 'mbit'], [1e3, 'kbit']];
  for (const [f, u] of units) if (bitsPerSecond >= f && bitsPerSecond % (f / 1000) === 0) return `${+(bitsPerSecond / f).toFixed(3)}${u}`;
  return `${bitsPerSecond}bit`;
}

const DURATION = /^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min|h|d)$/;
const DURATION_FACTOR: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration into milliseconds (> 0), or undefined. A bare number is milliseconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * DURATION_FACTOR[m[2]!]!;
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}
