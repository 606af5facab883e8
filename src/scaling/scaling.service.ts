// The scaling rule itself is src/domain/scaling.ts (pure, shared with the scaler workflow); this feature is the API around it:
// the scaler's status, policy changes through the scaler's validated update, and the what-if simulation (whatif.ts).
import { Inject, Injectable } from '@nestjs/common';
import { Client, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { z } from 'zod';
import { PRISMA, TEMPORAL_CLIENT } from '../common/core.module';
import type { PrismaClient, Workspace } from '../database/prisma';
import { CHANNEL_ROUTES, notify } from '../database/notify';
import { DeploymentsService } from '../deployments/deployments.service';
import { DomainError, ErrorCode } from '../domain/errors';
import { ceilingViolation, PlanName } from '../domain/plans';
import { hardFloor, KNOBS, policyProblems, policyRefusal, problemAsAssignment, ScalingPolicy, scalingPolicy } from '../domain/scaling';
import { PolicyPatch, ScalerStatus, scalerStatusQuery, scalerWorkflowId, setPolicyUpdate } from '../../workflows/messages';
import type { ScalingPolicyInput, ScalingSimulation, ScalingStatus, SimulateScalingInput } from './scaling.types';
import { chartSvg, generateTrace, simulate } from './whatif';

const MAX_SIMULATED_REQUESTS = 500_000;
const simulationSchema = z
  .object({
    avgRps: z.number().min(0),
    burstRps: z.number().min(0),
    burstEverySeconds: z.number().int().min(0),
    burstSeconds: z.number().int().min(0),
    durationSeconds: z.number().int().min(1).max(86_400, 'must be at most 86400 (one day)'),
    meanDurationMs: z.number().int().min(1),
    seed: z.number().int(),
    mode: z.enum(['FLEX', 'ACTIVE']),
    // Types only: the knobs' rules are policyProblems, checked on the policy with its defaults.
    minReplicas: z.number().nullish(),
    maxReplicas: z.number(),
    targetConcurrency: z.number(),
    scaleDownWindowSeconds: z.number().nullish(),
    idleTimeoutSeconds: z.number().nullish(),
    coldStartMs: z.number().int().min(0),
    replicaConcurrency: z.number().int().min(1),
    gpuHourlyUsd: z.number().min(0),
    queueTimeoutMs: z.number().int().min(0),
  })
  .superRefine((v, ctx) => {
    if (Math.max(v.avgRps, v.burstRps) * v.durationSeconds > MAX_SIMULATED_REQUESTS) {
      ctx.addIssue({
        code: 'custom',
        path: ['durationSeconds'],
        message: `the trace would exceed ${MAX_SIMULATED_REQUESTS} requests; shorten it or lower the rates`,
      });
    }
  });

const toStatus = (s: ScalerStatus): ScalingStatus => ({
  desired: s.desired,
  current: s.current,
  starting: s.starting ?? null,
  draining: s.draining ?? null,
  paused: s.paused,
  noData: s.noData,
  mode: s.policy.mode,
  minReplicas: s.policy.minReplicas,
  maxReplicas: s.policy.maxReplicas,
  targetConcurrency: s.policy.targetConcurrency,
  scaleDownWindowSeconds: s.policy.scaleDownWindowSeconds,
  idleTimeoutSeconds: s.policy.idleTimeoutSeconds,
  decisions: s.decisions.map((d) => ({ ...d, at: new Date(d.at) })),
});

@Injectable()
export class ScalingService {
  constructor(
    @Inject(PRISMA) private readonly prisma: PrismaClient,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
    private readonly deployments: DeploymentsService,
  ) {}

  /** The scaler's status query; null while the deployment has no scaler (not yet ACTIVE, or failed). */
  async status(deploymentId: string): Promise<ScalingStatus | null> {
    try {
      return toStatus(await this.temporal.workflow.getHandle(scalerWorkflowId(deploymentId)).query(scalerStatusQuery));
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
  }

  /**
   * Changes knobs through the scaler's validated update, then writes them to the row. The scaler goes
   * first because it is the judge: its validator checks the patch against the policy it runs and the
   * ceiling it was started with, and a row written first could hold a policy the scaler refused. The
   * row is what a later redeploy reads, so it gets the whole policy the scaler accepted, not just the
   * patch: should this write fail, the next accepted change brings the row back in line.
   */
  async setPolicy(ws: Workspace, input: ScalingPolicyInput): Promise<ScalingStatus> {
    const d = await this.deployments.get(ws.id, input.deploymentId);
    const patch: PolicyPatch = {};
    for (const k of KNOBS) {
      const v = input[k];
      if (v !== undefined && v !== null) patch[k] = v;
    }
    // Bare boxes are fixed capacity; a Kubernetes CUSTOM deployment scales like any pool.
    if (d.target === 'CUSTOM' && !(await this.deployments.onKubernetes(d))) {
      for (const field of ['minReplicas', 'maxReplicas'] as const) {
        if (patch[field] !== undefined && patch[field] !== d[field]) {
          throw new DomainError(
            ErrorCode.BAD_USER_INPUT,
            `${field}: deployment ${d.id} is CUSTOM, fixed capacity: one replica per registered endpoint (${d.maxReplicas}); scaling is out of our hands`,
            { field, deploymentId: d.id },
          );
        }
      }
    }
    if (input.mode && input.mode !== d.mode) {
      patch.mode = input.mode;
      // Active keeps a warm floor: a Flex floor of 0 is lifted to it unless the caller named one.
      if (input.mode === 'ACTIVE' && patch.minReplicas === undefined && d.minReplicas < 1) patch.minReplicas = 1;
      // The plan rules of a deploy apply: Active needs Team and up, within the plan's ceiling.
      this.deployments.checkPlan(ws, input.mode, patch.maxReplicas ?? d.maxReplicas);
    }
    // Refused here already when the patch breaks a rule on the row's knobs, in the words the scaler would use.
    // The plan ceiling is left to the scaler's validator, which holds the ceiling it was started with.
    const problems = policyProblems({ mode: d.mode, minReplicas: d.minReplicas, maxReplicas: d.maxReplicas, ...patch });
    if (problems.length) throw policyRefusal(problems, problemAsAssignment, { deploymentId: d.id });
    const handle = this.temporal.workflow.getHandle(scalerWorkflowId(d.id));
    let accepted: ScalingPolicy;
    try {
      accepted = await handle.executeUpdate(setPolicyUpdate, { args: [patch] });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        const cause = (err.cause as Error | undefined)?.message ?? err.message;
        throw new DomainError(ErrorCode.BAD_USER_INPUT, cause, { deploymentId: d.id });
      }
      if (err instanceof WorkflowNotFoundError) {
        throw new DomainError(ErrorCode.CONFLICT, `deployment ${d.id} has no running scaler (status ${d.status})`);
      }
      throw err;
    }
    const { mode, minReplicas, maxReplicas, targetConcurrency, scaleDownWindowSeconds, idleTimeoutSeconds } = accepted;
    await this.prisma.$transaction([
      this.prisma.deployment.update({
        where: { id: d.id },
        data: { mode, minReplicas, maxReplicas, targetConcurrency, scaleDownWindowSeconds, idleTimeoutSeconds },
      }),
      ...(mode !== d.mode
        ? [
            this.prisma.deploymentEvent.create({
              data: {
                deploymentId: d.id,
                kind: 'policy.mode',
                message: `mode ${d.mode} -> ${mode}: usage is priced as ${mode} from now on`,
              },
            }),
            // The gateways price usage by the route's mode.
            notify(this.prisma, CHANNEL_ROUTES, d.id),
          ]
        : []),
    ]);
    return toStatus(await handle.query(scalerStatusQuery));
  }

  /** Replays a generated trace through decide() (whatif.ts); refuses what the workspace's plan could not deploy. */
  simulate(ws: Workspace, raw: SimulateScalingInput): ScalingSimulation {
    const v = simulationSchema.parse(raw);
    const policy = scalingPolicy(v);
    const problems = policyProblems(policy);
    if (problems.length) throw policyRefusal(problems);
    const over = ceilingViolation(ws.plan as PlanName, policy.maxReplicas, ws.maxReplicas);
    if (over) throw new DomainError(ErrorCode.PLAN_LIMIT, over.message, { field: over.field, limit: over.limit });
    const trace = generateTrace(v);
    const r = simulate(trace, {
      policy,
      replica: { coldStartMs: v.coldStartMs, concurrency: v.replicaConcurrency, gpuHourlyUsd: v.gpuHourlyUsd },
      initialReplicas: hardFloor(policy),
      queueTimeoutMs: v.queueTimeoutMs,
      tickMs: 1000,
    });
    return { ...r, svg: chartSvg(r, `${v.mode} min ${policy.minReplicas} max ${policy.maxReplicas}`) };
  }
}
