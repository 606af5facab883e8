import { Field, Float, ID, Int, ObjectType } from '@nestjs/graphql';

@ObjectType()
export class ErrorCount {
  @Field({ description: 'The OpenAI error code, or how the response ended (upstream_broken, upstream_timeout, http_<status>).' })
  code!: string;
  @Field(() => Int) count!: number;
}

@ObjectType({ description: 'One step of a deployment load series, merged over every gateway process.' })
export class MetricsPoint {
  @Field({ description: 'Step start (UTC).' }) start!: Date;
  @Field(() => Int, { description: 'Requests that reached the deployment (answered or refused after routing).' }) requests!: number;
  @Field(() => Float) requestsPerSecond!: number;
  @Field(() => Int) errors!: number;
  @Field(() => [ErrorCount], { description: 'Errors by code, most frequent first.' }) errorsByCode!: ErrorCount[];
  @Field(() => Float) promptTokens!: number;
  @Field(() => Float) completionTokens!: number;
  @Field(() => Float, { description: 'USD for tokens, images and audio at the deployment rates.' }) tokenCostUsd!: number;
  @Field(() => Float, { description: 'USD for warm replica time (Active).' }) capacityCostUsd!: number;
  @Field(() => Float) costUsd!: number;
  @Field(() => Float, { nullable: true, description: 'Request to last byte, ms; within relativeAccuracy of the exact percentile.' })
  latencyP50Ms!: number | null;
  @Field(() => Float, { nullable: true }) latencyP95Ms!: number | null;
  @Field(() => Float, { nullable: true }) latencyP99Ms!: number | null;
  @Field(() => Float, { nullable: true, description: 'Request to first byte of the response body, ms.' }) ttftP50Ms!: number | null;
  @Field(() => Float, { nullable: true }) ttftP95Ms!: number | null;
  @Field(() => Float, { nullable: true }) ttftP99Ms!: number | null;
  @Field(() => Int, { nullable: true, description: 'Highest requests in flight at a sampled second (summed over processes).' })
  inFlightPeak!: number | null;
  @Field(() => Float, { nullable: true, description: 'Mean requests in flight over the sampled seconds.' }) inFlightMean!: number | null;
  @Field(() => Int, { nullable: true }) queuedPeak!: number | null;
  @Field(() => Float, { nullable: true }) queuedMean!: number | null;
  @Field(() => Int, { nullable: true, description: 'Most replicas READY at once in the step.' }) replicasReady!: number | null;
  @Field(() => Int, { nullable: true }) replicasStarting!: number | null;
  @Field(() => Int, { nullable: true }) replicasDraining!: number | null;
  @Field(() => Int, { nullable: true, description: "The scaler's highest desired count in the step." }) desired!: number | null;
}

@ObjectType()
export class DeploymentMetrics {
  @Field() from!: Date;
  @Field() to!: Date;
  @Field(() => Int) stepSeconds!: number;
  @Field(() => Float, { description: 'Relative error bound of every percentile (DDSketch): 0.01 is 1%.' }) relativeAccuracy!: number;
  @Field(() => [MetricsPoint], { description: 'One point per step, oldest first; steps without samples included.' })
  points!: MetricsPoint[];
}

@ObjectType()
export class ReplicaLogs {
  @Field(() => ID) replicaId!: string;
  @Field({ description: 'False when the provider keeps no log this control plane can read (reason says why).' }) available!: boolean;
  @Field(() => String, { nullable: true }) reason!: string | null;
  @Field(() => [String], { description: 'The last lines, oldest first.' }) lines!: string[];
}

@ObjectType({ description: 'What the console needs to know about this control plane.' })
export class ConsoleInfo {
  @Field({ description: "Temporal Web UI base; a workflow's page is <base>/namespaces/<namespace>/workflows/<workflowId>." })
  temporalUiUrl!: string;
  @Field() temporalNamespace!: string;
  @Field(() => Int) metricsRetentionDays!: number;
  @Field(() => Int) metricsFlushIntervalMs!: number;
}
