// The GraphQL documents the tests and benchmarks send, written once.
import type { Task } from '../../src/domain/targets';

export interface GqlError {
  message: string;
  extensions: { code: string } & Record<string, unknown>;
}

export interface GqlResult<T> {
  data: T;
  errors?: GqlError[];
}

/** A GraphQL call bound to one management token. */
export type Gql = <T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>) => Promise<GqlResult<T>>;

export const CREATE_PIPELINE = `mutation($input: CreatePipelineInput!) { createPipeline(input: $input) { id variants { id isDefault } } }`;
export const DEPLOY = `mutation($input: DeployPipelineInput!) { deployPipeline(input: $input) { deployment { id status url } apiKey } }`;
export const DEPLOYMENT_STATUS = `query($id: ID!) { deployment(id: $id) { id status statusReason url } }`;

export interface PipelineInput {
  name: string;
  task?: Task;
  model?: string;
}

export interface DeployInput {
  pipelineId: string;
  target?: 'LOCAL' | 'RUNPOD' | 'MODAL' | 'CUSTOM';
  gpu?: string;
  mode?: 'FLEX' | 'ACTIVE';
  minReplicas?: number;
  maxReplicas?: number;
  targetConcurrency?: number;
  scaleDownWindowSeconds?: number;
  idleTimeoutSeconds?: number;
  variantId?: string;
  credentialId?: string;
}

/** The data of a call that must succeed; its errors, if any, become the thrown message. */
export async function must<T>(r: Promise<GqlResult<T>>): Promise<T> {
  const { data, errors } = await r;
  if (errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(errors)}`);
  return data;
}

/** Creates a chat pipeline on the simulator's tiny model unless told otherwise; returns its id. */
export async function createPipeline(gql: Gql, input: PipelineInput): Promise<string> {
  const data = await must(
    gql<{ createPipeline: { id: string } }>(CREATE_PIPELINE, { input: { task: 'CHAT', model: 'sim/tiny-chat', ...input } }),
  );
  return data.createPipeline.id;
}

/** Sends deployPipeline on the local simulator (gpu "sim") unless told otherwise. */
export function deploy(gql: Gql, input: DeployInput) {
  return gql<{ deployPipeline: { deployment: { id: string; status: string; url: string | null }; apiKey: string } }>(DEPLOY, {
    input: { target: 'LOCAL', gpu: 'sim', ...input },
  });
}

/** Deploys and waits until the deployment leaves PENDING/PROVISIONING; returns its id, key and final status. */
export async function deployAndWait(gql: Gql, input: DeployInput, timeoutMs = 30_000) {
  const { deployPipeline } = await must(deploy(gql, input));
  const id = deployPipeline.deployment.id;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { deployment } = await must(
      gql<{ deployment: { status: string; statusReason: string | null; url: string | null } }>(DEPLOYMENT_STATUS, { id }),
    );
    if (!['PENDING', 'PROVISIONING'].includes(deployment.status)) return { id, apiKey: deployPipeline.apiKey, ...deployment };
    if (Date.now() > deadline) throw new Error(`deployment ${id} still ${deployment.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The lifecycle mutations: each returns its Operation at once. */
export const STOP_DEPLOYMENT = `mutation($id: ID!) { stopDeployment(id: $id) { id kind status workflowId } }`;
export const START_DEPLOYMENT = `mutation($id: ID!) { startDeployment(id: $id) { id kind status workflowId } }`;
export const DELETE_DEPLOYMENT = `mutation($id: ID!) { deleteDeployment(id: $id) { id kind status workflowId } }`;

export interface OperationResult {
  id: string;
  kind: string;
  status: string;
  workflowId: string;
  warning?: string | null;
}

/** The swaps: each returns its Operation at once, with a warning when the variant was tuned for another GPU. */
export const CHANGE_GPU = `mutation($id: ID!, $gpu: String!) { changeGpu(deploymentId: $id, gpu: $gpu) { id kind status workflowId warning } }`;
export const ROLLBACK = `mutation($id: ID!, $variantId: ID!) { rollbackDeployment(deploymentId: $id, variantId: $variantId) { id kind status workflowId warning } }`;
export const CREATE_VARIANT = `mutation($pipelineId: ID!, $input: CreateVariantInput!) {
  createVariant(pipelineId: $pipelineId, input: $input) { id name gpu engine quantization engineConfig maxConcurrency targetConcurrency } }`;
