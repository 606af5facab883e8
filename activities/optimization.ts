import { heartbeat, sleep } from '@temporalio/activity';
import { claimOperation } from '../src/deployments/operations';
import { DomainError, NotFoundError, ReplicaUnhealthyError } from '../src/domain/errors';
import {
  Constraints,
  defaultCandidates,
  evaluate,
  nextLevel,
  Priority,
  rank,
  RedeployPolicy,
  RunSettings,
  SweepPoint,
  trafficDrift,
  VariantMetrics,
} from '../src/domain/optimization';
import { DEFAULT_PRICES, gpuRates, PriceTable } from '../src/domain/pricing';
import { measureLevel, measureQuality } from '../src/optimization/measure';
import type { ReplicaHandle } from '../src/providers/provider';
import type { SwapInput } from '../workflows/messages';
import type { ActivityContext } from './context';
import { engineOf } from './replicas';

/** The pseudo-deployment a run's candidate replicas are started under (no deployment row: nothing routes to them). */
export const runOwner = (runId: string) => `run:${runId}`;
export const candidateReplicaId = (variantId: string) => `${variantId}-opt`;

const settingsOf = (run: { load: unknown }) => run.load as RunSettings;

export function optimizationActivities(ctx: ActivityContext, prices: PriceTable = DEFAULT_PRICES) {
  const { prisma, pollMs } = ctx;

  async function loadRun(runId: string) {
    const run = await prisma.optimizationRun.findUnique({ where: { id: runId }, include: { pipeline: true } });
    if (!run) throw new NotFoundError(`optimization run ${runId} not found`);
    return run;
  }

  async function loadCandidate(runId: string, variantId: string) {
    const run = await loadRun(runId);
    const variant = await prisma.variant.findFirst({ where: { id: variantId, runId } });
    if (!variant) throw new NotFoundError(`variant ${variantId} of run ${runId} not found`);
    return { run, variant, settings: settingsOf(run) };
  }

  async function ensureCandidate(runId: string, variantId: string): Promise<ReplicaHandle> {
    const { run, variant, settings } = await loadCandidate(runId, variantId);
    return ctx.provider(settings.target).ensureReplica({
      replicaId: candidateReplicaId(variant.id),
      deploymentId: runOwner(runId),
      pipelineId: run.pipelineId,
      variantId: variant.id,
      model: run.pipeline.model,
      task: run.pipeline.task,
      gpu: variant.gpu,
      maxConcurrency: variant.maxConcurrency,
      revisionId: null,
      engine: engineOf(variant),
    });
  }

  return {
    /** Marks the run RUNNING and creates its candidate variants once; returns them in the order they are measured. */
    async planRun({
      runId,
    }: {
      runId: string;
    }): Promise<{ candidates: Array<{ variantId: string; name: string }>; settings: RunSettings }> {
      const run = await loadRun(runId);
      const settings = settingsOf(run);
      await prisma.optimizationRun.updateMany({ where: { id: runId, status: 'PENDING' }, data: { status: 'RUNNING' } });
      let variants = await prisma.variant.findMany({ where: { runId }, orderBy: { createdAt: 'asc' } });
      if (variants.length === 0) {
        const cands = settings.candidates ?? defaultCandidates(run.pipeline.task, run.gpus, settings.maxConcurrency, settings.draftModel);
        const ordinal = await prisma.optimizationRun.count({ where: { pipelineId: run.pipelineId, startedAt: { lte: run.startedAt } } });
        const t = Date.now();
        await prisma.variant.createMany({
          data: cands.map((c, i) => ({
            id: `${runId.replace(/^run_/, 'var_')}_${i}`,
            pipelineId: run.pipelineId,
            runId,
            name: `run${ordinal}-${c.name}`,
            gpu: c.gpu,
            engine: c.engine,
            quantization: c.quantization,
            engineConfig: (c.engineConfig ?? undefined) as object | undefined,
            maxConcurrency: c.maxConcurrency,
            status: 'PENDING' as const,
            // Creation order is measuring order.
            createdAt: new Date(t + i),
          })),
          skipDuplicates: true,
        });
        variants = await prisma.variant.findMany({ where: { runId }, orderBy: { createdAt: 'asc' } });
      }
      return { candidates: variants.map((v) => ({ variantId: v.id, name: v.name })), settings };
    },

    /** Starts the candidate's replica on the run's target (idempotent on its id). */
    async startCandidate({ runId, variantId }: { runId: string; variantId: string }): Promise<{ address: string }> {
      await prisma.variant.update({ where: { id: variantId }, data: { status: 'MEASURING', reason: null } });
      const h = await ensureCandidate(runId, variantId);
      return { address: h.address };
    },

    /** Waits for the candidate's replica to serve; a replica that exits first fails the candidate at once. */
    async waitCandidateReady({ runId, variantId }: { runId: string; variantId: string }): Promise<void> {
      const { settings } = await loadCandidate(runId, variantId);
      const p = ctx.provider(settings.target);
      const h = await ensureCandidate(runId, variantId);
      const deadline = Date.now() + settings.healthTimeoutSeconds * 1000;
      for (;;) {
        const state = await p.health(h);
        if (state === 'ready') return;
        if (state === 'gone') throw new ReplicaUnhealthyError(`the candidate's replica exited before it became healthy`);
        if (Date.now() > deadline) {
          const detail = p.healthDetail ? await p.healthDetail(h).catch(() => null) : null;
          throw new ReplicaUnhealthyError(
            `the candidate's replica was not healthy after ${settings.healthTimeoutSeconds} s${detail ? `: ${detail}` : ''}`,
          );
        }
        heartbeat();
        await sleep(pollMs);
      }
    },

    /**
     * The sweep: every level nextLevel asks for, each stored as it is measured (a retried activity goes on from the
     * last stored level), then the quality eval, then the verdict against the run's constraints.
     */
    async measureCandidate({ runId, variantId }: { runId: string; variantId: string }): Promise<{ status: string; reason: string | null }> {
      const { run, variant, settings } = await loadCandidate(runId, variantId);
      const p = ctx.provider(settings.target);
      const h = await ensureCandidate(runId, variantId);
      if ((await p.health(h)) !== 'ready') throw new ReplicaUnhealthyError(`the candidate's replica is not serving`);
      const points = ((variant.sweep as SweepPoint[] | null) ?? []).slice();
      const load = {
        address: h.address,
        model: run.pipeline.model,
        task: run.pipeline.task,
        authorization: null,
        seconds: settings.levelSeconds,
        promptTokens: settings.promptTokens,
        outputTokens: settings.outputTokens,
      };
      if (points.length === 0) {
        // Warm-up: the first requests of a fresh engine pay for compilation and cache fills, not what it serves at.
        await measureLevel({ ...load, concurrency: 1, seconds: Math.min(1, settings.levelSeconds) });
      }
      for (let c = nextLevel(points, variant.maxConcurrency); c !== null; c = nextLevel(points, variant.maxConcurrency)) {
        heartbeat({ level: c, measured: points.length });
        points.push(await measureLevel({ ...load, concurrency: c, onProgress: (done) => heartbeat({ level: c, done }) }));
        await prisma.variant.update({ where: { id: variantId }, data: { sweep: points as unknown as object } });
      }
      heartbeat({ quality: true });
      const quality =
        run.pipeline.task === 'CHAT' && settings.evalQuestions > 0 ? await measureQuality(load, settings.evalQuestions) : null;
      const price = gpuRates(prices, variant.gpu).activePerReplicaSecondUsd * 3600;
      const { metrics, reason } = evaluate(points, (run.constraints as Constraints | null) ?? {}, price, quality);
      const status = metrics === null ? 'FAILED' : reason ? 'REJECTED' : 'MEASURED';
      await prisma.variant.update({
        where: { id: variantId },
        data: {
          status,
          reason,
          metrics: (metrics ?? undefined) as object | undefined,
          ...(metrics
            ? {
                targetConcurrency: metrics.targetConcurrency,
                throughputTps: metrics.throughputTps,
                latencyP50Ms: metrics.latencyP50Ms,
                ttftP50Ms: metrics.ttftP50Ms,
              }
            : {}),
        },
      });
      return { status, reason };
    },

    /** Stops the candidate's replica; a no-op when it is gone. */
    async stopCandidate({ runId, variantId }: { runId: string; variantId: string }): Promise<void> {
      const { settings } = await loadCandidate(runId, variantId);
      await ctx.provider(settings.target).stopReplica(candidateReplicaId(variantId));
    },

    async failCandidate({ variantId, reason }: { runId: string; variantId: string; reason: string }): Promise<void> {
      await prisma.variant.update({ where: { id: variantId }, data: { status: 'FAILED', reason } });
    },

    /**
     * Ranks the run's measured variants by its priority, makes the winner the pipeline's selected variant (what a
     * later deploy or rollback uses), and says which ACTIVE deployments should move onto it (redeploy IF_BETTER:
     * those whose variant the run measured worse, or did not measure).
     */
    async finishRun({ runId }: { runId: string }): Promise<{ winnerVariantId: string | null; redeploy: string[]; reason: string | null }> {
      const run = await loadRun(runId);
      const variants = await prisma.variant.findMany({ where: { runId } });
      const measured = variants.filter((v) => v.status === 'MEASURED' && v.metrics);
      const order = rank(
        measured.map((v) => ({ id: v.id, metrics: v.metrics as unknown as VariantMetrics })),
        run.priority as Priority,
      );
      await prisma.$transaction([
        prisma.variant.updateMany({ where: { runId }, data: { rank: null } }),
        ...order.map((id, i) => prisma.variant.update({ where: { id }, data: { rank: i + 1 } })),
      ]);
      const winner = order[0] ?? null;
      if (!winner) {
        const why = variants.map((v) => `${v.name}: ${v.reason ?? v.status}`).join('; ');
        return { winnerVariantId: null, redeploy: [], reason: `no candidate met the constraints (${why || 'none was built'})` };
      }
      await prisma.$transaction([
        prisma.optimizationRun.update({ where: { id: runId }, data: { winnerVariantId: winner } }),
        prisma.pipeline.update({ where: { id: run.pipelineId }, data: { selectedVariantId: winner } }),
      ]);
      if ((run.redeploy as RedeployPolicy) !== 'IF_BETTER') return { winnerVariantId: winner, redeploy: [], reason: null };
      const deployments = await prisma.deployment.findMany({
        where: { pipelineId: run.pipelineId, status: 'ACTIVE', target: { not: 'CUSTOM' }, variantId: { not: winner } },
        orderBy: { createdAt: 'asc' },
      });
      const rankOf = new Map(order.map((id, i) => [id, i]));
      // A deployment on a variant this run ranked is moved only when the winner ranked above it (always, here: the
      // winner is first); one on a variant the run rejected or never measured is moved too.
      const redeploy = deployments.filter((d) => (rankOf.get(d.variantId) ?? Infinity) > 0).map((d) => d.id);
      return { winnerVariantId: winner, redeploy, reason: null };
    },

    /**
     * Claims a rollback of the deployment onto the run's winner, under an operation id derived from the run (a
     * retried activity finds its own claim). Skipped, with why, when the deployment is busy or no longer ACTIVE.
     */
    async claimRedeploy({
      runId,
      deploymentId,
    }: {
      runId: string;
      deploymentId: string;
    }): Promise<{ input: SwapInput | null; skipped: string | null }> {
      const run = await loadRun(runId);
      const settings = settingsOf(run);
      if (!run.winnerVariantId) return { input: null, skipped: 'the run has no winner' };
      const winner = await prisma.variant.findUniqueOrThrow({ where: { id: run.winnerVariantId } });
      const d = await prisma.deployment.findUnique({ where: { id: deploymentId } });
      if (!d || d.status !== 'ACTIVE') return { input: null, skipped: `deployment ${deploymentId} is ${d?.status ?? 'gone'}` };
      const operationId = `op_${runId.replace(/^run_/, '')}_${deploymentId.replace(/^dep_/, '').slice(-8)}`;
      try {
        const claim = await claimOperation(prisma, d, 'ROLLBACK', {
          operationId,
          variantId: winner.id,
          gpu: winner.gpu,
          why: `optimization run ${runId} measured variant ${winner.name} better`,
        });
        return {
          input: {
            deploymentId,
            operationId: claim.operationId,
            kind: 'ROLLBACK',
            revisionId: claim.revisionId!,
            healthTimeoutSeconds: settings.healthTimeoutSeconds,
            drainTimeoutMs: settings.drainTimeoutMs,
          },
          skipped: null,
        };
      } catch (err) {
        if (err instanceof DomainError) return { input: null, skipped: err.message };
        throw err;
      }
    },

    /** Ends the run: SUCCEEDED with its winner, or FAILED with the reason; records what each redeploy did. */
    async endRun({
      runId,
      error,
      redeployments,
    }: {
      runId: string;
      error: string | null;
      redeployments?: Array<{ deploymentId: string; outcome: string }>;
    }): Promise<void> {
      await prisma.optimizationRun.updateMany({
        where: { id: runId, finishedAt: null },
        data: {
          status: error ? 'FAILED' : 'SUCCEEDED',
          error,
          finishedAt: new Date(),
          ...(redeployments ? { redeployments: redeployments as unknown as object } : {}),
        },
      });
      // Candidates the run never reached stay PENDING no more.
      await prisma.variant.updateMany({
        where: { runId, status: { in: ['PENDING', 'MEASURING'] } },
        data: { status: 'FAILED', reason: error ? `the run ended: ${error}` : 'not measured' },
      });
    },

    /** Stops every replica the run still has on its target (a candidate whose stop was missed, a crash). */
    async releaseRun({ runId }: { runId: string }): Promise<{ stopped: number }> {
      const run = await loadRun(runId);
      const p = ctx.provider(settingsOf(run).target);
      const mine = (await p.listReplicas()).filter((h) => h.deploymentId === runOwner(runId));
      for (const h of mine) await p.stopReplica(h.replicaId);
      return { stopped: mine.length };
    },

    /**
     * For a schedule: the run a scheduled (or drift-triggered) workflow executes, made from the pipeline's schedule
     * as it stands now; skipped when the schedule is gone or another run of the pipeline is in progress.
     */
    async createScheduledRun({
      pipelineId,
      trigger,
      settings,
    }: {
      pipelineId: string;
      trigger: string;
      settings: RunSettings;
    }): Promise<{ runId: string | null; skipped: string | null }> {
      const sched = await prisma.reoptimizationSchedule.findUnique({ where: { pipelineId } });
      if (!sched) return { runId: null, skipped: `pipeline ${pipelineId} has no re-optimization schedule` };
      if (sched.paused) return { runId: null, skipped: 'the schedule is paused' };
      const busy = await prisma.optimizationRun.findFirst({ where: { pipelineId, status: { in: ['PENDING', 'RUNNING'] } } });
      if (busy) return { runId: null, skipped: `run ${busy.id} is in progress` };
      const runId = `run_${trigger.toLowerCase()}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
      await prisma.optimizationRun.create({
        data: {
          id: runId,
          pipelineId,
          status: 'PENDING',
          trigger,
          priority: sched.priority,
          constraints: (sched.constraints ?? undefined) as object | undefined,
          gpus: sched.gpus,
          redeploy: sched.redeploy,
          load: { ...settings, candidates: null } as object,
          workflowId: `optimize:${pipelineId}:${runId}`,
        },
      });
      return { runId, skipped: null };
    },

    /**
     * The reference's "re-optimize after a major traffic-pattern change": for each pipeline whose selected variant a
     * run measured, the live traffic of its ACTIVE deployments over the window (from the usage rollups) against
     * what the run measured. A drift records an event on the deployment (once per run) and returns the pipelines
     * whose schedule asks to run early.
     */
    async checkTrafficDrift({
      windowSeconds,
    }: {
      windowSeconds: number;
    }): Promise<{ drifted: string[]; runEarly: Array<{ pipelineId: string; settings: Record<string, unknown> }> }> {
      const since = new Date(Date.now() - windowSeconds * 1000);
      const deployments = await prisma.deployment.findMany({
        where: { status: 'ACTIVE', variant: { runId: { not: null }, status: 'MEASURED' } },
        include: { variant: { include: { run: true } }, pipeline: { include: { schedule: true } } },
      });
      // One read of every measured deployment's minutes in the window, summed per deployment and minute.
      const minutes = deployments.length
        ? await prisma.usageRollup.groupBy({
            by: ['deploymentId', 'minute'],
            where: { deploymentId: { in: deployments.map((d) => d.id) }, minute: { gte: since } },
            _sum: { requests: true, errors: true, latencyMsSum: true, promptTokens: true, completionTokens: true },
          })
        : [];
      const byDeployment = new Map<string, typeof minutes>();
      for (const m of minutes) byDeployment.set(m.deploymentId, [...(byDeployment.get(m.deploymentId) ?? []), m]);
      const drifted: string[] = [];
      const runEarly = new Map<string, Record<string, unknown>>();
      for (const d of deployments) {
        const run = d.variant.run!;
        const m = d.variant.metrics as unknown as VariantMetrics | null;
        const s = run.load as RunSettings | null;
        if (!m || !s) continue;
        const rows = (byDeployment.get(d.id) ?? []).map((r) => r._sum);
        // Failed requests carry no tokens: lengths are means over the ones served.
        const requests = rows.reduce((n, r) => n + (r.requests ?? 0) - (r.errors ?? 0), 0);
        if (requests <= 0) continue;
        const live = {
          requests,
          // Mean in flight over the minutes that saw traffic (Little's law: request time over wall time).
          concurrency: rows.reduce((n, r) => n + Number(r.latencyMsSum ?? 0), 0) / (rows.length * 60_000),
          promptTokens: rows.reduce((n, r) => n + Number(r.promptTokens ?? 0), 0) / requests,
          outputTokens: rows.reduce((n, r) => n + Number(r.completionTokens ?? 0), 0) / requests,
        };
        const why = trafficDrift({ concurrency: m.targetConcurrency, promptTokens: s.promptTokens, outputTokens: s.outputTokens }, live);
        if (!why) continue;
        const kind = 'optimization.drift';
        const seen = await prisma.deploymentEvent.findFirst({
          where: { deploymentId: d.id, kind, data: { path: ['runId'], equals: run.id } },
        });
        if (seen) continue;
        drifted.push(d.id);
        await ctx.event(
          d.id,
          kind,
          `live traffic has drifted from what optimization run ${run.id} measured (${why}): re-optimize the pipeline`,
          {
            runId: run.id,
            live,
          },
        );
        const sched = d.pipeline.schedule;
        // The early run measures the traffic as it is now, so its winner fits it (and the drift is not seen again).
        const now = { promptTokens: Math.max(1, Math.round(live.promptTokens)), outputTokens: Math.max(1, Math.round(live.outputTokens)) };
        if (sched && !sched.paused && sched.runOnDrift) runEarly.set(d.pipelineId, { ...s, candidates: null, ...now });
      }
      return { drifted, runEarly: [...runEarly].map(([pipelineId, settings]) => ({ pipelineId, settings })) };
    },
  };
}
