import { Module, UseGuards } from '@nestjs/common';
import { Args, Field, Float, InputType, Int, ObjectType, Query, Resolver } from '@nestjs/graphql';
import { z } from 'zod';
import { DomainError, ErrorCode } from '../domain/errors';
import { planMaxReplicas, PlanName } from '../domain/plans';
import { hardFloor, scalingPolicy } from '../domain/scaling';
import { DeploymentMode } from '../graphql/enums';
import { AuthContext, CurrentAuth, ManagementAuthGuard } from '../workspaces/auth.guard';
import { chartSvg, generateTrace, REFERENCE_REPLICA, simulate } from './whatif';

@InputType()
export class SimulateScalingInput {
  @Field(() => Float, { description: 'Mean requests per second outside bursts.' }) avgRps!: number;
  @Field(() => Float, { defaultValue: 0 }) burstRps!: number;
  @Field(() => Int, { defaultValue: 0, description: 'A burst starts every this many seconds (0: none).' }) burstEverySeconds!: number;
  @Field(() => Int, { defaultValue: 0 }) burstSeconds!: number;
  @Field(() => Int, { defaultValue: 3600 }) durationSeconds!: number;
  @Field(() => Int, { defaultValue: 2000, description: 'Mean service time of a request, ms.' }) meanDurationMs!: number;
  @Field(() => Int, { defaultValue: 1 }) seed!: number;
  @Field(() => DeploymentMode, { defaultValue: 'FLEX' }) mode!: DeploymentMode;
  @Field(() => Int, { nullable: true }) minReplicas?: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int, { defaultValue: 30 }) targetConcurrency!: number;
  @Field(() => Int, { nullable: true }) scaleDownWindowSeconds?: number;
  @Field(() => Int, { nullable: true }) idleTimeoutSeconds?: number;
  @Field(() => Int, { defaultValue: REFERENCE_REPLICA.coldStartMs }) coldStartMs!: number;
  @Field(() => Int, { defaultValue: REFERENCE_REPLICA.concurrency }) replicaConcurrency!: number;
  @Field(() => Float, { defaultValue: REFERENCE_REPLICA.gpuHourlyUsd }) gpuHourlyUsd!: number;
  @Field(() => Int, { defaultValue: 2000 }) queueTimeoutMs!: number;
}

const MAX_SIMULATED_REQUESTS = 500_000;
const schema = z
  .object({
    avgRps: z.number().min(0), burstRps: z.number().min(0), burstEverySeconds: z.number().int().min(0), burstSeconds: z.number().int().min(0),
    durationSeconds: z.number().int().min(1).max(86_400, 'must be at most 86400 (one day)'), meanDurationMs: z.number().int().min(1),
    seed: z.number().int(), mode: z.enum(['FLEX', 'ACTIVE']), minReplicas: z.number().int().min(0).nullish(), maxReplicas: z.number().int().min(1),
    targetConcurrency: z.number().int().min(1), scaleDownWindowSeconds: z.number().int().min(1).nullish(), idleTimeoutSeconds: z.number().int().min(1).nullish(),
    coldStartMs: z.number().int().min(0), replicaConcurrency: z.number().int().min(1), gpuHourlyUsd: z.number().min(0), queueTimeoutMs: z.number().int().min(0),
  })
  .superRefine((v, ctx) => {
    if (Math.max(v.avgRps, v.burstRps) * v.durationSeconds > MAX_SIMULATED_REQUESTS) {
      ctx.addIssue({ code: 'custom', path: ['durationSeconds'], message: `the trace would exceed ${MAX_SIMULATED_REQUESTS} requests; shorten it or lower the rates` });
    }
    if (v.minReplicas != null && v.minReplicas > v.maxReplicas) ctx.addIssue({ code: 'custom', path: ['minReplicas'], message: `must not exceed maxReplicas (${v.maxReplicas})` });
  });

@ObjectType()
class SimulationSample {
  @Field(() => Int, { description: 'ms from the start' }) t!: number;
  @Field(() => Int) replicas!: number;
  @Field(() => Int) ready!: number;
  @Field(() => Int) inFlight!: number;
  @Field(() => Int) queued!: number;
}

@ObjectType()
class SimulationDecision {
  @Field(() => Int) t!: number;
  @Field(() => Int) from!: number;
  @Field(() => Int) to!: number;
  @Field() reason!: string;
}

@ObjectType()
export class ScalingSimulation {
  @Field(() => Int) requests!: number;
  @Field(() => Int) served!: number;
  @Field(() => Int) rejected503!: number;
  @Field(() => Int) coldStarts!: number;
  @Field(() => Int) queueWaitP50Ms!: number;
  @Field(() => Int) queueWaitP99Ms!: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int) gpuSeconds!: number;
  @Field(() => Float) costUsd!: number;
  @Field(() => [SimulationSample]) series!: SimulationSample[];
  @Field(() => [SimulationDecision]) decisions!: SimulationDecision[];
  @Field({ description: 'Replicas and load over time, as SVG.' }) svg!: string;
}

@Resolver()
@UseGuards(ManagementAuthGuard)
export class ScalingResolver {
  @Query(() => ScalingSimulation, { description: 'Replays generated traffic through the scaler decision: replicas, cold starts, queue waits, 503s and cost.' })
  simulateScaling(@CurrentAuth() auth: AuthContext, @Args('input') raw: SimulateScalingInput): ScalingSimulation {
    const v = schema.parse(raw);
    const cap = planMaxReplicas(auth.workspace.plan as PlanName, auth.workspace.maxReplicas);
    if (v.maxReplicas > cap) {
      throw new DomainError(ErrorCode.PLAN_LIMIT, `maxReplicas ${v.maxReplicas} exceeds the ${auth.workspace.plan} plan's ceiling of ${cap}`, { field: 'maxReplicas', limit: cap });
    }
    const policy = scalingPolicy(v);
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

@Module({ providers: [ScalingResolver] })
export class ScalingModule {}
