import { accessSync, constants } from 'node:fs';
import { z } from 'zod';

/**
 * The one configuration schema, read at boot by the api, the worker and the
 * stack runner. Every key is an environment variable; a bad value stops boot
 * with a message naming the key, the value and the rule.
 */
const portRule = 'must be an integer from 0 to 65535';
const port = z.coerce.number({ error: portRule }).int(portRule).min(0, portRule).max(65535, portRule);
const positiveInt = z.coerce
  .number({ error: 'must be a positive integer' })
  .int('must be a positive integer')
  .positive('must be a positive integer');
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

export const configSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .default('postgresql://postgres@127.0.0.1:5432/infercp'),
  TEMPORAL_ADDRESS: z
    .string()
    .regex(/^[^\s:]+:\d+$/, 'must be host:port')
    .default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  /**
   * TLS to the Temporal frontend (a self-hosted cluster behind TLS, Temporal Cloud). On by itself when a client
   * certificate or an API key is given. CA: the server's root CA (PEM) when it is not a public one; CERT and KEY: a
   * client certificate pair (PEM) for mTLS; SERVER_NAME: the name to verify when it differs from the address's host.
   */
  TEMPORAL_TLS: bool.default(false),
  TEMPORAL_TLS_CA_FILE: z.string().default(''),
  TEMPORAL_TLS_CERT_FILE: z.string().default(''),
  TEMPORAL_TLS_KEY_FILE: z.string().default(''),
  TEMPORAL_TLS_SERVER_NAME: z.string().default(''),
  /** A Temporal Cloud API key, sent as a bearer token on every call (implies TLS). Never logged. */
  TEMPORAL_API_KEY: z.string().default(''),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('deployments'),
  /** Path of a prebuilt workflow bundle; empty means bundle from source at worker start. */
  TEMPORAL_WORKFLOW_BUNDLE: z.string().default(''),
  API_HOST: z.string().min(1).default('127.0.0.1'),
  API_PORT: port.default(8080),
  /** Base URL clients use to reach the gateway; deployment URLs are this plus /v1. */
  PUBLIC_BASE_URL: z.string().url().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Management token for the default workspace; generated when empty. */
  BOOTSTRAP_TOKEN: z
    .string()
    .regex(/^mt_[A-Za-z0-9_-]{16,}$/, 'must look like mt_ followed by at least 16 URL-safe characters')
    .optional(),
  /** 32 bytes, base64 or hex: key for AES-256-GCM encryption of provider credentials. */
  SECRETS_KEY: z
    .string()
    .refine((v) => decodeKey(v) !== null, 'must be 32 bytes as base64 or 64 hex characters')
    .optional(),
  DATA_DIR: z.string().min(1).default('.data'),
  /**
   * Command that starts one replica for the local provider. Placeholders:
   * {port} {model} {task} {variant} {weights} {cacheDir} {maxConcurrency} {replicaId} {gpu}.
   * Empty means the built-in simulator.
   */
  LOCAL_REPLICA_COMMAND: z.string().default(''),
  /** Interface local replicas listen on; 0.0.0.0 when the api runs on another host (docker compose). */
  LOCAL_REPLICA_HOST: z.string().min(1).default('127.0.0.1'),
  /** Host the gateway uses to reach local replicas; defaults to LOCAL_REPLICA_HOST. */
  LOCAL_REPLICA_ADVERTISE_HOST: z.string().min(1).optional(),
  /** Simulator knobs used by the default local replica command. */
  SIM_COLD_START_MS: z.coerce.number().int().min(0).default(4000),
  SIM_WARM_START_MS: z.coerce.number().int().min(0).default(600),
  SIM_TTFT_MS: z.coerce.number().min(0).default(40),
  SIM_ITL_MS: z.coerce.number().min(0).default(8),
  /** How much each additional running sequence slows every sequence of a simulated replica (0.01: 1 %). */
  SIM_SLOWDOWN_PER_SEQ: z.coerce.number().min(0).max(1).default(0.01),
  /** How long the deploy workflow waits for replicas to turn healthy before failing. */
  DEPLOY_HEALTH_TIMEOUT_SECONDS: positiveInt.default(300),
  /** Longest wait for a draining replica's requests to finish before it is stopped. */
  SCALER_DRAIN_TIMEOUT_SECONDS: positiveInt.default(300),
  /** How long before a provider ends a replica (Modal's Sandbox timeout) the scaler starts its replacement, seconds. */
  REPLICA_ROTATE_BEFORE_SECONDS: positiveInt.default(1800),
  /** Optimization runs: how long each concurrency level of a sweep runs, seconds. */
  OPTIMIZE_LEVEL_SECONDS: z.coerce.number().positive().max(3600).default(20),
  /** Optimization runs: the prompt and output length each measured request has, tokens (unless a run says otherwise). */
  OPTIMIZE_PROMPT_TOKENS: positiveInt.default(256),
  OPTIMIZE_OUTPUT_TOKENS: positiveInt.default(128),
  /** Optimization runs: arithmetic questions in the quality eval of a text-generation candidate (0: none). */
  OPTIMIZE_EVAL_QUESTIONS: z.coerce.number().int().min(0).max(1000).default(50),
  /** Draft model of the speculative-decoding candidate a run builds when the run names none. */
  OPTIMIZE_DRAFT_MODEL: z.string().min(1).default('sim/tiny-draft'),
  /** How often live traffic is compared with what the runs measured (a Temporal Schedule), and over what window, seconds. */
  OPTIMIZE_DRIFT_CHECK_SECONDS: positiveInt.default(300),
  /** The shortest interval a re-optimization schedule may have, seconds. */
  OPTIMIZE_SCHEDULE_MIN_SECONDS: positiveInt.default(300),
  OPTIMIZE_DRIFT_WINDOW_SECONDS: positiveInt.default(900),
  /** How long a gateway trusts a cached key or route before re-reading Postgres. */
  GATEWAY_CACHE_TTL_MS: positiveInt.default(5000),
  /**
   * While Postgres cannot be read, how long past GATEWAY_CACHE_TTL_MS a gateway keeps serving a cached key, route or
   * model name, ms; past it (and for anything never cached) requests get a 503 database_unavailable.
   */
  GATEWAY_STALE_SERVE_MS: z.coerce
    .number({ error: 'must be an integer >= 0' })
    .int('must be an integer >= 0')
    .min(0, 'must be an integer >= 0')
    .default(300_000),
  /** The longest one gateway read of Postgres may take before it counts as failed (then the cache or a 503), ms. */
  GATEWAY_DB_READ_TIMEOUT_MS: positiveInt.default(5000),
  /** A non-streamed request's whole time at the replica (its headers come with its body), ms. */
  GATEWAY_REQUEST_TIMEOUT_MS: positiveInt.default(600_000),
  /** A streamed request's time until the replica's first token, ms. */
  GATEWAY_TTFB_TIMEOUT_MS: positiveInt.default(120_000),
  /** Longest silence between two chunks of a response once it has begun, ms. */
  GATEWAY_IDLE_TIMEOUT_MS: positiveInt.default(60_000),
  /** Decode time per token assumed before a deployment has been measured, for the max_tokens check, ms. */
  GATEWAY_ASSUMED_MS_PER_TOKEN: z.coerce.number({ error: 'must be a positive number' }).positive('must be a positive number').default(20),
  /** How often each gateway process writes its usage rollups to Postgres, ms. */
  USAGE_FLUSH_INTERVAL_MS: positiveInt.default(1000),
  /** How often warm replica time is re-accounted into the capacity rollups, ms. */
  USAGE_CAPACITY_INTERVAL_MS: positiveInt.default(30_000),
  /** Prices (JSON or YAML, see README "Usage and cost"); empty means the built-in list prices. */
  PRICING_FILE: z.string().default(''),
  /** How long a request waits for headroom on busy replicas before a 503 with Retry-After, ms. */
  GATEWAY_QUEUE_TIMEOUT_MS: positiveInt.default(2000),
  /** How long a request that found no ready replica waits for one to start, ms. */
  GATEWAY_COLD_START_TIMEOUT_MS: positiveInt.default(60_000),
  /** At most one load report per deployment per gateway process per interval, ms. */
  GATEWAY_REPORT_INTERVAL_MS: positiveInt.default(1000),
  /** An unchanged load is reported again after this long; below the scaler's 5 s report TTL, ms. */
  GATEWAY_REPORT_HEARTBEAT_MS: positiveInt.max(4000, 'must be at most 4000 (the scaler forgets reports after 5000 ms)').default(2000),
  /** Redis shared by every gateway process for exact rate and concurrency limits; empty counts in each process. */
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
    .optional(),
  /**
   * The longest a gateway waits for Redis on one limit check, ms; past it (or with Redis unreachable) it counts in
   * its own process until Redis answers again.
   */
  REDIS_COMMAND_TIMEOUT_MS: positiveInt.default(500),
  /** How long a budget slot in Redis lasts unless its gateway renews it (every quarter of this): a dead gateway's slots are free again within it. */
  GATEWAY_SLOT_LEASE_MS: positiveInt.min(1000, 'must be at least 1000').default(10_000),
  /** A key's bucket holds this many seconds of its per-minute rate as a burst. */
  GATEWAY_RATE_BURST_SECONDS: positiveInt.max(60, 'must be at most 60').default(6),
  /**
   * Managed RunPod: the platform's own RunPod API key (never shown or logged). Empty: `npm start` runs the
   * embedded RunPod fake and points the URLs below at it.
   */
  RUNPOD_API_KEY: z.string().min(1).optional(),
  /** RunPod REST v2 management host (the adapter calls <url>/v2/serverless...). */
  RUNPOD_API_URL: z.string().url().default('https://api.runpod.io'),
  /** RunPod GraphQL endpoint, used only for the account identity of a key (myself { id }). */
  RUNPOD_GRAPHQL_URL: z.string().url().default('https://api.runpod.io/graphql'),
  /** RunPod serverless runtime host (jobs, /health, /openai/v1/*), a different host from the management API. */
  RUNPOD_RUNTIME_URL: z.string().url().default('https://api.runpod.ai'),
  /** Worker image of RunPod endpoints: the vLLM worker, pinned (rolling releases want versioned tags). */
  RUNPOD_WORKER_IMAGE: z.string().min(1).default('runpod/worker-v1-vllm:v2.11.0'),
  /**
   * Our RunPod endpoints are named <prefix>-<deployment>-<revision>; a worker deletes endpoints of this prefix that no
   * revision needs. Give each control plane that shares a RunPod account its own prefix.
   */
  RUNPOD_ENDPOINT_PREFIX: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,23}$/, 'must be 1-24 lowercase letters, digits or -, starting with a letter')
    .default('infercp'),
  /** Fewest ms between two worker-count PATCHes of one endpoint; changes in between are coalesced into one. */
  RUNPOD_MIN_PATCH_INTERVAL_MS: z.coerce.number().int().min(0).default(1000),
  /** How often the drift check compares every RunPod endpoint with what the scaler decided, ms. */
  RUNPOD_DRIFT_INTERVAL_MS: positiveInt.default(30_000),
  /**
   * Modal demo credentials (token ids ak-demo-…) reach the in-process fake of Modal's control plane, whose Sandboxes run
   * the replica simulator on this machine. `npm start` and the tests turn it on; production leaves it off, so every token
   * goes to Modal.
   */
  MODAL_FAKE: bool.default(false),
  /** The serving image of Modal Sandboxes (a registry tag; the command is `vllm serve <model> …`). */
  MODAL_IMAGE: z.string().min(1).default('vllm/vllm-openai:v0.11.0'),
  /** The Modal App our Sandboxes run in, in the credential's environment; give each control plane sharing an account its own. */
  MODAL_APP_NAME: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,63}$/, 'must be 1-63 letters, digits, dots, dashes or underscores')
    .default('infercp'),
  /** A Sandbox's timeout, s: Modal ends every Sandbox by 24 h; just under it, the rotation replaces a replica before. */
  MODAL_SANDBOX_TIMEOUT_SECONDS: positiveInt.max(86_400, 'must be at most 86400 (Modal caps Sandboxes at 24 h)').default(86_100),
  /** The serving image of Kubernetes pools (CUSTOM credentials with a kubeconfig); the container runs `vllm serve <model> …`. */
  KUBERNETES_IMAGE: z.string().min(1).default('vllm/vllm-openai:v0.11.0'),
  /** Fewest ms between two scale-subresource PATCHes of one Kubernetes Deployment; changes in between are coalesced. */
  KUBERNETES_MIN_SCALE_INTERVAL_MS: z.coerce.number().int().min(0).default(500),
  /** How long creating a Kubernetes pool waits for its LoadBalancer address before the activity retries, ms. */
  KUBERNETES_ADDRESS_TIMEOUT_MS: positiveInt.default(60_000),
  /** GPUs of the fake cluster `npm start` runs for the demo Kubernetes credential (pods past it stay Pending). */
  KUBERNETES_DEMO_GPUS: z.coerce.number().int().min(0).max(64).default(4),
  /**
   * The api port's HTTP server: a client must send a request's whole headers within API_HEADERS_TIMEOUT_MS (slowloris
   * and connections that never send are closed with a 408) and its whole body within API_REQUEST_TIMEOUT_MS (0: no
   * bound); neither bounds a response, so streams keep only GATEWAY_TTFB_TIMEOUT_MS and GATEWAY_IDLE_TIMEOUT_MS.
   */
  API_HEADERS_TIMEOUT_MS: positiveInt.default(20_000),
  API_REQUEST_TIMEOUT_MS: z.coerce
    .number({ error: 'must be an integer >= 0' })
    .int('must be an integer >= 0')
    .min(0, 'must be an integer >= 0')
    .default(300_000),
  /** How long an idle keep-alive connection is kept open between requests, ms. */
  API_KEEP_ALIVE_TIMEOUT_MS: positiveInt.default(72_000),
  /** Largest request head (request line and headers) accepted, bytes; past it a 431. */
  API_MAX_HEADER_BYTES: positiveInt.min(1024, 'must be at least 1024').max(1_048_576, 'must be at most 1048576').default(16_384),
  /** Most connections the api port holds open at once (new ones past it are closed at accept); 0: no cap but the fd limit. */
  API_MAX_CONNECTIONS: z.coerce
    .number({ error: 'must be an integer >= 0' })
    .int('must be an integer >= 0')
    .min(0, 'must be an integer >= 0')
    .default(0),
  METRICS_ENABLED: bool.default(true),
  /** How often each gateway process writes its per-minute load samples (console charts, Deployment.metrics), ms. */
  METRICS_FLUSH_INTERVAL_MS: positiveInt.default(5000),
  /** Load samples older than this many days are deleted. */
  METRICS_RETENTION_DAYS: positiveInt.max(3650, 'must be at most 3650').default(14),
  /** Temporal Web UI base the console links operations to. */
  TEMPORAL_UI_URL: z.string().url().default('http://127.0.0.1:8233'),
  /** Playground requests a Starter workspace may send per UTC day. */
  PLAYGROUND_STARTER_DAILY_REQUESTS: positiveInt.default(100),
  /** The platform's own workspace that owns the shared playground deployments (one control plane, one workspace). */
  PLAYGROUND_WORKSPACE_ID: z
    .string()
    .regex(/^ws_[A-Za-z0-9_-]{1,60}$/, 'must be ws_ followed by up to 60 letters, digits, _ or -')
    .default('ws_playground'),
  /** Where the shared playground deployments of Starter workspaces run (one per model, FLEX, 0 to 1 replica). */
  PLAYGROUND_TARGET: z.enum(['LOCAL', 'RUNPOD', 'MODAL', 'CUSTOM']).default('LOCAL'),
  PLAYGROUND_GPU: z.string().min(1).default('sim'),
  /** A shared playground deployment with no request for this long scales to zero (the next request pays a cold start). */
  PLAYGROUND_IDLE_TIMEOUT_SECONDS: positiveInt.default(300),
  /** Where the api writes the emitted GraphQL schema; empty keeps it in memory. */
  GRAPHQL_SCHEMA_FILE: z.string().default(''),
  /** Deepest selection a GraphQL document may nest. */
  GRAPHQL_MAX_DEPTH: positiveInt.max(100, 'must be at most 100').default(12),
  /** Most fields a GraphQL document may ask for, each alias and each list's fields counted. */
  GRAPHQL_MAX_COST: positiveInt.max(1_000_000, 'must be at most 1000000').default(1000),
});

