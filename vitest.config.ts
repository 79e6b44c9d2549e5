import { defineConfig } from 'vitest/config';

// Two projects, selected by `make test-unit` / `make test-integration`
// (`vitest run --project unit|integration`).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/helpers/global-setup.ts'],
          setupFiles: ['test/helpers/setup-file.ts'],
          // Child processes, not worker threads: the helpers spawn many
          // processes and rely on process-exit hooks for last-resort cleanup.
          pool: 'forks',
          // One file at a time: the product keeps node-wide state (IPAM
          // stores, locks) and 2 cores gain nothing from overlapping
          // namespace churn; failures stay readable and deterministic.
          fileParallelism: false,
          // Each test builds netns and veths and runs a ~50 MB binary several
          // times; be generous so a slow CI machine is not a failure.
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
