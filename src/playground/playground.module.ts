// Playground: prompts from the console to a deployment through the gateway, streamed back with tokens and timings
// (POST /playground/chat, registered in app.ts), and the Starter quota (GraphQL playgroundQuota).
import { Module } from '@nestjs/common';
import { DeploymentsModule } from '../deployments/deployments.module';
import { PipelinesModule } from '../pipelines/pipelines.module';
import { PlaygroundResolver } from './playground.resolver';
import { PlaygroundService } from './playground.service';

@Module({ imports: [DeploymentsModule, PipelinesModule], providers: [PlaygroundService, PlaygroundResolver], exports: [PlaygroundService] })
export class PlaygroundModule {}
