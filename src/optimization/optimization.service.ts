import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import {
  Client,
  ScheduleNotFoundError,
  ScheduleOptionsAction,
  ScheduleOverlapPolicy,
  ScheduleSpec,
  WorkflowIdReusePolicy,
} from '@temporalio/client';
import type { Logger } from 'pino';
import { z } from 'zod';
import { Config, CONFIG } from '../config/config';
import { LOGGER, PRISMA, TEMPORAL_CLIENT } from '../common/core.module';
import { newId } from '../common/secrets';
import type { OptimizationRun as RunRow, PrismaClient, ReoptimizationSchedule as ScheduleRow, Workspace } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { DEFAULT_REPLICA_CONCURRENCY } from '../domain/plans';
import { PRIORITIES, REDEPLOY_POLICIES, RunSettings } from '../domain/optimization';
import { driftCheckScheduleId, optimizeWorkflowId, reoptimizeScheduleId, TASK_QUEUE_DEFAULT } from '../../workflows/messages';
import type { OptimizationRun, ReoptimizationSchedule, ReoptimizationScheduleInput, StartOptimizationRunInput } from './optimization.types';

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$/, 'must be 1-41 characters of letters, digits, ., _ or -, starting with a letter or digit');
const gpu = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/, 'must be 1-64 characters of letters, digits, space, ., _ or -');
const positive = z.number().positive('must be above 0').finite();

const constraintsSchema = z
  .object({
    maxTtftP95Ms: positive.nullish(),
    maxItlP95Ms: positive.nullish(),
    minThroughputTps: positive.nullish(),
    maxMonthlyCostUsd: positive.nullish(),
    minQuality: z.number().min(0, 'must be 0-1').max(1, 'must be 0-1').nullish(),
  })
  .nullish();

const loadSchema = z
  .object({
    promptTokens: z.number().int().min(1, 'must be at least 1').max(131072, 'must be at most 131072').nullish(),
    outputTokens: z.number().int().min(1, 'must be at least 1').max(32768, 'must be at most 32768').nullish(),
    levelSeconds: z.number().min(0.2, 'must be at least 0.2').max(3600, 'must be at most 3600').nullish(),
    evalQuestions: z.number().int().min(0, 'must be at least 0').max(1000, 'must be at most 1000').nullish(),
    maxConcurrency: z.number().int().min(1, 'must be at least 1').max(4096, 'must be at most 4096').nullish(),
  })
  .nullish();

const candidateSchema = z.object({
  name,
  gpu,
  engine: z.string().min(1).max(64).nullish(),
  quantization: z.string().min(1).max(64).nullish(),
  engineConfig: z.record(z.string(), z.unknown()).nullish(),
  maxConcurrency: z.number().int().min(1, 'must be at least 1').max(4096, 'must be at most 4096').nullish(),
});

const runSchema = z.object({
  priority: z.enum(PRIORITIES).nullish(),
  constraints: constraintsSchema,
  gpus: z.array(gpu).min(1, 'name at least one GPU').max(8, 'at most 8 GPUs').nullish(),
  candidates: z
    .array(candidateSchema)
    .min(1, 'give at least one candidate, or none for the default set')
    .max(16, 'at most 16 candidates')
    .nullish(),
  redeploy: z.enum(REDEPLOY_POLICIES).nullish(),
  load: loadSchema,
});

const scheduleSchema = z.object({
  everySeconds: z.number().int().positive('must be above 0').nullish(),
  cron: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters').nullish(),
  priority: z.enum(PRIORITIES).nullish(),
  constraints: constraintsSchema,
  gpus: z.array(gpu).min(1, 'name at least one GPU').max(8, 'at most 8 GPUs').nullish(),
  redeploy: z.enum(REDEPLOY_POLICIES).nullish(),
  paused: z.boolean().nullish(),
  runOnDrift: z.boolean().nullish(),
  load: loadSchema,
});

