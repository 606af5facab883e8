import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Activities, createActivities } from '../../activities';
import { newId } from '../../src/common/secrets';
import { createPrisma, PrismaClient } from '../../src/database/prisma';
import type { Prisma } from '../../src/database/prisma';
import { LocalProvider } from '../../src/providers/local';
import type { Providers } from '../../src/providers/provider';
import { WorkspacesService } from '../../src/workspaces/workspaces.service';

/**
 * The activity tier: a workspace on the run's Postgres, and per test a deployment row with the
 * activities over a local provider of its own (real simulator processes), run in Temporal's mock
 * activity context. close() stops every replica and leaves nothing that looks live in the shared database.
 */
export async function activityWorld(name: string) {
  const prisma: PrismaClient = createPrisma(process.env.DATABASE_URL!, 4);
  const { workspace } = await new WorkspacesService(prisma).create(`${name}-${Date.now()}`, 'TEAM');
  const workspaceId = workspace.id;
  const providers: LocalProvider[] = [];

  /** A LOCAL deployment (ACTIVE, FLEX unless `row` says otherwise) and its activities; `command` replaces the simulator. */
  async function deployment(
    o: { command?: string; simulatorArgs?: string[]; row?: Partial<Prisma.DeploymentUncheckedCreateInput>; providers?: Providers } = {},
  ) {
    const local = new LocalProvider({
      stateDir: mkdtempSync(join(tmpdir(), `${name}-state-`)),
      cacheDir: mkdtempSync(join(tmpdir(), `${name}-cache-`)),
      command: o.command ?? '',
      simulatorArgs: o.simulatorArgs ?? ['--cold-start-ms 100', '--warm-start-ms 100'],
    });
    providers.push(local);
    const pipelineId = newId('pl');
    const variantId = newId('var');
    await prisma.pipeline.create({ data: { id: pipelineId, workspaceId, name: pipelineId, task: 'CHAT', model: 'sim/tiny-chat' } });
    await prisma.variant.create({ data: { id: variantId, pipelineId, name: 'default', gpu: 'sim', engine: 'sim', isDefault: true } });
    const deploymentId = newId('dep');
    // Its first revision, as a deploy makes it: the replicas the activities start belong to it.
    const revisionId = newId('rev');
    await prisma.deployment.create({
      data: {
        id: deploymentId,
        revisionId,
        workspaceId,
        pipelineId,
        variantId,
        target: 'LOCAL',
        gpu: 'sim',
        mode: 'FLEX',
        minReplicas: 0,
        maxReplicas: 8,
        status: 'ACTIVE',
        ...o.row,
      },
    });
    await prisma.revision.create({
      data: { id: revisionId, deploymentId, variantId, gpu: 'sim', status: 'SERVING', operationId: newId('op'), servedFrom: new Date() },
    });
    const acts = createActivities({
      prisma,
      providers: o.providers ?? { LOCAL: local },
      publicBaseUrl: 'http://127.0.0.1',
      healthPollMs: 20,
      healthTimeoutSeconds: 10,
    });
    const env = new MockActivityEnvironment();
    const run = <K extends keyof Activities>(activity: K, ...args: Parameters<Activities[K]>) =>
      env.run(acts[activity] as (...a: Parameters<Activities[K]>) => ReturnType<Activities[K]>, ...args) as ReturnType<Activities[K]>;
    const rows = () => prisma.replica.findMany({ where: { deploymentId }, orderBy: { startedAt: 'asc' } });
    /** Replica rows counted by state. */
    const byState = async () => {
      const out: Record<string, number> = {};
      for (const r of await rows()) out[r.state] = (out[r.state] ?? 0) + 1;
      return out;
    };
    return { deploymentId, pipelineId, variantId, revisionId, run, rows, byState };
  }

  return {
    prisma,
    workspaceId,
    deployment,
    close: async () => {
      for (const p of providers) await p.stopAll();
      await prisma.replica.updateMany({ where: { deployment: { workspaceId } }, data: { state: 'STOPPED' } });
      await prisma.deployment.updateMany({ where: { workspaceId }, data: { status: 'DELETED' } });
      await prisma.$disconnect();
    },
  };
}
