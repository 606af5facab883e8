// `node dist/src/cli/bundle.js <pipelineId> [variantId] --out <dir>`: writes a pipeline variant's bundle (the Custom GPU
// target's container build context, src/bundle) from the database in DATABASE_URL, one progress line per step.
import { parseArgs } from 'node:util';
import { bundleOf } from '../bundle/bundle.service';
import { writeBundle } from '../bundle/write';
import { loadConfig } from '../config/config';
import { createPrisma } from '../database/prisma';
import { DomainError } from '../domain/errors';

const USAGE = 'usage: node dist/src/cli/bundle.js <pipelineId> [variantId] --out <dir>';

export async function main(argv: string[], say: (line: string) => void): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { out: { type: 'string', short: 'o' } }, allowPositionals: true, strict: true });
  } catch (err) {
    say(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  const [pipelineId, variantId, ...rest] = parsed.positionals;
  const out = parsed.values.out;
  if (!pipelineId || !out || rest.length) {
    say(USAGE);
    return 2;
  }
  const config = loadConfig();
  const prisma = createPrisma(config.DATABASE_URL, 1);
  try {
    say(`reading pipeline ${pipelineId}${variantId ? ` variant ${variantId}` : ' (its selected variant)'}`);
    const { pipeline, variant, files } = await bundleOf(prisma, null, pipelineId, variantId);
    say(`bundling ${pipeline.name} (${pipeline.model}), variant ${variant.name} on ${variant.engine}: ${files.length} files`);
    await writeBundle(out, files, say);
    say(`bundle written to ${out}: docker compose up --build there, or kubectl apply -f ${out}/k8s`);
    return 0;
  } catch (err) {
    say(`bundle failed: ${err instanceof DomainError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    await prisma.$disconnect();
  }
}

if (require.main === module) {
  void main(process.argv.slice(2), (line) => process.stderr.write(`${line}\n`)).then((code) => process.exit(code));
}
