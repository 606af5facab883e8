// Every signal, update and query, defined once and imported by workflows and clients.
import { defineQuery } from '@temporalio/workflow';

export interface DeployInput {
  deploymentId: string;
  operationId: string;
  /** How long replicas may take to turn healthy before the deploy fails. */
  healthTimeoutSeconds: number;
}

export type DeployStep =
  | 'checking-plan'
  | 'provisioning'
  | 'waiting-healthy'
  | 'issuing-key'
  | 'publishing-routes'
  | 'active'
  | 'compensating'
  | 'failed';

export interface DeployProgress {
  step: DeployStep;
  error?: string;
}

export const deployProgressQuery = defineQuery<DeployProgress>('deployProgress');

export const TASK_QUEUE_DEFAULT = 'deployments';
export const deployWorkflowId = (deploymentId: string) => `deploy:${deploymentId}`;
