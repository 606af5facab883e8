import { Inject, Injectable } from '@nestjs/common';
import { Client, WorkflowIdReusePolicy } from '@temporalio/client';
import type { Logger } from 'pino';
import { z } from 'zod';
import { Config, CONFIG } from '../config/config';
import { LOGGER, PRISMA, TEMPORAL_CLIENT } from '../common/core.module';
import { issueSecret, newId } from '../common/secrets';
import type { Deployment, PrismaClient, Workspace } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { ModeName, PlanName, planViolation, targetConcurrency } from '../domain/plans';
import { policyProblems, policyRefusal, withModeDefaults } from '../domain/scaling';
import { lockCredential, readCredentialSecret } from '../credentials/store';
import { SECRETS_KEY_BUFFER } from '../credentials/credentials.service';
import { parseCustomEndpoints } from '../providers/custom/endpoints';
import { kubernetesAccountIn } from '../providers/kubernetes/account';
import type { DeployPipelineInput } from './deployments.types';
import { claimOperation, LIFECYCLE_FROM, LIFECYCLE_WORKFLOW, operationInProgress, PAST, verbOf } from './operations';
import type { deployWorkflow } from '../../workflows/deploy';
import { deployWorkflowId, DeployInput, LifecycleInput, LifecycleKind, SwapInput, SwapKind } from '../../workflows/messages';

/**
 * A swap starts the new revision's replicas beside the old ones, which a CUSTOM deployment has no spare servers for: the
 * servers run what the user started on them.
 */
function refuseCustomSwap(d: Pick<Deployment, 'id' | 'target'>, kind: 'CHANGE_GPU' | 'ROLLBACK', kubernetes: boolean) {
  // A Kubernetes CUSTOM deployment swaps like any pool: the new revision is a Deployment of its own beside the old.
  if (d.target !== 'CUSTOM' || kubernetes) return;
  throw new DomainError(
    ErrorCode.BAD_USER_INPUT,
    `deployment ${d.id} is CUSTOM: its servers run the bundle you started on them, so it cannot be ${PAST[kind]} here; run the other variant's pipelineBundle on your servers and deploy it`,
    { target: 'CUSTOM' },
  );
}

const gpuSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/, 'must be 1-64 characters of letters, digits, space, ., _ or -');

const deploySchema = z.object({
  pipelineId: z.string().min(1),
  variantId: z.string().min(1).optional().nullable(),
  target: z.enum(['LOCAL', 'RUNPOD', 'MODAL', 'CUSTOM']),
  gpu: gpuSchema,
  mode: z.enum(['FLEX', 'ACTIVE']),
  // Types only: the knobs' rules are policyProblems (src/domain/scaling.ts), checked once defaults are resolved.
  minReplicas: z.number().nullish(),
  maxReplicas: z.number().nullish(),
  targetConcurrency: z.number().nullish(),
  scaleDownWindowSeconds: z.number().nullish(),
  idleTimeoutSeconds: z.number().nullish(),
  credentialId: z.string().min(1, 'must not be empty').nullish(),
});

@Injectable()
export class DeploymentsService {
  constructor(
    @Inject(PRISMA) private readonly prisma: PrismaClient,
    @Inject(TEMPORAL_CLIENT) private readonly temporal: Client,
    @Inject(CONFIG) private readonly config: Config,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(SECRETS_KEY_BUFFER) private readonly secretsKey: Buffer,
  ) {}

  /** Plan rules from the reference; each violation is a PLAN_LIMIT error naming the rule. */
  checkPlan(ws: Workspace, mode: ModeName, maxReplicas: number) {
    const v = planViolation(ws.plan as PlanName, mode, maxReplicas, ws.maxReplicas);
    if (v)
      throw new DomainError(ErrorCode.PLAN_LIMIT, v.message, {
        plan: ws.plan,
        ...(v.field ? { field: v.field } : {}),
        ...(v.limit !== undefined ? { limit: v.limit } : {}),
      });
  }

