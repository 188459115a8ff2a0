import { defineConfig } from 'vitest/config';

// Netns tests build real namespaces and run real daemons: they are slow and they share one
// kernel, so they run one file at a time; unit tests run in parallel.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'netns',
          include: ['test/netns/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The kernel WireGuard backend: natively where the kernel has the module, else in a VM
        // (test/vm/README.md). One VM at a time: it wants both cores.
        test: {
          name: 'vm',
          include: ['test/vm/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 1_800_000,
        },
      },
    ],
  },
});
