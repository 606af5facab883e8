import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { PrismaClient } from '../database/prisma';
import type { Target, Task } from '../domain/targets';

/**
 * One interface, one adapter per target. Every call is idempotent on replicaId:
 * a retried or replayed activity never provisions twice.
 */
export interface ReplicaSpec {
  replicaId: string;
  deploymentId: string;
  pipelineId: string;
  variantId: string;
  model: string;
  task: Task;
  gpu: string;
  maxConcurrency: number;
}

export interface ReplicaHandle {
  replicaId: string;
  deploymentId: string;
  /** Provider-side id (a pid for local, a worker id elsewhere). */
  providerId: string;
  /** Base URL of the OpenAI-compatible server (no trailing /v1). */
  address: string;
}

export type ReplicaHealth = 'starting' | 'ready' | 'gone';

export interface ProviderAdapter {
  readonly target: Target;
  /** Starts the replica unless it is already running; returns its handle either way. */
  ensureReplica(spec: ReplicaSpec): Promise<ReplicaHandle>;
  /** Whether the replica serves traffic yet, or has died. */
  health(handle: ReplicaHandle): Promise<ReplicaHealth>;
  /** Stops and forgets the replica; a no-op when it is already gone. */
  stopReplica(replicaId: string): Promise<void>;
  /** Requests the replica is serving now, when the server tells (for drains); null when unknown. */
  inFlight?(handle: ReplicaHandle): Promise<number | null>;
  /** What this provider has running now, for reconciliation after a restart. */
  listReplicas(): Promise<ReplicaHandle[]>;
}

/** The adapters a worker runs, by target; a target absent here is refused by the deploy's plan check. */
export type Providers = Partial<Record<Target, ProviderAdapter>>;

/** What a provider folder hands the registry. */
export interface ProviderModule {
  target: Target;
  /** The adapter from config, or null when this worker is not configured for the target. */
  create(config: Config): ProviderAdapter | null;
  /** Called once at worker start: adopt, reap or mark lost what runs on the provider. */
  reconcile?(prisma: PrismaClient, adapter: ProviderAdapter, log: Logger): Promise<unknown>;
}
