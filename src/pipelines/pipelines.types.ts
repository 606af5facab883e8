import { Field, Float, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Task } from '../graphql/enums';
import { VariantStatus } from '../generated/prisma/enums';
import { SweepPoint, VariantMetrics } from '../optimization/optimization.types';

@ObjectType()
export class Variant {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field({ description: 'GPU the variant was optimized for ("any" when not GPU-specific).' }) gpu!: string;
  @Field() engine!: string;
  @Field(() => String, { nullable: true }) quantization!: string | null;
  @Field(() => Int, { description: 'Concurrent requests one replica serves at most.' }) maxConcurrency!: number;
  @Field(() => Int, { nullable: true, description: 'Measured scaler target; null means the task default.' }) targetConcurrency!:
    number | null;
  @Field(() => Float, { nullable: true }) throughputTps!: number | null;
  @Field(() => Float, { nullable: true }) latencyP50Ms!: number | null;
  @Field(() => GraphQLJSONObject, { nullable: true, description: 'Engine settings (vLLM flags and the like) the replicas start with.' })
  engineConfig!: Record<string, unknown> | null;
  @Field() isDefault!: boolean;
  @Field(() => VariantStatus) status!: VariantStatus;
  @Field(() => ID, { nullable: true, description: 'The optimization run that built and measured it.' }) runId!: string | null;
  @Field(() => Int, { nullable: true, description: 'Its place in its run by the run priority (1: the winner); null when not ranked.' })
  rank!: number | null;
  @Field(() => String, { nullable: true, description: 'Why it was rejected (the constraint it broke) or failed.' }) reason!: string | null;
  @Field(() => VariantMetrics, { nullable: true, description: 'What it measured at its target concurrency.' })
  metrics!: VariantMetrics | null;
  @Field(() => [SweepPoint], { description: 'Every concurrency level its run measured, in the order measured.' }) sweep!: SweepPoint[];
  @Field() createdAt!: Date;
}

@ObjectType()
export class Pipeline {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => Task) task!: Task;
  @Field() model!: string;
  @Field(() => ID, { nullable: true }) selectedVariantId!: string | null;
  @Field() createdAt!: Date;
}

@InputType()
export class CreatePipelineInput {
  @Field({ description: 'Unique in the workspace: letters, digits, ., _ and -.' }) name!: string;
  @Field(() => Task) task!: Task;
  @Field({ description: 'Model the serving engine loads, e.g. meta-llama/Llama-3.1-8B-Instruct or sim/tiny-chat.' }) model!: string;
  @Field({ nullable: true, description: 'GPU the default variant targets; "any" when omitted.' }) gpu?: string;
  @Field({ nullable: true, description: 'Serving engine of the default variant; "vllm" when omitted.' }) engine?: string;
}

@InputType()
export class CreateVariantInput {
  @Field({ description: 'Unique in the pipeline: letters, digits, ., _ and -.' }) name!: string;
  @Field({ description: 'GPU the variant is tuned for ("any" when not GPU-specific); changeGpu warns when it differs.' }) gpu!: string;
  @Field({ description: 'Serving engine, e.g. vllm, sglang, tensorrt-llm.' }) engine!: string;
  @Field({ nullable: true, description: 'e.g. fp8, awq-int4; none when omitted.' }) quantization?: string;
  @Field(() => GraphQLJSONObject, { nullable: true, description: 'Engine settings, a JSON object (e.g. { "max-num-seqs": 64 }).' })
  engineConfig?: Record<string, unknown>;
  @Field(() => Int, { nullable: true, description: 'Concurrent requests one replica serves at most; 30 when omitted.' })
  maxConcurrency?: number;
  @Field(() => Int, { nullable: true, description: "The scaler's per-replica target; the task default when omitted." })
  targetConcurrency?: number;
}
