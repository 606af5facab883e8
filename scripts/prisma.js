#!/usr/bin/env node
// Runs the Prisma CLI so that it works offline and in air-gapped installs.
//
// `prisma generate` never executes the schema engine, but the CLI insists on
// downloading it first. When no engine is available we point
// PRISMA_SCHEMA_ENGINE_BINARY at a stub that explains itself: generate works;
// `migrate dev/diff` (which do need the engine) fail with a clear message.
// Online, or with PRISMA_SCHEMA_ENGINE_BINARY set to a real engine, nothing changes.
const { spawnSync } = require('node:child_process');
const { existsSync, readdirSync } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const env = { ...process.env, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1' };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) {
  const enginesDir = path.join(root, 'node_modules', '@prisma', 'engines');
  const downloaded = existsSync(enginesDir) && readdirSync(enginesDir).some((f) => f.startsWith('schema-engine'));
  if (!downloaded) env.PRISMA_SCHEMA_ENGINE_BINARY = path.join(__dirname, 'no-schema-engine.sh');
}
const cli = path.join(root, 'node_modules', 'prisma', 'build', 'index.js');
const r = spawnSync(process.execPath, [cli, ...process.argv.slice(2)], { stdio: 'inherit', env, cwd: root });
process.exit(r.status ?? 1);
