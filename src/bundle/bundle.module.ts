// Pipeline bundles: a pipeline variant as a container build context (Dockerfile, serve.sh, runtime config, compose file,
// Kubernetes manifests) for the Custom GPU target. The generator (./bundle.ts) is pure; the CLI is src/cli/bundle.ts.
import { Module } from '@nestjs/common';
import { BundleResolver } from './bundle.resolver';
import { BundleService } from './bundle.service';

@Module({ providers: [BundleService, BundleResolver] })
export class BundleModule {}
