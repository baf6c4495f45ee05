import { defineConfig } from 'vitest/config';

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
          name: 'e2e',
          include: ['test/e2e/**/*.e2e.test.ts'],
          globalSetup: ['test/e2e/global-setup.ts'],
          // One real dockerd and sshd are shared: run files one after another.
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 300_000,
        },
      },
      {
        test: {
          // Docker Engine 26 and Podman 5 from a Debian 13 root in a private namespace (scripts/trixie-env.sh); the CSI file
          // brings up Docker 28.5 from a Debian forky root itself (TRIXIE_SUITE=forky).
          name: 'trixie',
          include: ['test/trixie/**/*.trixie.test.ts'],
          globalSetup: ['test/trixie/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 600_000,
        },
      },
      {
        test: {
          // Fault injection against the real dockerd/sshd/FUSE (its own environment in .e2e-faults); prints a table.
          name: 'faults',
          include: ['test/faults/**/*.fault.test.ts'],
          globalSetup: ['test/faults/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
