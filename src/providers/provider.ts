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
  /** The revision (variant x GPU) the replica serves; null for a deployment from before revisions. */
  revisionId: string | null;
  /** The variant's engine settings: a real engine gets them as flags, the simulator models them (src/simulator/engine.ts). */
  engine?: { quantization: string | null; settings: Record<string, unknown> };
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

/**
 * What a target can do (../shared/reference/providers-api.md §5). The scaler decides the replica count for every
 * target; these say how the adapter can apply it and what the gateway can route to.
 */
export interface ProviderCapabilities {
  /** Each replica has its own URL (local processes, Modal sandboxes); false: one pool URL in front of N workers (RunPod, a Kubernetes Service). */
  perReplicaUrls: boolean;
  /** The provider runs exactly the count asked for; false: it takes bounds and runs its own scaler inside them. */
  exactReplicaControl: boolean;
  /** Longest a replica may live before the provider ends it (Modal: 24 h); null: no limit. */
  maxReplicaLifetimeSeconds: number | null;
  /** A deployment can sit at zero replicas and start one on the first request. */
  coldStartFromZero: boolean;
}

/**
 * One adapter per target. The activities size a deployment in replicas, one row each; a per-replica provider runs
 * a process or sandbox per row, a pool provider (src/providers/pool.ts) holds its pool's worker count to the rows.
 */
export interface ProviderAdapter {
  readonly target: Target;
  readonly capabilities: ProviderCapabilities;
  /** Starts the replica unless it is already running; returns its handle either way. */
  ensureReplica(spec: ReplicaSpec): Promise<ReplicaHandle>;
  /** Whether the replica serves traffic yet, or has died. */
  health(handle: ReplicaHandle): Promise<ReplicaHealth>;
  /** Why a replica is not serving yet, when the provider can tell (no GPU capacity, failing health checks); for reasons. */
  healthDetail?(handle: ReplicaHandle): Promise<string | null>;
  /** Stops and forgets the replica; a no-op when it is already gone. */
  stopReplica(replicaId: string): Promise<void>;
  /** Requests the replica is serving now, when the server tells (for drains); null when unknown. */
  inFlight?(handle: ReplicaHandle): Promise<number | null>;
  /**
   * Frees what a revision (or, with null, every revision of the deployment) holds beyond its replicas, once it will
   * not serve again: a pool provider deletes the pool. The replicas are stopped already.
   */
  release?(deploymentId: string, revisionId: string | null): Promise<void>;
  /** What this provider has running now, for reconciliation after a restart. */
  listReplicas(): Promise<ReplicaHandle[]>;
  /**
   * The replica's last `tail` log lines (its server's stdout and stderr), oldest first, when the provider keeps them; null
   * when it knows no log of that replica.
   */
  logs?(replicaId: string, tail: number): Promise<string[] | null>;
  /** Stops the adapter's own background work (a drift check) at worker shutdown. */
  close?(): void;
}

/** The adapters a worker runs, by target; a target absent here is refused by the deploy's plan check. */
export type Providers = Partial<Record<Target, ProviderAdapter>>;

/** What a provider may build on besides its config: the worker's database (pool providers size from its rows). */
export interface ProviderDeps {
  prisma: PrismaClient;
  log: Logger;
}

/** What a provider folder hands the registry. */
export interface ProviderModule {
  target: Target;
  /** The adapter from config, or null when this worker is not configured for the target. */
  create(config: Config, deps: ProviderDeps): ProviderAdapter | null;
  /** Called once at worker start: adopt, reap or mark lost what runs on the provider. */
  reconcile?(prisma: PrismaClient, adapter: ProviderAdapter, log: Logger): Promise<unknown>;
}
