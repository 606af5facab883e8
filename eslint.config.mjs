// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'fs',
  'path',
  'os',
  'crypto',
  'http',
  'https',
  'net',
  'child_process',
  'util',
  'events',
  'stream',
  'worker_threads',
  'timers',
  'dns',
  'url',
  'process',
];
const forbidden = [
  ...nodeBuiltins.flatMap((m) => [m, `node:${m}`, `${m}/*`, `node:${m}/*`]),
  '@nestjs/*',
  '@prisma/*',
  'pg',
  'undici',
  'pino',
  'fastify',
  'zod',
  '@temporalio/client',
  '@temporalio/worker',
  '@temporalio/activity',
];

const apiPatterns = [
  {
    group: ['**/activities', '**/activities/*', '@temporalio/activity', '@temporalio/worker'],
    message: 'api code may not load worker code (activities/, @temporalio/activity, @temporalio/worker)',
  },
];
const resolverPatterns = [
  {
    group: ['**/common/core.module', '@prisma/*', '**/database/*', '**/generated/prisma', '**/generated/prisma/*', '@temporalio/*'],
    message: "a resolver plumbs arguments: Prisma and the Temporal client are reached through its feature's service",
  },
];
const gatewayPatterns = [
  {
    group: ['@nestjs/*', 'graphql', 'mercurius', '**/graphql/*', '**/common/graphql-errors', '**/common/core.module'],
    message: 'src/gateway/ runs ahead of Nest: no Nest or GraphQL imports',
  },
];
const gatewayInnerPatterns = [
  {
    group: ['@prisma/*', '**/database/prisma', '**/generated/*', 'pg'],
    message: 'in src/gateway/ only directory.ts, the read model, touches Postgres',
  },
  { group: ['@temporalio/*', '**/workflows/*'], message: 'in src/gateway/ only scaler-sink.ts talks to Temporal' },
];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'src/generated/**',
      'coverage/**',
      '.data/**',
      'scripts/*.js',
      'test/*.js',
      '*.config.js',
      '*.config.mjs',
      'prisma.config.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // Workflow code is replayed: it must be deterministic. Activities are imported as types only.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: forbidden.filter((m) => !m.includes('*')),
          patterns: [
            { group: forbidden.filter((m) => m.includes('*')), message: 'workflows/ may not import Node, Nest, Prisma or network modules' },
            { group: ['../src/*', '!../src/domain'], message: 'workflows/ may import only src/domain/ (pure code)' },
            { group: ['../activities', '../activities/*'], message: 'import activities as types only', allowTypeImports: true },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'fetch'],
    },
  },
  {
    // The api process loads no worker code: activities and the worker SDK stay on the worker's side.
    files: ['src/**/*.ts'],
    ignores: [
      'src/worker.ts',
      'src/temporal/worker-runtime.ts',
      'src/temporal/bundle.ts',
      'src/**/*.spec.ts',
      'src/domain/**',
      'src/gateway/**',
    ],
    rules: { 'no-restricted-imports': ['error', { patterns: apiPatterns }] },
  },
  {
    // Thin resolvers. Flat config replaces a rule's options per file, so the api patterns are restated here.
    files: ['src/**/*.resolver.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [...apiPatterns, ...resolverPatterns] }] },
  },
  {
    // The data path runs ahead of Nest: no Nest, GraphQL or GraphQL error module on it.
    files: ['src/gateway/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [...apiPatterns, ...gatewayPatterns] }] },
  },
  {
    // Inside the gateway, Postgres is its read model's and Temporal its scaler sink's; index.ts hands both on.
    files: ['src/gateway/**/*.ts'],
    ignores: ['src/gateway/**/*.spec.ts', 'src/gateway/index.ts', 'src/gateway/directory.ts', 'src/gateway/scaler-sink.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [...apiPatterns, ...gatewayPatterns, ...gatewayInnerPatterns] }] },
  },
  {
    // The request path allocates lean: the message below is the rule; bench/README.md has its measurements.
    files: ['src/gateway/**/*.ts'],
    ignores: ['src/gateway/**/*.spec.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ObjectExpression:has(> SpreadElement):has(> Property)',
          message:
            'On the request path, build this object with Object.assign: `{ ...a, key }` makes a new hidden class per call on Node 20.',
        },
      ],
    },
  },
  {
    // Pure decision logic shared with workflows: no I/O, no imports of app modules.
    files: ['src/domain/**/*.ts'],
    ignores: ['src/domain/**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: forbidden.filter((m) => !m.includes('*')), patterns: [{ group: ['../*', '@*/*'], message: 'src/domain is pure' }] },
      ],
    },
  },
);