  async deploy(ws: Workspace, raw: DeployPipelineInput) {
    const parsed = deploySchema.parse(raw);
    // CUSTOM: fixed capacity, one replica per registered endpoint; min and max are that count or refused.
    // (A Kubernetes CUSTOM credential scales like any pool: no fixed count, null.)
    const endpoints = parsed.target === 'CUSTOM' ? await this.customEndpointCount(ws, parsed) : null;
    const input = endpoints === null ? parsed : { ...parsed, minReplicas: endpoints, maxReplicas: endpoints };
    // Defaults are resolved here, once: the row then holds every knob, and the worker's checkPlan only copies them.
    const knobs = withModeDefaults(input);
    const problems = policyProblems({ ...knobs, targetConcurrency: input.targetConcurrency });
    if (problems.length) throw policyRefusal(problems);
    const { minReplicas, maxReplicas } = knobs;
    const pipeline = await this.prisma.pipeline.findFirst({ where: { id: input.pipelineId, workspaceId: ws.id } });
    if (!pipeline) throw notFound('pipeline', input.pipelineId);
    const variantId = input.variantId ?? pipeline.selectedVariantId;
    const variant = variantId ? await this.prisma.variant.findFirst({ where: { id: variantId, pipelineId: pipeline.id } }) : null;
    if (!variant) throw notFound('variant', variantId ?? '(none selected)');

    this.checkPlan(ws, input.mode, maxReplicas);
    if (input.targetConcurrency != null && input.targetConcurrency > variant.maxConcurrency) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `targetConcurrency: ${input.targetConcurrency} is above what one replica of this variant serves (${variant.maxConcurrency})`,
        { field: 'targetConcurrency' },
      );
    }

    if (input.target === 'MODAL' && !input.credentialId) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        'credentialId: a MODAL deployment runs on your own Modal account; add its token with addProviderCredential and pass the credential id',
        { field: 'credentialId' },
      );
    }
    if (input.credentialId) await this.checkCredential(ws, input.credentialId, input.target, input.mode);

    const id = newId('dep');
    const operationId = newId('op');
    const revisionId = newId('rev');
    const workflowId = deployWorkflowId(id);
    const key = issueSecret('sk');
    await this.prisma.$transaction(async (tx) => {
      // Locked until the rows are written: deleteProviderCredential waits, then sees this deployment using it.
      if (input.credentialId) await lockCredential(tx, ws.id, input.credentialId);
      await tx.deployment.create({
        data: {
          id,
          revisionId,
          credentialId: input.credentialId ?? null,
          workspaceId: ws.id,
          pipelineId: pipeline.id,
          variantId: variant.id,
          target: input.target,
          gpu: input.gpu,
          mode: input.mode,
          minReplicas,
          maxReplicas,
          targetConcurrency: targetConcurrency(pipeline.task, variant.maxConcurrency, input.targetConcurrency ?? variant.targetConcurrency),
          scaleDownWindowSeconds: knobs.scaleDownWindowSeconds,
          idleTimeoutSeconds: knobs.idleTimeoutSeconds,
          status: 'PENDING',
          activeOperationId: operationId,
        },
      });
      await tx.operation.create({ data: { id: operationId, deploymentId: id, kind: 'DEPLOY', workflowId, status: 'RUNNING' } });
      // Its first revision: what it serves once ACTIVE (servedFrom is set when the routes are published).
      await tx.revision.create({
        data: { id: revisionId, deploymentId: id, variantId: variant.id, gpu: input.gpu, status: 'SERVING', operationId },
      });
      // Stored hashed and inactive; the deploy workflow issues it once replicas are healthy.
      await tx.apiKey.create({
        data: {
          id: newId('key'),
          workspaceId: ws.id,
          scope: 'DEPLOYMENT',
          deploymentId: id,
          pipelineId: pipeline.id,
          name: `${pipeline.name} deployment key`,
          prefix: key.prefix,
          hash: key.hash,
        },
      });
      await tx.deploymentEvent.create({
        data: {
          deploymentId: id,
          kind: 'deploy.requested',
          message: `deploy of ${pipeline.name} (${variant.name}) on ${input.target} ${input.gpu}, ${input.mode} ${minReplicas}-${maxReplicas} replicas`,
        },
      });
      if (endpoints !== null) {
        await tx.deploymentEvent.create({
          data: {
            deploymentId: id,
            kind: 'capacity.fixed',
            message: `fixed capacity: ${endpoints} registered endpoint${endpoints === 1 ? '' : 's'}; scaling is out of our hands (the servers are yours to add or remove)`,
            data: { endpoints },
          },
        });
      }
    });

    const wfInput: DeployInput = {
      deploymentId: id,
      operationId,
      healthTimeoutSeconds: this.config.DEPLOY_HEALTH_TIMEOUT_SECONDS,
      drainTimeoutMs: this.config.SCALER_DRAIN_TIMEOUT_SECONDS * 1000,
    };
    try {
      await this.temporal.workflow.start<typeof deployWorkflow>('deployWorkflow', {
        taskQueue: this.config.TEMPORAL_TASK_QUEUE,
        workflowId,
        args: [wfInput],
        workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      });
    } catch (err) {
      // Nothing was accepted: undo the rows and say so.
      this.log.error({ err, deploymentId: id }, 'could not start the deploy workflow');
      await this.prisma.deployment.delete({ where: { id } }).catch((undoErr: unknown) =>
        // The PENDING row stays, holding its operation lock with no workflow behind it: someone must remove it.
        this.log.error(
          { err: undoErr, deploymentId: id, operationId },
          'could not undo a deploy whose workflow did not start; its PENDING row remains',
        ),
      );
      throw new DomainError(ErrorCode.UNAVAILABLE, 'the workflow engine is unavailable; nothing was deployed, try again shortly');
    }
    const deployment = await this.prisma.deployment.findUniqueOrThrow({ where: { id } });
    return { deployment, apiKey: key.plaintext };
  }

  /**
   * How many endpoints the CUSTOM credential of a deploy registers: the replica count, fixed. The credential is required
   * (NOT_FOUND when it is not the workspace's), and a minReplicas or maxReplicas other than that count is refused.
   */
  private async customEndpointCount(
    ws: Workspace,
    input: { credentialId?: string | null; minReplicas?: number | null; maxReplicas?: number | null },
  ): Promise<number | null> {
    if (!input.credentialId) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        'credentialId: a CUSTOM deployment runs on servers you run (the pipelineBundle); register their URLs with addProviderCredential(target: CUSTOM, endpoints) and pass the credential id',
        { field: 'credentialId' },
      );
    }
    const cred = await this.prisma.providerCredential.findFirst({ where: { id: input.credentialId, workspaceId: ws.id, deletedAt: null } });
    if (!cred) throw notFound('provider credential', input.credentialId);
    if (cred.target !== 'CUSTOM') {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `credentialId: credential ${cred.name} is a ${cred.target} credential; the deployment's target is CUSTOM`,
        { field: 'credentialId' },
      );
    }
    const plaintext = await readCredentialSecret(this.prisma, this.secretsKey, cred.id);
    if (kubernetesAccountIn(plaintext)) return null;
    const n = parseCustomEndpoints(plaintext, cred.id).length;
    for (const field of ['minReplicas', 'maxReplicas'] as const) {
      const v = input[field];
      if (v != null && v !== n) {
        throw new DomainError(
          ErrorCode.BAD_USER_INPUT,
          `${field}: a CUSTOM deployment has fixed capacity, one replica per registered endpoint: credential ${cred.name} registers ${n}, so ${field} is ${n} (or omit it), not ${v}`,
          { field, endpoints: n },
        );
      }
    }
    return n;
  }

  /** Whether a CUSTOM deployment runs on a Kubernetes credential (its pools scale and swap like RunPod's). */
  async onKubernetes(d: Pick<Deployment, 'target' | 'credentialId'>): Promise<boolean> {
    if (d.target !== 'CUSTOM' || !d.credentialId) return false;
    return kubernetesAccountIn(await readCredentialSecret(this.prisma, this.secretsKey, d.credentialId).catch(() => '')) !== null;
  }

  /** A credential a deploy may run on: the workspace's, live, of the deployment's target, and (RUNPOD) Flex. */
  private async checkCredential(ws: Workspace, credentialId: string, target: string, mode: ModeName) {
    const cred = await this.prisma.providerCredential.findFirst({ where: { id: credentialId, workspaceId: ws.id, deletedAt: null } });
    if (!cred) throw notFound('provider credential', credentialId);
    if (cred.target !== target) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `credentialId: credential ${cred.name} is a ${cred.target} credential; the deployment's target is ${target}`,
        { field: 'credentialId' },
      );
    }
    if (cred.target === 'RUNPOD' && mode !== 'FLEX') {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        'mode: your own RunPod account runs Flex only; Active is managed RunPod (deploy without credentialId)',
        { field: 'mode' },
      );
    }
  }

  /**
   * Starts stop, start or delete as op:<deploymentId>:<opId> and returns its Operation. One operation
   * per deployment at a time (the activeOperationId lock, claimed with a conditional update): a second
   * gets OPERATION_IN_PROGRESS naming the running one; a transition the status does not allow gets CONFLICT.
   */
  async lifecycle(ws: Workspace, id: string, kind: Exclude<LifecycleKind, SwapKind>) {
    const d = await this.claimable(ws, id, kind);
    if (kind === 'START' && d.status === 'FAILED') {
      // A failed start may be tried again; a failed deploy revoked its key and is deployed anew instead.
      const last = await this.prisma.operation.findFirst({ where: { deploymentId: id }, orderBy: { startedAt: 'desc' } });
      if (last?.kind !== 'START') {
        throw new DomainError(
          ErrorCode.CONFLICT,
          `deployment ${id} is FAILED by its ${(last?.kind ?? 'DEPLOY').toLowerCase()}: start needs it STOPPED, or FAILED by a start; deploy the pipeline again instead`,
          { status: d.status },
        );
      }
    }
    return this.begin(d, kind, {});
  }

  /**
   * changeGpu: the deployment's variant onto another GPU, blue/green (swapWorkflow). When the variant was
   * optimized for another GPU, the operation carries a warning recommending re-optimization.
   */
  async changeGpu(ws: Workspace, id: string, gpuRaw: string) {
    const parsed = gpuSchema.safeParse(gpuRaw);
    if (!parsed.success) throw new DomainError(ErrorCode.BAD_USER_INPUT, `gpu: ${parsed.error.issues[0].message}`, { field: 'gpu' });
    const gpu = parsed.data;
    const d = await this.claimable(ws, id, 'CHANGE_GPU');
    refuseCustomSwap(d, 'CHANGE_GPU', await this.onKubernetes(d));
    if (gpu === d.gpu) {
      throw new DomainError(ErrorCode.CONFLICT, `deployment ${id} already runs on ${gpu}: name another GPU`, { field: 'gpu', gpu });
    }
    const variant = await this.prisma.variant.findUniqueOrThrow({ where: { id: d.variantId } });
    return this.begin(d, 'CHANGE_GPU', { variantId: variant.id, gpu, warning: await this.gpuWarning(variant, gpu) });
  }

  /**
   * rollbackDeployment: onto another variant of the same pipeline (a prior one, usually), blue/green. It
   * runs on the GPU this deployment last served that variant on, else on the GPU it runs on now.
   */
  async rollback(ws: Workspace, id: string, variantId: string) {
    const d = await this.claimable(ws, id, 'ROLLBACK');
    refuseCustomSwap(d, 'ROLLBACK', await this.onKubernetes(d));
    const variant = await this.prisma.variant.findFirst({ where: { id: variantId, pipelineId: d.pipelineId } });
    if (!variant) throw notFound('variant', variantId);
    const served = await this.prisma.revision.findFirst({
      where: { deploymentId: id, variantId, servedFrom: { not: null } },
      orderBy: { servedFrom: 'desc' },
    });
    const gpu = served?.gpu ?? d.gpu;
    if (variant.id === d.variantId && gpu === d.gpu) {
      throw new DomainError(ErrorCode.CONFLICT, `deployment ${id} already serves variant ${variant.name} on ${gpu}`, {
        field: 'variantId',
        variantId,
      });
    }
    return this.begin(d, 'ROLLBACK', { variantId: variant.id, gpu, warning: await this.gpuWarning(variant, gpu) });
  }

  /**
   * The reference's "the agent warns": a variant tuned (or measured, by an optimization run) for one GPU, served on
   * another. The warning names a variant of the pipeline that a run measured on that GPU, when there is one.
   */
  private async gpuWarning(
    variant: { name: string; gpu: string; pipelineId: string; status: string },
    gpu: string,
  ): Promise<string | null> {
    if (variant.gpu === 'any' || variant.gpu === gpu) return null;
    const how = variant.status === 'MEASURED' ? 'measured' : 'optimized';
    const base = `variant ${variant.name} was ${how} for ${variant.gpu}, not ${gpu}: its engine settings may not fit ${gpu}`;
    const there = await this.prisma.variant.findFirst({
      where: { pipelineId: variant.pipelineId, gpu, status: 'MEASURED' },
      orderBy: [{ createdAt: 'desc' }, { rank: 'asc' }],
    });
    return there
      ? `${base}; variant ${there.name} was measured on ${gpu} (target concurrency ${there.targetConcurrency}): roll back onto it instead`
      : `${base}; re-optimize the pipeline for ${gpu}`;
  }

  /** The deployment, if an operation of this kind may start on it now (DELETED, a running operation and the status are checked). */
  private async claimable(ws: Workspace, id: string, kind: LifecycleKind) {
    const d = await this.get(ws.id, id);
    if (d.status === 'DELETED') {
      throw new DomainError(ErrorCode.CONFLICT, `deployment ${id} is DELETED: it cannot be ${PAST[kind]}`, { status: d.status });
    }
    if (d.activeOperationId) throw await this.inProgress(id, d.activeOperationId);
    if (!LIFECYCLE_FROM[kind].includes(d.status)) {
      const verb = verbOf(kind);
      throw new DomainError(ErrorCode.CONFLICT, `deployment ${id} is ${d.status}: ${verb} needs it ${LIFECYCLE_FROM[kind].join(' or ')}`, {
        status: d.status,
        allowed: LIFECYCLE_FROM[kind],
      });
    }
    return d;
  }

  /**
   * Claims the deployment's operation lock with a conditional update, records the operation (and, for a
   * swap, its staged revision) in the same transaction, and starts op:<deploymentId>:<opId>. When the
   * workflow cannot start, nothing stays: the rows go and the lock is released.
   */
  private async begin(
    d: Pick<Deployment, 'id' | 'status'>,
    kind: LifecycleKind,
    swap: { variantId?: string; gpu?: string; warning?: string | null },
  ) {
    const { id } = d;
    const { operationId, revisionId, workflowId } = await claimOperation(this.prisma, d, kind, swap);
    const verb = verbOf(kind);
    const base: LifecycleInput = {
      deploymentId: id,
      operationId,
      healthTimeoutSeconds: this.config.DEPLOY_HEALTH_TIMEOUT_SECONDS,
      drainTimeoutMs: this.config.SCALER_DRAIN_TIMEOUT_SECONDS * 1000,
    };
    const wfInput: LifecycleInput | SwapInput = revisionId ? { ...base, kind: kind as SwapKind, revisionId } : base;
    try {
      await this.temporal.workflow.start(LIFECYCLE_WORKFLOW[kind], {
        taskQueue: this.config.TEMPORAL_TASK_QUEUE,
        workflowId,
        args: [wfInput],
        workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      });
    } catch (err) {
      this.log.error({ err, deploymentId: id, operationId }, `could not start the ${verb} workflow`);
      await this.prisma
        .$transaction([
          ...(revisionId ? [this.prisma.revision.delete({ where: { id: revisionId } })] : []),
          this.prisma.operation.delete({ where: { id: operationId } }),
          this.prisma.deployment.updateMany({ where: { id, activeOperationId: operationId }, data: { activeOperationId: null } }),
        ])
        .catch((undoErr: unknown) =>
          this.log.error({ err: undoErr, deploymentId: id, operationId }, 'could not release the operation lock'),
        );
      throw new DomainError(
        ErrorCode.UNAVAILABLE,
        `the workflow engine is unavailable; the deployment was not ${PAST[kind]}, try again shortly`,
      );
    }
    return this.prisma.operation.findUniqueOrThrow({ where: { id: operationId } });
  }

  private inProgress(deploymentId: string, operationId: string) {
    return operationInProgress(this.prisma, deploymentId, operationId);
  }

  async get(workspaceId: string, id: string) {
    const d = await this.prisma.deployment.findFirst({ where: { id, workspaceId } });
    if (!d) throw notFound('deployment', id);
    return d;
  }

  list(workspaceId: string) {
    return this.prisma.deployment.findMany({ where: { workspaceId }, orderBy: { createdAt: 'desc' } });
  }

  // The Deployment type's fields that are rows of their own.

  /** Replicas not yet stopped (or all of them), oldest first. */
  replicas(deploymentId: string, includeStopped: boolean) {
    return this.prisma.replica.findMany({
      where: { deploymentId, ...(includeStopped ? {} : { state: { notIn: ['STOPPED'] } }) },
      orderBy: { startedAt: 'asc' },
    });
  }

  /** The audit trail, oldest first. */
  events(deploymentId: string) {
    return this.prisma.deploymentEvent.findMany({ where: { deploymentId }, orderBy: { id: 'asc' } });
  }

  /** What it serves and served, newest first. */
  revisions(deploymentId: string) {
    return this.prisma.revision.findMany({ where: { deploymentId }, orderBy: { createdAt: 'desc' } });
  }

  /** Operations, newest first. */
  operations(deploymentId: string) {
    return this.prisma.operation.findMany({ where: { deploymentId }, orderBy: { startedAt: 'desc' } });
  }

  pipeline(pipelineId: string) {
    return this.prisma.pipeline.findUniqueOrThrow({ where: { id: pipelineId } });
  }

  variant(variantId: string) {
    return this.prisma.variant.findUniqueOrThrow({ where: { id: variantId } });
  }
}
