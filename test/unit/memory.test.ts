// src/system/memory.ts: the daemon gets V8's full collection.
import { expect, it } from 'vitest';
import { v8FullCollection } from '../../src/system/memory.js';

it('V8 gives its full collection to the daemon', () => {
  const gc = v8FullCollection();
  expect(typeof gc).toBe('function');
  gc!();
});
