import { Field, ID, InputType, Int, ObjectType } from '@nestjs/graphql';
import { DeploymentMode, DeploymentStatus, OperationKind, OperationStatus, ReplicaState, RevisionStatus, Target } from '../graphql/enums';

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
  @Field(() => ID, { nullable: true, description: 'The revision it serves (see Deployment.revisions).' }) revisionId!: string | null;
}

@ObjectType({ description: 'A variant on a GPU that the deployment serves or served: what rollbackDeployment can go back to.' })
export class Revision {
  @Field(() => ID) id!: string;
  @Field(() => RevisionStatus) status!: RevisionStatus;
  @Field(() => ID) variantId!: string;
  @Field() gpu!: string;
  @Field(() => ID, { description: 'The operation that made it (the deploy, a change of GPU, a rollback).' }) operationId!: string;
  @Field(() => String, { nullable: true, description: 'Why it failed, when it did.' }) reason!: string | null;
  @Field() createdAt!: Date;
  @Field(() => Date, { nullable: true, description: 'When the routes switched to it.' }) servedFrom!: Date | null;
  @Field(() => Date, { nullable: true, description: 'When the routes switched away from it; null while it serves.' })
  servedTo!: Date | null;
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
  @Field(() => String, {
    nullable: true,
    description: 'Advice about what the operation does: a variant optimized for another GPU than the one it moves to.',
  })
  warning!: string | null;
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
  @Field(() => ID, {
    nullable: true,
    description: "The provider credential (the user's own account) it runs on; null for the managed target.",
  })
  credentialId!: string | null;
  @Field() createdAt!: Date;
  @Field() updatedAt!: Date;
}

@ObjectType()
export class DeployPayload {
  @Field(() => Deployment) deployment!: Deployment;
  @Field({ description: 'A deployment-scoped API key, usable once the deployment is ACTIVE. Shown once.' }) apiKey!: string;
}

@InputType()
export class DeployPipelineInput {
  @Field(() => ID) pipelineId!: string;
  @Field(() => ID, { nullable: true, description: "Variant to serve; the pipeline's selected variant when omitted." }) variantId?: string;
  @Field(() => Target, { defaultValue: 'LOCAL' }) target!: Target;
  @Field({ description: 'GPU type id on the target (e.g. NVIDIA L40S); "sim" for the local simulator.' }) gpu!: string;
  @Field(() => DeploymentMode, { defaultValue: 'FLEX' }) mode!: DeploymentMode;
  @Field(() => Int, { nullable: true, description: 'Floor. Flex default 0, Active default 1.' }) minReplicas?: number;
  @Field(() => Int, {
    nullable: true,
    description: 'Ceiling and spend cap; requests past it queue, then get 503. Default max(1, minReplicas).',
  })
  maxReplicas?: number;
  @Field(() => Int, { nullable: true, description: 'Per-replica in-flight target; default from the optimization run or the task.' })
  targetConcurrency?: number;
  @Field(() => Int, { nullable: true, description: 'Below-target time before scaling down. Flex 30, Active 120.' })
  scaleDownWindowSeconds?: number;
  @Field(() => Int, { nullable: true, description: 'Flex: no traffic for this long scales to zero. Default 300.' })
  idleTimeoutSeconds?: number;
  @Field(() => ID, {
    nullable: true,
    description:
      "A provider credential of the workspace (addProviderCredential) of the deployment's target: it runs on that account (RUNPOD: Flex only). Without one, RUNPOD is managed RunPod.",
  })
  credentialId?: string;
}
