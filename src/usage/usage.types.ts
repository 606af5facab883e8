import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';

export enum UsageGranularity {
  MINUTE = 'MINUTE',
  HOUR = 'HOUR',
  DAY = 'DAY',
}
registerEnumType(UsageGranularity, { name: 'UsageGranularity', description: 'Bucket size of a usage report (UTC).' });

@InputType()
export class UsageInput {
  @Field({ description: 'Start, inclusive.' }) from!: Date;
  @Field({ description: 'End, exclusive.' }) to!: Date;
  @Field(() => UsageGranularity, { defaultValue: UsageGranularity.HOUR }) granularity!: UsageGranularity;
  @Field(() => ID, { nullable: true, description: 'One deployment; all of the workspace when omitted.' }) deploymentId?: string;
  @Field(() => ID, { nullable: true, description: 'One API key. Warm replica time belongs to no key, so it is left out.' })
  apiKeyId?: string;
}

@ObjectType()
export class UsageBucket {
  @Field({ description: 'Bucket start (UTC); the total has the report start.' }) start!: Date;
  @Field(() => Int) requests!: number;
  @Field(() => Int, { description: 'Requests that ended in an error after reaching the deployment.' }) errors!: number;
  @Field(() => Float) promptTokens!: number;
  @Field(() => Float) completionTokens!: number;
  @Field(() => Int, { description: 'Images generated (IMAGE pipelines).' }) images!: number;
  @Field(() => Float, { description: 'Audio transcribed or spoken, seconds (AUDIO pipelines).' }) audioSeconds!: number;
  @Field(() => Float, { nullable: true, description: 'Mean time from request to last byte, ms.' }) avgLatencyMs!: number | null;
  @Field(() => Float, { nullable: true, description: 'Mean time from request to the first byte of the response, ms.' }) avgTtftMs!:
    number | null;
  @Field(() => Float, { description: 'Warm replica time, seconds.' }) replicaSeconds!: number;
  @Field(() => Float, { description: "USD for tokens (and images and audio seconds) at the deployment's rates." }) tokenCostUsd!: number;
  @Field(() => Float, { description: 'USD for warm replica time (Active deployments).' }) capacityCostUsd!: number;
  @Field(() => Float) costUsd!: number;
}

@ObjectType()
export class UsageReport {
  @Field() from!: Date;
  @Field() to!: Date;
  @Field(() => UsageGranularity) granularity!: UsageGranularity;
  @Field(() => [UsageBucket], { description: 'Buckets with any usage, oldest first.' }) buckets!: UsageBucket[];
  @Field(() => UsageBucket) total!: UsageBucket;
}