export type Config = z.infer<typeof configSchema> & { PUBLIC_BASE_URL: string };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

export function decodeKey(v: string): Buffer | null {
  if (/^[0-9a-fA-F]{64}$/.test(v)) return Buffer.from(v, 'hex');
  const b = Buffer.from(v, 'base64');
  return b.length === 32 ? b : null;
}

/** The files the config names that cannot be used: each problem names its variable. */
function fileProblems(c: z.infer<typeof configSchema>): string[] {
  const out: string[] = [];
  if (Boolean(c.TEMPORAL_TLS_CERT_FILE) !== Boolean(c.TEMPORAL_TLS_KEY_FILE)) {
    const [set, unset] = c.TEMPORAL_TLS_CERT_FILE
      ? ['TEMPORAL_TLS_CERT_FILE', 'TEMPORAL_TLS_KEY_FILE']
      : ['TEMPORAL_TLS_KEY_FILE', 'TEMPORAL_TLS_CERT_FILE'];
    out.push(`${unset}: required with ${set} (a client certificate and its key go together)`);
  }
  for (const key of ['TEMPORAL_TLS_CA_FILE', 'TEMPORAL_TLS_CERT_FILE', 'TEMPORAL_TLS_KEY_FILE'] as const) {
    const path = c[key];
    if (!path) continue;
    try {
      accessSync(path, constants.R_OK);
    } catch (e) {
      out.push(`${key}=${JSON.stringify(path)}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  return out;
}

/** Parses the environment; throws ConfigError naming each bad key, its value and the rule. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string | undefined> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const v = env[key];
    // An empty variable means "unset" so that `FOO= npm start` falls back to the default.
    if (v !== undefined && v !== '') input[key] = v;
  }
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0]);
      const shown = /TOKEN|KEY|PASSWORD/.test(key) ? '<redacted>' : JSON.stringify(input[key]);
      return `${key}=${shown}: ${issue.message}`;
    });
    throw new ConfigError(problems);
  }
  const c = parsed.data;
  const problems = fileProblems(c);
  if (problems.length) throw new ConfigError(problems);
  return {
    ...c,
    PUBLIC_BASE_URL: c.PUBLIC_BASE_URL ?? `http://${c.API_HOST}:${c.API_PORT}`,
  };
}

/** For process entry points: the config, or exit 2 with the message naming what is wrong. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}

export const CONFIG = Symbol('CONFIG');
