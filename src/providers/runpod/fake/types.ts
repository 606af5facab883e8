/** The stored endpoint as the v2 API returns it (schema `Endpoint`), narrowed to what the fake reads. */
export interface EndpointView {
  id: string;
  name: string;
  type: 'QUEUE' | 'LOAD_BALANCER';
  requestUrls: Record<string, string>;
  image: string;
  args: string;
  disk: number;
  ports: string[];
  env: Record<string, string>;
  registry: string | null;
  gpu?: { pools: string[]; excludedTypes?: string[]; count: number; allowedCudaVersions: string[]; minCudaVersion: string | null };
  cpu?: { id: string; vcpuCount: number; memory: number }[];
  workers: { min: number; max: number; idleTimeout: number };
  scaling: { type: 'QUEUE_DELAY'; queueDelay: number } | { type: 'REQUEST_COUNT'; requestCount: number };
  dataCenterIds: string[];
  networkVolumes: string[];
  timeout: number;
  flashboot: 'OFF' | 'FLASHBOOT' | 'PRIORITY_FLASHBOOT';
  createdAt: string;
}

export interface Release {
  id: string;
  version: number;
  source: 'MANUAL';
  buildId: null;
  createdByUserId: string;
  createdAt: string;
  diff: { field: string; old: unknown; new: unknown }[];
}

export interface StoredEndpoint {
  view: EndpointView;
  /** Account that owns it: another account's key sees 404. */
  owner: string;
  /** Release counter: container fields bump it (§1.3 PATCH semantics). */
  version: number;
  releases: Release[];
  /** Last runtime request, on the injected clock (idle scale-down, §1.5). */
  lastRequestAt: number;
  /** 0 none, 1 max lowered to ≤ 2 (3 days idle), 2 max set to 0 (7 days idle). */
  idleStage: 0 | 1 | 2;
}

export type WorkerStatus = 'INITIALIZING' | 'IDLE' | 'RUNNING' | 'THROTTLED' | 'UNHEALTHY';

export type FakeLog = (msg: string, fields?: Record<string, unknown>) => void;

export interface Faults {
  managementFailureRate: number;
  kinds: ('429' | '500' | '503' | 'timeout' | 'html403')[];
  seed: number;
  exhaustedPools: Set<string>;
  crashLoop: Set<string>;
}
