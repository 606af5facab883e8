import { Inject, Injectable } from '@nestjs/common';
import { PRISMA } from '../common/core.module';
import type { PrismaClient } from '../database/prisma';
import { notFound } from '../domain/errors';
import { BundleFile, pipelineBundle } from './bundle';

/** The bundle of a pipeline variant the workspace owns; another workspace's pipeline or variant is NOT_FOUND. */
export async function bundleOf(prisma: PrismaClient, workspaceId: string | null, pipelineId: string, variantId?: string | null) {
  const pipeline = await prisma.pipeline.findFirst({ where: { id: pipelineId, ...(workspaceId ? { workspaceId } : {}) } });
  if (!pipeline) throw notFound('pipeline', pipelineId);
  const id = variantId ?? pipeline.selectedVariantId;
  const variant = id ? await prisma.variant.findFirst({ where: { id, pipelineId: pipeline.id } }) : null;
  if (!variant) throw notFound('variant', id ?? '(none selected)');
  const files: BundleFile[] = pipelineBundle(pipeline, {
    ...variant,
    engineConfig: (variant.engineConfig as Record<string, unknown> | null) ?? null,
  });
  return { pipeline, variant, files };
}

@Injectable()
export class BundleService {
  constructor(@Inject(PRISMA) private readonly prisma: PrismaClient) {}

  async files(workspaceId: string, pipelineId: string, variantId?: string | null): Promise<BundleFile[]> {
    return (await bundleOf(this.prisma, workspaceId, pipelineId, variantId)).files;
  }
}
