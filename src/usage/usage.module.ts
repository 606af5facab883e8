// Usage: the GraphQL report over the per-minute rollups. The rollups themselves are written on the data
// path, by recorder.ts (requests, tokens, latency) and capacity.ts (warm replica time), priced by prices.ts.
import { Module } from '@nestjs/common';
import { UsageResolver } from './usage.resolver';
import { UsageService } from './usage.service';

@Module({ providers: [UsageService, UsageResolver] })
export class UsageModule {}
