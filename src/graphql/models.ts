import { Field, ID, Int, ObjectType, Float } from '@nestjs/graphql';
import { DeploymentMode, DeploymentStatus, KeyScope, OperationKind, OperationStatus, Plan, ReplicaState, Target, Task } from './enums';

@ObjectType()
export class Workspace {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field(() => Plan) plan!: Plan;
  @Field(() => Int, { description: 'Replica ceiling per deployment on this plan.' }) maxReplicas!: number;
  @Field(() => Int, { description: 'Concurrent requests across the workspace on this plan.' }) maxConcurrency!: number;
}

@ObjectType()
export class Variant {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field({ description: 'GPU the variant was optimized for ("any" when not GPU-specific).' }) gpu!: string;
  @Field() engine!: string;
  @Field(() => String, { nullable: true }) quantization!: string | null;
  @Field(() => Int, { description: 'Concurrent requests one replica serves at most.' }) maxConcurrency!: number;
  @Field(() => Int, { nullable: true, description: 'Measured scaler target; null means the task default.' }) targetConcurrency!: number | null;
  @Field(() => Float, { nullable: true }) throughputTps!: number | null;
  @Field(() => Float, { nullable: true }) latencyP50Ms!: number | null;
  @Field() isDefault!: boolean;
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

@ObjectType()
export class Replica {
  @Field(() => ID) id!: string;
  @Field(() => ReplicaState) state!: ReplicaState;
  @Field() gpu!: string;
  @Field(() => Int) concurrency!: number;
  @Field(() => Int, { nullable: true, description: 'Time from start to healthy, ms.' }) coldStartMs!: number | null;
  @Field() startedAt!: Date;
  @Field(() => Date, { nullable: true }) readyAt!: Date | null;
  @Field(() => Date, { nullable: true }) stoppedAt!: Date | null;
}

@ObjectType()
export class DeploymentEvent {
  @Field() kind!: string;
  @Field() message!: string;
  @Field() at!: Date;
}

@ObjectType()
export class Operation {
  @Field(() => ID) id!: string;
  @Field(() => OperationKind) kind!: OperationKind;
  @Field(() => OperationStatus) status!: OperationStatus;
  @Field({ description: 'Temporal workflow id; open it in the Temporal UI.' }) workflowId!: string;
  @Field(() => String, { nullable: true }) error!: string | null;
  @Field() startedAt!: Date;
  @Field(() => Date, { nullable: true }) finishedAt!: Date | null;
}

@ObjectType()
export class Deployment {
  @Field(() => ID) id!: string;
  @Field(() => DeploymentStatus) status!: DeploymentStatus;
  @Field(() => String, { nullable: true, description: 'Why the deployment is FAILED or STOPPED.' }) statusReason!: string | null;
  @Field(() => String, { nullable: true, description: 'OpenAI-compatible base URL (ends in /v1); set once ACTIVE.' }) url!: string | null;
  @Field(() => Target) target!: Target;
  @Field() gpu!: string;
  @Field(() => DeploymentMode) mode!: DeploymentMode;
  @Field(() => Int) minReplicas!: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int, { nullable: true }) targetConcurrency!: number | null;
  @Field(() => Int, { nullable: true }) scaleDownWindowSeconds!: number | null;
  @Field(() => Int, { nullable: true }) idleTimeoutSeconds!: number | null;
  @Field(() => ID) pipelineId!: string;
  @Field(() => ID) variantId!: string;
  @Field() createdAt!: Date;
  @Field() updatedAt!: Date;
}

@ObjectType()
export class ApiKey {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field({ description: 'First characters of the key; the key itself is shown only once.' }) prefix!: string;
  @Field(() => KeyScope) scope!: KeyScope;
  @Field(() => ID, { nullable: true }) pipelineId!: string | null;
  @Field(() => ID, { nullable: true }) deploymentId!: string | null;
  @Field(() => Int, { nullable: true }) rateLimitPerMinute!: number | null;
  @Field(() => Date, { nullable: true, description: 'Null until the deploy workflow issues a deployment key.' }) issuedAt!: Date | null;
  @Field(() => Date, { nullable: true }) expiresAt!: Date | null;
  @Field(() => Date, { nullable: true }) revokedAt!: Date | null;
  @Field(() => Date, { nullable: true }) lastUsedAt!: Date | null;
  @Field() createdAt!: Date;
}

@ObjectType()
export class CreatedApiKey {
  @Field(() => ApiKey) apiKey!: ApiKey;
  @Field({ description: 'The whole key. Shown once; store it now.' }) key!: string;
}

@ObjectType()
export class DeployPayload {
  @Field(() => Deployment) deployment!: Deployment;
  @Field({ description: 'A deployment-scoped API key, usable once the deployment is ACTIVE. Shown once.' }) apiKey!: string;
}

@ObjectType()
export class CreatedManagementToken {
  @Field(() => ID) id!: string;
  @Field() prefix!: string;
  @Field({ description: 'The whole token. Shown once.' }) token!: string;
}

@ObjectType()
export class ManagementToken {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field({ description: 'First characters of the token; the token itself is shown only once.' }) prefix!: string;
  @Field() createdAt!: Date;
  @Field(() => Date, { nullable: true }) revokedAt!: Date | null;
}

@ObjectType()
export class ScalingDecision {
  @Field() at!: Date;
  @Field(() => Int) from!: number;
  @Field(() => Int) to!: number;
  @Field() reason!: string;
}

@ObjectType()
export class ScalingStatus {
  @Field(() => Int, { description: 'What the last decision asked for.' }) desired!: number;
  @Field(() => Int, { description: 'Replicas the scaler has applied.' }) current!: number;
  @Field({ description: 'Paused during lifecycle operations.' }) paused!: boolean;
  @Field({ description: 'True while no gateway has reported load: the count is held.' }) noData!: boolean;
  @Field(() => Int) minReplicas!: number;
  @Field(() => Int) maxReplicas!: number;
  @Field(() => Int) targetConcurrency!: number;
  @Field(() => Int) scaleDownWindowSeconds!: number;
  @Field(() => Int) idleTimeoutSeconds!: number;
  @Field(() => [ScalingDecision], { description: 'Recent changes of the count, oldest first, with their reasons.' }) decisions!: ScalingDecision[];
}
