import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const IMPURE_MODULES = ['execa', 'hono', '@hono/node-server', 'node:fs', 'node:fs/promises', 'fs', 'fs/promises', 'node:child_process', 'child_process', 'lowdb'];
const IMPURE_GROUP = { group: ['hono/*', '**/adapter/*', '**/state/*'], message: 'handlers stay pure: the adapter and state are injected (Deps)' };

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
    rules: { 'no-restricted-imports': ['error', { paths: IMPURE_MODULES, patterns: [IMPURE_GROUP] }] },
  },
  {
    // An endpoint never imports another: what two endpoints share belongs in a helper (lifecycle.ts, volume.ts...).
    files: ['handlers/endpoints/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: IMPURE_MODULES,
          patterns: [IMPURE_GROUP, { group: ['./*'], message: 'an endpoint never imports another: move what they share into a helper in handlers/' }],
        },
      ],
    },
  },
);
