// Pipelines: a model for a task, and its variants (how it is served; every pipeline has a default one).
import { Module } from '@nestjs/common';
import { PipelinesResolver } from './pipelines.resolver';
import { PipelinesService } from './pipelines.service';

@Module({ providers: [PipelinesService, PipelinesResolver], exports: [PipelinesService] })
export class PipelinesModule {}
