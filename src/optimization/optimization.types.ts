import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { GraphQLJSONObject } from 'graphql-scalars';
import { RunStatus, VariantStatus } from '../generated/prisma/enums';
import { PRIORITIES, REDEPLOY_POLICIES } from '../domain/optimization';

export const OptimizationPriority = Object.fromEntries(PRIORITIES.map((p) => [p, p])) as { [K in (typeof PRIORITIES)[number]]: K };
export type OptimizationPriority = (typeof PRIORITIES)[number];
export const RedeployPolicy = Object.fromEntries(REDEPLOY_POLICIES.map((p) => [p, p])) as { [K in (typeof REDEPLOY_POLICIES)[number]]: K };
export type RedeployPolicy = (typeof REDEPLOY_POLICIES)[number];

registerEnumType(OptimizationPriority, {
  name: 'OptimizationPriority',
  description:
    'What ranks the measured variants: LATENCY (p95 request latency), THROUGHPUT (tokens/s per replica), COST (per million tokens), QUALITY (the eval; cost breaks ties), BALANCED (the four, each relative to the best).',
});
registerEnumType(RedeployPolicy, {
  name: 'RedeployPolicy',
  description:
    'NEVER: the winner is selected for later deploys and rollbacks. IF_BETTER: ACTIVE deployments on a variant the run ranked lower (or did not measure) move onto the winner through the rollback swap.',
});
registerEnumType(RunStatus, { name: 'OptimizationRunStatus' });
registerEnumType(VariantStatus, {
  name: 'VariantStatus',
  description:
    'UNMEASURED (by hand, or a default), PENDING and MEASURING in a run, MEASURED (ranked), REJECTED (broke a constraint: see reason), FAILED (could not be measured).',
});

@ObjectType({ description: 'One concurrency level of a sweep: that many streams back to back for the level window.' })
export class SweepPoint {
  @Field(() => Int) concurrency!: number;
  @Field(() => Int) requests!: number;
  @Field(() => Int) errors!: number;
  @Field(() => Float, { description: 'Output tokens per second, all streams together.' }) throughputTps!: number;
  @Field(() => Float) ttftP50Ms!: number;
  @Field(() => Float) ttftP95Ms!: number;
  @Field(() => Float, { description: 'Time between output tokens.' }) itlP50Ms!: number;
  @Field(() => Float) itlP95Ms!: number;
  @Field(() => Float) latencyP50Ms!: number;
  @Field(() => Float) latencyP95Ms!: number;
}

@ObjectType({ description: 'What a variant measured at its target concurrency.' })
export class VariantMetrics {
  @Field(() => Int, { description: 'The level with the highest throughput: past it more concurrency only adds latency.' }) knee!: number;
  @Field(() => Int, { description: 'The highest level at or below the knee that meets the constraints: the scaler target.' })
  targetConcurrency!: number;
  @Field(() => Float) throughputTps!: number;
  @Field(() => Float) ttftP50Ms!: number;
  @Field(() => Float) ttftP95Ms!: number;
  @Field(() => Float) itlP50Ms!: number;
  @Field(() => Float) itlP95Ms!: number;
  @Field(() => Float) latencyP50Ms!: number;
  @Field(() => Float) latencyP95Ms!: number;
  @Field(() => Float) errorRate!: number;
  @Field(() => Float, { description: "The GPU's hourly price over what one replica produces at the target." })
  costPerMillionTokensUsd!: number;
  @Field(() => Float, { description: 'One replica all month (730 h) at the GPU price.' }) monthlyCostUsd!: number;
  @Field(() => Float, { nullable: true, description: 'Fraction of the quality eval answered right; null without an eval.' })
  quality!: number | null;
}

@ObjectType()
export class OptimizationConstraints {
  @Field(() => Float, { nullable: true }) maxTtftP95Ms?: number | null;
  @Field(() => Float, { nullable: true }) maxItlP95Ms?: number | null;
  @Field(() => Float, { nullable: true }) minThroughputTps?: number | null;
  @Field(() => Float, { nullable: true }) maxMonthlyCostUsd?: number | null;
  @Field(() => Float, { nullable: true }) minQuality?: number | null;
}

@ObjectType()
export class Redeployment {
  @Field(() => ID) deploymentId!: string;
  @Field({ description: 'moved by op:<deployment>:<op>, skipped: why, or failed: why.' }) outcome!: string;
}

@ObjectType()
export class OptimizationRun {
  @Field(() => ID) id!: string;
  @Field(() => ID) pipelineId!: string;
  @Field(() => RunStatus) status!: RunStatus;
  @Field(() => OptimizationPriority) priority!: OptimizationPriority;
  @Field(() => OptimizationConstraints) constraints!: OptimizationConstraints;
  @Field(() => RedeployPolicy) redeploy!: RedeployPolicy;
  @Field(() => [String]) gpus!: string[];
  @Field({ description: 'MANUAL, SCHEDULE or DRIFT.' }) trigger!: string;
  @Field(() => String, { nullable: true, description: 'optimize:<pipelineId>:<runId>; open it in the Temporal UI.' }) workflowId!:
    string | null;
  @Field(() => String, { nullable: true }) error!: string | null;
  @Field(() => ID, { nullable: true }) winnerVariantId!: string | null;
  @Field(() => [Redeployment]) redeployments!: Redeployment[];
  @Field(() => GraphQLJSONObject, { description: 'How it measures: target, prompt and output tokens, level seconds, eval questions.' })
  settings!: Record<string, unknown>;
  @Field() startedAt!: Date;
  @Field(() => Date, { nullable: true }) finishedAt!: Date | null;
}

