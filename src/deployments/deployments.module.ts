// Deployments: deploying a pipeline's variant (rows, the one-operation lock, the inactive deployment key,
// then the deploy workflow), and reading a deployment with its replicas, events and operations.
import { Module } from '@nestjs/common';
import { DeploymentsResolver } from './deployments.resolver';
import { DeploymentsService } from './deployments.service';

@Module({ providers: [DeploymentsService, DeploymentsResolver], exports: [DeploymentsService] })
export class DeploymentsModule {}
