import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

/** Pre-bundles workflows for production workers: dist/workflow-bundle.js. Exits non-zero on failure. */
async function main() {
  const out = resolve(__dirname, '../../workflow-bundle.js');
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: undefined });
  await writeFile(out, code);
  process.stdout.write(`workflow bundle written: ${out} (${Math.round(code.length / 1024)} KiB)\n`);
}

main().catch((err) => {
  process.stderr.write(`workflow bundle failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
