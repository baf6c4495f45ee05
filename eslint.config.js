import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', '.e2e/', '.e2e-faults/', '.e2e-bench/', '.e2e-swarm/'] },
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
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['execa', 'hono', '@hono/node-server', 'node:fs', 'node:fs/promises', 'fs', 'fs/promises', 'node:child_process', 'child_process', 'lowdb'],
          patterns: ['hono/*', '../adapter/*', '../state/*'],
        },
      ],
    },
  },
);
