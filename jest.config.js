// Four tiers, each a jest project (`npm test -- --selectProjects unit`):
//   unit         pure code, specs beside it in src/
//   workflows    workflows on the real Temporal dev server with fake activities; saved histories replayed
//   integration  activities' building blocks on real Postgres and provider fakes; migrations; compose
//   e2e          the api and worker in-process, driven through GraphQL and the official OpenAI client
// Everything runs serially (--runInBand) against one Temporal dev server and a fresh Postgres database
// made by test/global-setup.ts.
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
      keepClassNames: true,
    },
    module: { type: 'commonjs' },
  },
];

const project = (displayName, roots, testMatch = ['**/*.spec.ts']) => ({
  displayName,
  testEnvironment: 'node',
  roots,
  testMatch,
  transform: { '^.+\\.ts$': swc },
});

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    project('unit', ['<rootDir>/src']),
    project('workflows', ['<rootDir>/test/workflows']),
    project('integration', ['<rootDir>/test/integration']),
    project('e2e', ['<rootDir>/test/e2e']),
  ],
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
  testTimeout: 120_000,
  verbose: true,
  reporters: ['default', '<rootDir>/test/summary-reporter.js'],
};
