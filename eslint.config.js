import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const IMPURE_MODULES = ['execa', 'hono', '@hono/node-server', 'node:fs', 'node:fs/promises', 'fs', 'fs/promises', 'node:child_process', 'child_process', 'lowdb'];
const IMPURE_GROUP = { group: ['hono/*', '**/state/*'], message: 'handlers stay pure: the store is injected (Deps)' };
// The import graph goes one way: front ends (adapter/docker/, adapter/csi/) call the handlers; host access is injected.
const ADAPTER_GROUP = {
  group: ['**/adapter', '**/adapter/**'],
  message: 'nothing in handlers/ imports from adapter/: Docker\'s and CSI\'s shapes stay in their binding, host access comes in Deps',
};

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', '.e2e/', '.e2e-faults/', '.e2e-bench/', '.e2e-swarm/', '.e2e-trixie/', '.e2e-forky/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-control-regex': 'off',
    },
  },
  {
    // Handlers stay pure: no processes, no filesystem, no HTTP framework.
    files: ['handlers/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: IMPURE_MODULES, patterns: [IMPURE_GROUP, ADAPTER_GROUP] }] },
  },
  {
    // Front ends are siblings over the same handlers: what they share lives in handlers/ or adapter/host/.
    files: ['adapter/csi/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/docker', '**/docker/**'], message: 'the CSI front end does not import the Docker binding: share through handlers/ or adapter/host/' }] }] },
  },
  {
    files: ['adapter/docker/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/csi', '**/csi/**'], message: 'the Docker binding does not import the CSI front end: share through handlers/ or adapter/host/' }] }] },
  },
  {
    // An endpoint never imports another: what two endpoints share belongs in a helper (lifecycle.ts, volume.ts...).
    files: ['handlers/endpoints/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: IMPURE_MODULES,
          patterns: [IMPURE_GROUP, ADAPTER_GROUP, { group: ['./*'], message: 'an endpoint never imports another: move what they share into a helper in handlers/' }],
        },
      ],
    },
  },
);
