// Every signal, update and query, defined once and imported by workflows and clients.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { LoadReport, ScalerState, ScalingPolicy } from '../src/domain/scaling';

export interface DeployInput {
  deploymentId: string;
  operationId: string;
  /** How long replicas may take to turn healthy before the deploy fails. */
  healthTimeoutSeconds: number;
  /** Scaler drain timeout (absent in histories recorded before the scaler existed). */
  drainTimeoutMs?: number;
}

export type DeployStep =
  'checking-plan' | 'provisioning' | 'waiting-healthy' | 'issuing-key' | 'publishing-routes' | 'active' | 'compensating' | 'failed';

export interface DeployProgress {
  step: DeployStep;
  error?: string;
}

export const deployProgressQuery = defineQuery<DeployProgress>('deployProgress');

export const TASK_QUEUE_DEFAULT = 'deployments';
export const deployWorkflowId = (deploymentId: string) => `deploy:${deploymentId}`;

// ---- scaler:<deploymentId> ----

export interface ScalingDecisionRecord {
  /** Epoch ms. */
  at: number;
  from: number;
  to: number;
  reason: string;
}

export interface ScalerInput {
  deploymentId: string;
  policy: ScalingPolicy;
  /** Replica count the deploy left running. */
  initialReplicas: number;
  /** Highest maxReplicas the workspace's plan allows. */
  planMaxReplicas: number;
  /** Decision interval without reports in histories recorded before the deadline timer, ms. */
  tickMs?: number;
  /** Longest wait for a draining replica's requests to finish, ms. */
  drainTimeoutMs: number;
  /** Carried across continue-as-new (plain JSON). */
  state?: ScalerState;
  decisions?: ScalingDecisionRecord[];
  paused?: boolean;
  /** What the actuator was doing when the last run continued as new: it watches these again. */
  actuation?: ActuationSnapshot;
  /** Test hook: continue as new after this many loop turns. */
  forceContinueAsNewAfterTurns?: number;
}

export interface ActuationSnapshot {
  starting: string[];
  draining: string[];
  /** The decided count was not yet applied. */
  pending: boolean;
  /** Replicas in a row that failed to start (the backoff's exponent). */
  failures: number;
}

export interface ScalerStatus {
  desired: number;
  current: number;
  paused: boolean;
  noData: boolean;
  policy: ScalingPolicy;
  decisions: ScalingDecisionRecord[];
  /** Replicas started and not yet serving (absent from scalers that apply counts in one blocking step). */
  starting?: number;
  /** Replicas draining before they stop. */
  draining?: number;
}

export type PolicyPatch = Partial<
  Pick<ScalingPolicy, 'mode' | 'minReplicas' | 'maxReplicas' | 'targetConcurrency' | 'scaleDownWindowSeconds' | 'idleTimeoutSeconds'>
>;

export const loadReportSignal = defineSignal<[LoadReport]>('loadReport');
export const pauseScalerSignal = defineSignal('pauseScaler');
/**
 * A lifecycle start or swap resumes with the replicas it started as the current count; a plain resume keeps
 * the count. A swap onto another variant also brings that variant's per-replica target.
 */
export interface ResumeScaler {
  current?: number;
  targetConcurrency?: number;
}
export const resumeScalerSignal = defineSignal<[ResumeScaler?]>('resumeScaler');
/** Ends the scaler (a deleted deployment): it finishes its handlers and completes. */
export const endScalerSignal = defineSignal('endScaler');
export const setPolicyUpdate = defineUpdate<ScalingPolicy, [PolicyPatch]>('setPolicy');
export const scalerStatusQuery = defineQuery<ScalerStatus>('scalerStatus');
export const scalerWorkflowId = (deploymentId: string) => `scaler:${deploymentId}`;

// ---- op:<deploymentId>:<opId> (stop, start, delete, change GPU, rollback) ----

export type LifecycleKind = 'STOP' | 'START' | 'DELETE' | 'CHANGE_GPU' | 'ROLLBACK';
export type SwapKind = Extract<LifecycleKind, 'CHANGE_GPU' | 'ROLLBACK'>;

export interface LifecycleInput {
  deploymentId: string;
  operationId: string;
  /** How long started replicas may take to turn healthy (start). */
  healthTimeoutSeconds: number;
  /** Longest wait for in-flight requests to finish before the replicas stop (stop, delete). */
  drainTimeoutMs: number;
}

/** A change of GPU or a rollback: the staged revision the swap brings up and switches to. */
export interface SwapInput extends LifecycleInput {
  kind: SwapKind;
  revisionId: string;
}

export type LifecycleStep =
  | 'pausing-scaler'
  | 'stopping'
  | 'draining'
  | 'provisioning'
  | 'waiting-healthy'
  | 'publishing-routes'
  | 'switching'
  | 'resuming-scaler'
  | 'revoking-keys'
  | 'ending-scaler'
  | 'done'
  | 'compensating'
  | 'failed';

export interface LifecycleProgress {
  kind: LifecycleKind;
  step: LifecycleStep;
  error?: string;
}

export const lifecycleProgressQuery = defineQuery<LifecycleProgress>('lifecycleProgress');
export const opWorkflowId = (deploymentId: string, operationId: string) => `op:${deploymentId}:${operationId}`;

// ---- optimize:<pipelineId>:<runId>, reoptimize:<pipelineId> (its Schedule), the drift check ----

export interface OptimizeInput {
  runId: string;
  pipelineId: string;
}

export interface OptimizeProgress {
  step: 'planning' | 'measuring' | 'ranking' | 'redeploying' | 'done' | 'failed';
  /** The candidate being measured, and how many are done of how many. */
  candidate?: string;
  done: number;
  of: number;
  error?: string;
}

export const optimizeProgressQuery = defineQuery<OptimizeProgress>('optimizeProgress');

/** What a schedule (or a drift) starts: a run of the pipeline with the schedule's priority and constraints. */
export interface ScheduledOptimizeInput {
  pipelineId: string;
  trigger: 'SCHEDULE' | 'DRIFT';
  /** How the run measures (RunSettings in activities/optimization.ts), fixed when the schedule was set. */
  settings: Record<string, unknown>;
}

export interface DriftCheckInput {
  /** The live traffic window compared with what the runs measured. */
  windowSeconds: number;
}

export const optimizeWorkflowId = (pipelineId: string, runId: string) => `optimize:${pipelineId}:${runId}`;
export const reoptimizeScheduleId = (pipelineId: string) => `reoptimize:${pipelineId}`;
/** One drift check per installation (its task queue): installations sharing a Temporal namespace each check their own. */
export const driftCheckScheduleId = (taskQueue: string) => `infercp-traffic-drift-check:${taskQueue}`;