@ObjectType({ description: "A pipeline's re-optimization Schedule (reoptimize:<pipelineId> in Temporal)." })
export class ReoptimizationSchedule {
  @Field() scheduleId!: string;
  @Field(() => Int, { nullable: true }) everySeconds!: number | null;
  @Field(() => String, { nullable: true }) cron!: string | null;
  @Field(() => OptimizationPriority) priority!: OptimizationPriority;
  @Field(() => OptimizationConstraints) constraints!: OptimizationConstraints;
  @Field(() => [String]) gpus!: string[];
  @Field(() => RedeployPolicy) redeploy!: RedeployPolicy;
  @Field() paused!: boolean;
  @Field({ description: 'Runs early when live traffic drifts from what the last run measured.' }) runOnDrift!: boolean;
  @Field(() => [Date], { description: 'The next times it fires (from Temporal); empty while paused.' }) nextRunsAt!: Date[];
  @Field() updatedAt!: Date;
}

@InputType()
export class OptimizationConstraintsInput {
  @Field(() => Float, { nullable: true, description: 'Time to first token p95 at the target concurrency, ms.' }) maxTtftP95Ms?: number;
  @Field(() => Float, { nullable: true, description: 'Inter-token latency p95, ms.' }) maxItlP95Ms?: number;
  @Field(() => Float, { nullable: true, description: 'Output tokens/s of one replica at its target.' }) minThroughputTps?: number;
  @Field(() => Float, { nullable: true, description: 'One replica for a month at the GPU price, USD.' }) maxMonthlyCostUsd?: number;
  @Field(() => Float, { nullable: true, description: 'Quality eval score, 0-1.' }) minQuality?: number;
}

@InputType()
export class CandidateInput {
  @Field({ description: 'Letters, digits, ., _ and -; the variant is named run<N>-<name>.' }) name!: string;
  @Field() gpu!: string;
  @Field({ nullable: true, description: 'vllm when omitted.' }) engine?: string;
  @Field({ nullable: true }) quantization?: string;
  @Field(() => GraphQLJSONObject, {
    nullable: true,
    description: 'Engine flags, e.g. { "max-model-len": 8192, "speculative-model": "..." }.',
  })
  engineConfig?: Record<string, unknown>;
  @Field(() => Int, { nullable: true, description: 'The sweep goes up to it; 30 when omitted.' }) maxConcurrency?: number;
}

@InputType()
export class OptimizationLoadInput {
  @Field(() => Int, { nullable: true }) promptTokens?: number;
  @Field(() => Int, { nullable: true }) outputTokens?: number;
  @Field(() => Float, { nullable: true, description: 'Seconds each concurrency level runs.' }) levelSeconds?: number;
  @Field(() => Int, { nullable: true, description: 'Quality eval questions (0: none).' }) evalQuestions?: number;
  @Field(() => Int, { nullable: true, description: 'Where the sweep of a default candidate stops (its maxConcurrency); 30 when omitted.' })
  maxConcurrency?: number;
}

@InputType()
export class StartOptimizationRunInput {
  @Field(() => OptimizationPriority, { nullable: true, description: 'BALANCED when omitted.' }) priority?: OptimizationPriority;
  @Field(() => OptimizationConstraintsInput, { nullable: true }) constraints?: OptimizationConstraintsInput;
  @Field(() => [String], {
    nullable: true,
    description: 'GPUs the default candidates are built for (each x bf16, fp8, int4, speculative).',
  })
  gpus?: string[];
  @Field(() => [CandidateInput], { nullable: true, description: 'Measure these instead of the default candidates.' })
  candidates?: CandidateInput[];
  @Field(() => RedeployPolicy, { nullable: true, description: 'NEVER when omitted.' }) redeploy?: RedeployPolicy;
  @Field(() => OptimizationLoadInput, { nullable: true }) load?: OptimizationLoadInput;
}

@InputType()
export class ReoptimizationScheduleInput {
  @Field(() => Int, { nullable: true, description: 'Run every so many seconds (or give cron).' }) everySeconds?: number;
  @Field({ nullable: true, description: 'A cron expression, e.g. "0 3 * * 1" (or give everySeconds).' }) cron?: string;
  @Field(() => OptimizationPriority, { nullable: true }) priority?: OptimizationPriority;
  @Field(() => OptimizationConstraintsInput, { nullable: true }) constraints?: OptimizationConstraintsInput;
  @Field(() => [String], { nullable: true }) gpus?: string[];
  @Field(() => RedeployPolicy, { nullable: true }) redeploy?: RedeployPolicy;
  @Field({ nullable: true }) paused?: boolean;
  @Field({ nullable: true }) runOnDrift?: boolean;
  @Field(() => OptimizationLoadInput, { nullable: true }) load?: OptimizationLoadInput;
}
