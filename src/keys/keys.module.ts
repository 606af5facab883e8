// API keys for /v1: workspace, pipeline and deployment scopes, per-key rate limits, revocation.
// The deployment key a deploy creates is written by src/deployments and issued by the deploy workflow.
import { Module } from '@nestjs/common';
import { KeysResolver } from './keys.resolver';
import { KeysService } from './keys.service';

@Module({ providers: [KeysService, KeysResolver] })
export class KeysModule {}
