// The short churn soak (about 60 s; the full one is `node dist/bench/soak.js`, ~10 minutes):
// lan-10 under kills, restarts, link flaps and a node leaving for good must end with exactly
// one working tunnel per live pair, nothing leaked, and no agent memory growth over 20 %.
import { describe, expect, it } from 'vitest';
import { runSoak } from '../bench/soak.js';
import { isRoot } from './lib.js';

describe.skipIf(!isRoot)('churn soak (short)', () => {
  it('lan-10 survives 60 s of churn with one working tunnel per live pair and no leaks', async () => {
    const result = await runSoak({ seconds: 60, minChurn: 5, log: (l) => console.log(l) });
    console.log(JSON.stringify(result));
    expect(result.pairs.problems).toEqual([]);
    expect(result.pairs.working).toBe(result.pairs.expected);
    expect(result.leaks).toEqual([]);
    expect(result.rss.length).toBeGreaterThanOrEqual(3); // the steady agents were measured
    expect(result.maxRssGrowth).toBeLessThanOrEqual(0.2);
    expect(result.actions['leave']).toBe(1);
    expect(result.actions['kill']! + result.actions['stop']! + result.actions['linkflap']!).toBeGreaterThanOrEqual(5);
  }, 180_000);
});
