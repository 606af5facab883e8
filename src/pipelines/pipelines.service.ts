import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { PRISMA } from '../common/core.module';
import { newId } from '../common/secrets';
import type { PrismaClient } from '../database/prisma';
import { DomainError, ErrorCode, notFound } from '../domain/errors';
import { DEFAULT_REPLICA_CONCURRENCY } from '../domain/plans';
import { TASKS } from '../domain/targets';
import type { CreatePipelineInput, CreateVariantInput } from './pipelines.types';

const nameRule = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 characters of letters, digits, ., _ or -, starting with a letter or digit');

const createPipelineSchema = z.object({
  name: nameRule,
  task: z.enum(TASKS),
  model: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters'),
  gpu: z.string().min(1).max(64).optional(),
  engine: z.string().min(1).max(64).optional(),
});

const createVariantSchema = z.object({
  name: nameRule,
  gpu: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/, 'must be 1-64 characters of letters, digits, space, ., _ or -'),
  engine: z.string().min(1, 'must not be empty').max(64, 'must be at most 64 characters'),
  quantization: z.string().min(1, 'must not be empty').max(64, 'must be at most 64 characters').nullish(),
  engineConfig: z.record(z.string(), z.unknown()).nullish(),
  maxConcurrency: z.number().int().min(1, 'must be at least 1').max(4096, 'must be at most 4096').nullish(),
  targetConcurrency: z.number().int().min(1, 'must be at least 1').nullish(),
});

@Injectable()
export class PipelinesService {
  constructor(@Inject(PRISMA) private readonly prisma: PrismaClient) {}

  async create(workspaceId: string, raw: CreatePipelineInput) {
    const input = createPipelineSchema.parse(raw);
    const exists = await this.prisma.pipeline.findUnique({ where: { workspaceId_name: { workspaceId, name: input.name } } });
    if (exists) throw new DomainError(ErrorCode.CONFLICT, `a pipeline named ${input.name} already exists`, { field: 'name' });
    const id = newId('pl');
    const variantId = newId('var');
    // Every pipeline has a default variant, so it can deploy before any optimization run.
    return this.prisma.$transaction(async (tx) => {
      await tx.pipeline.create({ data: { id, workspaceId, name: input.name, task: input.task, model: input.model } });
      await tx.variant.create({
        data: {
          id: variantId,
          pipelineId: id,
          name: 'default',
          gpu: input.gpu ?? 'any',
          engine: input.engine ?? 'vllm',
          maxConcurrency: DEFAULT_REPLICA_CONCURRENCY,
          isDefault: true,
        },
      });
      return tx.pipeline.update({ where: { id }, data: { selectedVariantId: variantId } });
    });
  }

  async get(workspaceId: string, id: string) {
    const p = await this.prisma.pipeline.findFirst({ where: { id, workspaceId } });
    if (!p) throw notFound('pipeline', id);
    return p;
  }

  list(workspaceId: string) {
    return this.prisma.pipeline.findMany({ where: { workspaceId }, orderBy: { createdAt: 'desc' } });
  }

  /** A variant added by hand (optimization runs add measured ones); deployable at once, and a target for rollbackDeployment. */
  async createVariant(workspaceId: string, pipelineId: string, raw: CreateVariantInput) {
    const input = createVariantSchema.parse(raw);
    const pipeline = await this.get(workspaceId, pipelineId);
    const maxConcurrency = input.maxConcurrency ?? DEFAULT_REPLICA_CONCURRENCY;
    if (input.targetConcurrency != null && input.targetConcurrency > maxConcurrency) {
      throw new DomainError(
        ErrorCode.BAD_USER_INPUT,
        `targetConcurrency: ${input.targetConcurrency} is above what one replica serves (maxConcurrency ${maxConcurrency})`,
        { field: 'targetConcurrency' },
      );
    }
    const taken = await this.prisma.variant.findFirst({ where: { pipelineId: pipeline.id, name: input.name } });
    if (taken)
      throw new DomainError(ErrorCode.CONFLICT, `pipeline ${pipeline.name} already has a variant named ${input.name}`, { field: 'name' });
    return this.prisma.variant.create({
      data: {
        id: newId('var'),
        pipelineId: pipeline.id,
        name: input.name,
        gpu: input.gpu,
        engine: input.engine,
        quantization: input.quantization ?? null,
        engineConfig: (input.engineConfig ?? undefined) as object | undefined,
        maxConcurrency,
        targetConcurrency: input.targetConcurrency ?? null,
      },
    });
  }

  variants(pipelineId: string) {
    return this.prisma.variant.findMany({ where: { pipelineId }, orderBy: { createdAt: 'asc' } });
  }
}