const bad = (field: string, message: string) => new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: ${message}`, { field });

function parse<T>(schema: z.ZodType<T>, raw: unknown): T {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw bad(issue.path.join('.') || 'input', issue.message);
}

type Constraints = z.infer<typeof constraintsSchema>;
const constraintsOf = (c: Constraints) => Object.fromEntries(Object.entries(c ?? {}).filter(([, v]) => v !== null && v !== undefined));

@Injectable()
export class OptimizationService implements OnApplicationBootstrap {
  constructor(
    @Inject(PRISMA) private readonly prisma: PrismaClient,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  private get taskQueue() {
    return this.config.TEMPORAL_TASK_QUEUE || TASK_QUEUE_DEFAULT;
  }

  /** The traffic-drift check is one Schedule for the whole installation; made at boot (and again with any pipeline schedule) if missing. */
  async onApplicationBootstrap() {
    await this.ensureDriftCheck().catch((err: unknown) =>
      this.log.warn(
        { err: (err as Error).message },
        'the traffic-drift check schedule could not be made yet; it is made with the first re-optimization schedule',
      ),
    );
  }

  /** Makes the drift-check Schedule, or brings it to this process's settings (interval, window, task queue) when they changed. */
  private async ensureDriftCheck() {
    const spec: ScheduleSpec = { intervals: [{ every: `${this.config.OPTIMIZE_DRIFT_CHECK_SECONDS}s` }] };
    const action: ScheduleOptionsAction = {
      type: 'startWorkflow',
      workflowType: 'driftCheckWorkflow',
      workflowId: driftCheckScheduleId(this.taskQueue),
      taskQueue: this.taskQueue,
      args: [{ windowSeconds: this.config.OPTIMIZE_DRIFT_WINDOW_SECONDS }],
    };
    const handle = this.temporal.schedule.getHandle(driftCheckScheduleId(this.taskQueue));
    try {
      const d = await handle.describe();
      const every = d.spec.intervals?.[0]?.every;
      const same =
        d.action.type === 'startWorkflow' &&
        d.action.taskQueue === this.taskQueue &&
        Number(every) === this.config.OPTIMIZE_DRIFT_CHECK_SECONDS * 1000 &&
        JSON.stringify(d.action.args) === JSON.stringify(action.args);
      if (!same) await handle.update((prev) => ({ ...prev, spec, action }));
    } catch (err) {
      if (!(err instanceof ScheduleNotFoundError)) throw err;
      await this.temporal.schedule
        .create({ scheduleId: driftCheckScheduleId(this.taskQueue), spec, action, policies: { overlap: ScheduleOverlapPolicy.SKIP } })
        .catch((e: unknown) => {
          // Another api process made it first.
          if (!(e instanceof Error && /already (exists|running)/i.test(e.message))) throw e;
        });
    }
  }

  private settings(load: z.infer<typeof loadSchema>, candidates: RunSettings['candidates']): RunSettings {
    return {
      target: 'LOCAL',
      promptTokens: load?.promptTokens ?? this.config.OPTIMIZE_PROMPT_TOKENS,
      outputTokens: load?.outputTokens ?? this.config.OPTIMIZE_OUTPUT_TOKENS,
      levelSeconds: load?.levelSeconds ?? this.config.OPTIMIZE_LEVEL_SECONDS,
      evalQuestions: load?.evalQuestions ?? this.config.OPTIMIZE_EVAL_QUESTIONS,
      candidates,
      maxConcurrency: load?.maxConcurrency ?? DEFAULT_REPLICA_CONCURRENCY,
      draftModel: this.config.OPTIMIZE_DRAFT_MODEL,
      healthTimeoutSeconds: this.config.DEPLOY_HEALTH_TIMEOUT_SECONDS,
      drainTimeoutMs: this.config.SCALER_DRAIN_TIMEOUT_SECONDS * 1000,
    };
  }

  private async pipeline(ws: Workspace, id: string) {
    const p = await this.prisma.pipeline.findFirst({ where: { id, workspaceId: ws.id } });
    if (!p) throw notFound('pipeline', id);
    return p;
  }

  private async refuseBusy(pipelineId: string) {
    const busy = await this.prisma.optimizationRun.findFirst({ where: { pipelineId, status: { in: ['PENDING', 'RUNNING'] } } });
    if (busy) {
      throw new DomainError(
        ErrorCode.CONFLICT,
        `pipeline ${pipelineId} has optimization run ${busy.id} in progress (workflow ${busy.workflowId}); one run at a time, try again when it ends`,
        { runId: busy.id, workflowId: busy.workflowId },
      );
    }
  }

  /** startOptimizationRun: records the run and starts optimize:<pipelineId>:<runId>. */
  async start(ws: Workspace, pipelineId: string, raw: StartOptimizationRunInput): Promise<OptimizationRun> {
    const input = parse(runSchema, raw);
    const p = await this.pipeline(ws, pipelineId);
    if (p.task === 'IMAGE' || p.task === 'AUDIO') {
      throw bad('pipelineId', `pipeline ${p.name} is an ${p.task} pipeline; optimization runs measure CHAT and EMBEDDINGS pipelines`);
    }
    const candidates =
      input.candidates?.map((c) => ({
        name: c.name,
        gpu: c.gpu,
        engine: c.engine ?? 'vllm',
        quantization: c.quantization ?? null,
        engineConfig: c.engineConfig ?? null,
        maxConcurrency: c.maxConcurrency ?? DEFAULT_REPLICA_CONCURRENCY,
      })) ?? null;
    const names = candidates?.map((c) => c.name) ?? [];
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice) throw bad('candidates', `two candidates are named ${twice}`);
    const gpus = input.gpus ?? (candidates ? [...new Set(candidates.map((c) => c.gpu))] : null);
    if (!gpus) throw bad('gpus', 'name the GPUs to build candidates for (or give candidates)');
    await this.refuseBusy(p.id);
    const id = newId('run');
    const workflowId = optimizeWorkflowId(p.id, id);
    const row = await this.prisma.optimizationRun.create({
      data: {
        id,
        pipelineId: p.id,
        status: 'PENDING',
        trigger: 'MANUAL',
        priority: input.priority ?? 'BALANCED',
        constraints: constraintsOf(input.constraints),
        gpus,
        redeploy: input.redeploy ?? 'NEVER',
        load: this.settings(input.load, candidates) as unknown as object,
        workflowId,
      },
    });
    try {
      await this.temporal.workflow.start('optimizeWorkflow', {
        taskQueue: this.taskQueue,
        workflowId,
        args: [{ runId: id, pipelineId: p.id }],
        workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      });
    } catch (err) {
      this.log.error({ err, pipelineId: p.id, runId: id }, 'could not start the optimization workflow');
      await this.prisma.optimizationRun.delete({ where: { id } }).catch(() => undefined);
      throw new DomainError(ErrorCode.UNAVAILABLE, 'the workflow engine is unavailable; the run was not started, try again shortly');
    }
    return toRun(row);
  }

  async runs(pipelineId: string): Promise<OptimizationRun[]> {
    return (await this.prisma.optimizationRun.findMany({ where: { pipelineId }, orderBy: { startedAt: 'desc' } })).map(toRun);
  }

  async run(ws: Workspace, id: string): Promise<OptimizationRun> {
    const r = await this.prisma.optimizationRun.findFirst({ where: { id, pipeline: { workspaceId: ws.id } } });
    if (!r) throw notFound('optimization run', id);
    return toRun(r);
  }

  /** A run's candidates, best first (ranked, then the rest in the order measured). */
  async runVariants(runId: string) {
    const vs = await this.prisma.variant.findMany({ where: { runId }, orderBy: { createdAt: 'asc' } });
    return [...vs.filter((v) => v.rank !== null).sort((a, b) => a.rank! - b.rank!), ...vs.filter((v) => v.rank === null)];
  }

  /**
   * setReoptimizationSchedule: creates or updates the pipeline's Schedule reoptimize:<pipelineId> (overlap: skip, so
   * a run still going when the next is due is not doubled) and its row. Fields left out keep their value.
   */
  async setSchedule(ws: Workspace, pipelineId: string, raw: ReoptimizationScheduleInput): Promise<ReoptimizationSchedule> {
    const input = parse(scheduleSchema, raw);
    const p = await this.pipeline(ws, pipelineId);
    const had = await this.prisma.reoptimizationSchedule.findUnique({ where: { pipelineId: p.id } });
    if (input.everySeconds != null && input.cron != null) throw bad('everySeconds', 'give everySeconds or cron, not both');
    const timing =
      input.everySeconds != null
        ? { everySeconds: input.everySeconds, cron: null }
        : input.cron != null
          ? { everySeconds: null, cron: input.cron }
          : had
            ? { everySeconds: had.everySeconds, cron: had.cron }
            : null;
    if (!timing) throw bad('everySeconds', 'a new schedule needs everySeconds or cron');
    if (timing.everySeconds !== null && timing.everySeconds < this.config.OPTIMIZE_SCHEDULE_MIN_SECONDS) {
      throw bad(
        'everySeconds',
        `must be at least ${this.config.OPTIMIZE_SCHEDULE_MIN_SECONDS} (OPTIMIZE_SCHEDULE_MIN_SECONDS): a run measures for minutes`,
      );
    }
    const gpus = input.gpus ?? had?.gpus ?? null;
    if (!gpus?.length) throw bad('gpus', 'name the GPUs each scheduled run builds candidates for');
    const data = {
      ...timing,
      priority: input.priority ?? had?.priority ?? 'BALANCED',
      constraints: input.constraints !== undefined ? constraintsOf(input.constraints) : ((had?.constraints as object | null) ?? {}),
      gpus,
      redeploy: input.redeploy ?? had?.redeploy ?? 'NEVER',
      paused: input.paused ?? had?.paused ?? false,
      runOnDrift: input.runOnDrift ?? had?.runOnDrift ?? true,
      load: (input.load !== undefined
        ? this.settings(input.load, null)
        : ((had?.load as RunSettings | null) ?? this.settings(null, null))) as object,
    };
    const scheduleId = reoptimizeScheduleId(p.id);
    const spec: ScheduleSpec =
      data.everySeconds !== null ? { intervals: [{ every: `${data.everySeconds}s` }] } : { cronExpressions: [data.cron!] };
    const action: ScheduleOptionsAction = {
      type: 'startWorkflow',
      workflowType: 'scheduledOptimizeWorkflow',
      workflowId: scheduleId,
      taskQueue: this.taskQueue,
      args: [{ pipelineId: p.id, trigger: 'SCHEDULE', settings: data.load }],
    };
    try {
      await this.ensureDriftCheck();
      const handle = this.temporal.schedule.getHandle(scheduleId);
      let exists = true;
      try {
        await handle.describe();
      } catch (err) {
        if (!(err instanceof ScheduleNotFoundError)) throw err;
        exists = false;
      }
      if (!exists) {
        await this.temporal.schedule.create({
          scheduleId,
          spec,
          action,
          policies: { overlap: ScheduleOverlapPolicy.SKIP },
          state: { paused: data.paused, note: data.paused ? 'paused through setReoptimizationSchedule' : undefined },
        });
      } else {
        // The pause travels in the update itself. A separate pause() right after it can be undone by it: the
        // scheduler applies a pending patch (pause) before a pending update, and the update's state then says unpaused.
        await handle.update((prev) => ({
          ...prev,
          spec,
          action,
          policies: { ...prev.policies, overlap: ScheduleOverlapPolicy.SKIP },
          state: {
            ...prev.state,
            paused: data.paused,
            note: data.paused ? 'paused through setReoptimizationSchedule' : 'resumed through setReoptimizationSchedule',
          },
        }));
      }
    } catch (err) {
      if (err instanceof DomainError) throw err;
      const message = (err as Error).message ?? String(err);
      if (/cron|invalid|parse/i.test(message))
        throw bad(data.cron !== null ? 'cron' : 'everySeconds', `Temporal refused the schedule: ${message}`);
      this.log.error({ err, pipelineId: p.id }, 'could not set the re-optimization schedule');
      throw new DomainError(ErrorCode.UNAVAILABLE, 'the workflow engine is unavailable; the schedule was not changed, try again shortly');
    }
    const row = await this.prisma.reoptimizationSchedule.upsert({
      where: { pipelineId: p.id },
      create: { pipelineId: p.id, scheduleId, ...data },
      update: data,
    });
    return this.toSchedule(row);
  }

  async deleteSchedule(ws: Workspace, pipelineId: string): Promise<boolean> {
    const p = await this.pipeline(ws, pipelineId);
    const row = await this.prisma.reoptimizationSchedule.findUnique({ where: { pipelineId: p.id } });
    if (!row) throw notFound('re-optimization schedule of pipeline', p.id);
    try {
      await this.temporal.schedule.getHandle(row.scheduleId).delete();
    } catch (err) {
      if (!(err instanceof ScheduleNotFoundError)) {
        this.log.error({ err, pipelineId: p.id }, 'could not delete the re-optimization schedule');
        throw new DomainError(ErrorCode.UNAVAILABLE, 'the workflow engine is unavailable; the schedule was not deleted, try again shortly');
      }
    }
    await this.prisma.reoptimizationSchedule.delete({ where: { pipelineId: p.id } });
    return true;
  }

  async schedule(pipelineId: string): Promise<ReoptimizationSchedule | null> {
    const row = await this.prisma.reoptimizationSchedule.findUnique({ where: { pipelineId } });
    return row ? this.toSchedule(row) : null;
  }

  private async toSchedule(row: ScheduleRow): Promise<ReoptimizationSchedule> {
    let nextRunsAt: Date[] = [];
    try {
      const d = await this.temporal.schedule.getHandle(row.scheduleId).describe();
      // The row says whether it is paused: Temporal applies a pause a moment after it was asked.
      nextRunsAt = row.paused ? [] : d.info.nextActionTimes.slice(0, 3);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, scheduleId: row.scheduleId }, 'could not describe the schedule');
    }
    return {
      scheduleId: row.scheduleId,
      everySeconds: row.everySeconds,
      cron: row.cron,
      priority: row.priority as ReoptimizationSchedule['priority'],
      constraints: (row.constraints as ReoptimizationSchedule['constraints'] | null) ?? {},
      gpus: row.gpus,
      redeploy: row.redeploy as ReoptimizationSchedule['redeploy'],
      paused: row.paused,
      runOnDrift: row.runOnDrift,
      nextRunsAt,
      updatedAt: row.updatedAt,
    };
  }
}

function toRun(r: RunRow): OptimizationRun {
  const { candidates: _c, ...settings } = (r.load as RunSettings | null) ?? ({} as RunSettings);
  return {
    id: r.id,
    pipelineId: r.pipelineId,
    status: r.status,
    priority: r.priority as OptimizationRun['priority'],
    constraints: (r.constraints as OptimizationRun['constraints'] | null) ?? {},
    redeploy: r.redeploy as OptimizationRun['redeploy'],
    gpus: r.gpus,
    trigger: r.trigger,
    workflowId: r.workflowId,
    error: r.error,
    winnerVariantId: r.winnerVariantId,
    redeployments: (r.redeployments as OptimizationRun['redeployments'] | null) ?? [],
    settings: settings as Record<string, unknown>,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  };
}
