// The Custom GPU bundle (../shared/reference/deployment-targets.txt, providers-api.md §3.3 and §3.6): a container build
// context of one pipeline variant that the user builds and runs on their own GPUs. Pure: pipeline and variant in, files
// out. serve.sh reads runtime.json, so what the engine runs with is in one file the user can read and change.
import { stringify } from 'yaml';
import { DomainError, ErrorCode } from '../domain/errors';
import { targetConcurrency } from '../domain/plans';
import type { Task } from '../domain/targets';

/** The vLLM OpenAI server image the bundle builds on, pinned (a tag, never latest). */
export const VLLM_IMAGE = 'vllm/vllm-openai:v0.11.0';

/** The port the server listens on in the container. */
export const SERVE_PORT = 8000;

/** The engines a bundle can be made for. */
export const BUNDLE_ENGINES = ['vllm'] as const;

export interface BundlePipeline {
  id: string;
  name: string;
  task: Task;
  /** The Hugging Face model id (or a path the engine loads). */
  model: string;
}

export interface BundleVariant {
  id: string;
  name: string;
  gpu: string;
  engine: string;
  quantization: string | null;
  engineConfig: Record<string, unknown> | null;
  maxConcurrency: number;
  targetConcurrency: number | null;
}

export interface BundleFile {
  path: string;
  content: string;
  /** Unix permission bits: 0o755 for serve.sh, 0o644 otherwise. */
  mode: number;
}

/** What runtime.json holds: everything serve.sh needs to boot the server. */
export interface RuntimeConfig {
  schemaVersion: 1;
  pipeline: { id: string; name: string };
  model: string;
  task: Task;
  variant: { id: string; name: string; gpu: string; quantization: string | null };
  engine: {
    name: string;
    /** The variant's engine settings as stored (engineConfig). */
    settings: Record<string, unknown>;
    /** The engine's command and its arguments, derived from the settings; serve.sh adds host, port and the key. */
    command: string[];
    args: string[];
  };
  maxConcurrency: number;
  targetConcurrency: number;
  gpusPerReplica: number;
  port: number;
  healthPath: '/health';
}

/** Flags serve.sh or the bundle set themselves; an engineConfig key naming one is refused. */
const RESERVED_FLAGS = new Set(['host', 'port', 'api-key', 'max-num-seqs', 'model']);

/** vLLM's --quantization methods a variant's quantization maps onto ("awq-int4" -> awq); others are not passed. */
const VLLM_QUANTIZATION = new Set([
  'fp8',
  'awq',
  'gptq',
  'bitsandbytes',
  'awq_marlin',
  'gptq_marlin',
  'compressed-tensors',
  'gguf',
  'modelopt',
]);

const kebab = (k: string) =>
  k
    .replace(/_/g, '-')
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase();

const bad = (field: string, message: string) => new DomainError(ErrorCode.BAD_USER_INPUT, `${field}: ${message}`, { field });

/** The variant's engineConfig as vLLM flags: true -> --flag, false and null omitted, objects as JSON, arrays as repeated values. */
export function engineArgs(settings: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(settings).sort(([a], [b]) => a.localeCompare(b))) {
    const flag = kebab(key);
    if (!/^[a-z0-9][a-z0-9-]*$/.test(flag)) throw bad('engineConfig', `key ${JSON.stringify(key)} is not an engine flag name`);
    if (RESERVED_FLAGS.has(flag)) {
      throw bad('engineConfig', `${key} is set by the bundle itself (host, port, api-key, max-num-seqs from maxConcurrency, model)`);
    }
    if (value === null || value === false || value === undefined) continue;
    if (value === true) out.push(`--${flag}`);
    else if (Array.isArray(value)) out.push(`--${flag}`, ...value.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))));
    else if (typeof value === 'object') out.push(`--${flag}`, JSON.stringify(value));
    else out.push(`--${flag}`, String(value));
  }
  return out;
}

/** vLLM's --quantization for a variant's quantization ("awq-int4" -> awq), unless its settings name one themselves. */
export function quantizationArgs(quantization: string | null, settings: Record<string, unknown>): string[] {
  const method = quantization?.toLowerCase().split('-')[0] ?? null;
  const setsQuantization = Object.keys(settings).some((k) => kebab(k) === 'quantization');
  return method && VLLM_QUANTIZATION.has(method) && !setsQuantization ? ['--quantization', method] : [];
}

/** GPUs one replica needs: the tensor-parallel size when the variant sets one, else 1. */
export function gpusPerReplica(settings: Record<string, unknown>): number {
  const tp = settings.tensorParallelSize ?? settings.tensor_parallel_size ?? settings['tensor-parallel-size'];
  const n = typeof tp === 'number' ? tp : typeof tp === 'string' ? Number(tp) : 1;
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw bad('engineConfig', `tensorParallelSize ${String(tp)} must be a whole number of GPUs, 1-64`);
  return n;
}

export function runtimeConfig(pipeline: BundlePipeline, variant: BundleVariant): RuntimeConfig {
  if (!(BUNDLE_ENGINES as readonly string[]).includes(variant.engine)) {
    throw bad('variantId', `variant ${variant.name} runs engine ${variant.engine}; a bundle can be made for ${BUNDLE_ENGINES.join(', ')}`);
  }
  if (pipeline.task === 'IMAGE') throw bad('pipelineId', `pipeline ${pipeline.name} generates images, which vLLM does not serve`);
  const settings = variant.engineConfig ?? {};
  const args = [pipeline.model, '--max-num-seqs', String(variant.maxConcurrency)];
  if (pipeline.task === 'EMBEDDINGS') args.push('--runner', 'pooling');
  args.push(...quantizationArgs(variant.quantization, settings), ...engineArgs(settings));
  return {
    schemaVersion: 1,
    pipeline: { id: pipeline.id, name: pipeline.name },
    model: pipeline.model,
    task: pipeline.task,
    variant: { id: variant.id, name: variant.name, gpu: variant.gpu, quantization: variant.quantization },
    engine: { name: variant.engine, settings, command: ['vllm', 'serve'], args },
    maxConcurrency: variant.maxConcurrency,
    targetConcurrency: targetConcurrency(pipeline.task, variant.maxConcurrency, variant.targetConcurrency),
    gpusPerReplica: gpusPerReplica(settings),
    port: SERVE_PORT,
    healthPath: '/health',
  };
}

/** A DNS-1123 label from the pipeline and variant names (Kubernetes object names, the compose project). */
export function bundleName(pipeline: BundlePipeline, variant: BundleVariant): string {
  const clean = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '');
  const name = `${clean(pipeline.name) || 'pipeline'}-${clean(variant.name) || 'variant'}`.slice(0, 63).replace(/-+$/, '');
  return /^[a-z]/.test(name) ? name : `p-${name}`.slice(0, 63);
}

const SERVE_SH = `#!/usr/bin/env bash
# Boots the pipeline's OpenAI-compatible server from runtime.json (the engine, its arguments, the model).
#   PORT           port to listen on (default 8000)
#   HOST           interface to listen on (default 0.0.0.0)
#   API_KEY        when set, /v1/* requires "Authorization: Bearer $API_KEY" (vLLM's --api-key)
#   RUNTIME_CONFIG the runtime config to read (default: runtime.json beside this script)
#   SERVE_COMMAND  replaces the engine command (a stand-in server; it sees PORT, HOST, MODEL, MAX_CONCURRENCY, and
#                  gets --api-key "$API_KEY" appended when API_KEY is set)
set -euo pipefail
here="$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
RUNTIME_CONFIG="\${RUNTIME_CONFIG:-$here/runtime.json}"
if [ ! -r "$RUNTIME_CONFIG" ]; then
  echo "serve.sh: cannot read the runtime config $RUNTIME_CONFIG" >&2
  exit 2
fi
# One value, or (with "argv") the engine's command line, NUL-separated, from the runtime config.
runtime() {
  python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
if sys.argv[2] == "argv":
    sys.stdout.write("".join(a + "\\0" for a in c["engine"]["command"] + c["engine"]["args"]))
else:
    sys.stdout.write(str(c[sys.argv[2]]))
' "$RUNTIME_CONFIG" "$1"
}
export PORT="\${PORT:-8000}"
export HOST="\${HOST:-0.0.0.0}"
MODEL="$(runtime model)"
MAX_CONCURRENCY="$(runtime maxConcurrency)"
export MODEL MAX_CONCURRENCY
auth=()
if [ -n "\${API_KEY:-}" ]; then auth=(--api-key "$API_KEY"); fi
if [ -n "\${SERVE_COMMAND:-}" ]; then
  echo "serve.sh: $MODEL on $HOST:$PORT with SERVE_COMMAND in place of the engine" >&2
  exec bash -c "exec $SERVE_COMMAND \\"\\$@\\"" serve.sh "\${auth[@]}"
fi
mapfile -d '' engine < <(runtime argv)
if [ "\${#engine[@]}" -eq 0 ]; then
  echo "serve.sh: $RUNTIME_CONFIG names no engine command" >&2
  exit 2
fi
echo "serve.sh: $MODEL on $HOST:$PORT: \${engine[*]}" >&2
exec "\${engine[@]}" --host "$HOST" --port "$PORT" "\${auth[@]}"
`;

/** The healthcheck command, in Python (the vLLM image has python3; curl is not promised). */
const healthCommand = (port: number | string) =>
  `import urllib.request; urllib.request.urlopen("http://127.0.0.1:${port}/health", timeout=5)`;

function dockerfile(rt: RuntimeConfig): string {
  return `# syntax=docker/dockerfile:1
# ${rt.pipeline.name} (${rt.pipeline.id}), variant ${rt.variant.name} (${rt.variant.id}): ${rt.model} on vLLM.
# Build: docker build -t <registry>/${rt.pipeline.name}:${rt.variant.name} .   Run: docker compose up (see docker-compose.yaml)
FROM ${VLLM_IMAGE}
WORKDIR /opt/pipeline
COPY runtime.json artifacts.json ./
COPY --chmod=0755 serve.sh ./
# Model weights download here on first start; mount a volume to keep them.
ENV PORT=${rt.port} HOST=0.0.0.0 HF_HOME=/models
EXPOSE ${rt.port}
HEALTHCHECK --interval=10s --timeout=5s --start-period=1800s --retries=3 CMD ["python3", "-c", ${JSON.stringify(healthCommand(rt.port))}]
ENTRYPOINT ["/opt/pipeline/serve.sh"]
`;
}

function artifacts(rt: RuntimeConfig) {
  return {
    schemaVersion: 1,
    model: {
      source: 'huggingface',
      id: rt.model,
      url: `https://huggingface.co/${rt.model}`,
      // vLLM downloads it on first start into HF_HOME; a gated model needs HF_TOKEN in the environment.
      cache: '/models',
    },
    variant: { id: rt.variant.id, name: rt.variant.name, quantization: rt.variant.quantization },
  };
}

function compose(name: string, rt: RuntimeConfig) {
  return {
    name,
    services: {
      server: {
        build: { context: '.' },
        image: `infercp/${name}:latest`,
        ports: [`\${PORT:-${rt.port}}:${rt.port}`],
        environment: { PORT: String(rt.port), API_KEY: '${API_KEY:-}', HF_TOKEN: '${HF_TOKEN:-}' },
        // vLLM needs shared memory between its workers.
        ipc: 'host',
        volumes: ['models:/models'],
        deploy: { resources: { reservations: { devices: [{ driver: 'nvidia', count: rt.gpusPerReplica, capabilities: ['gpu'] }] } } },
        healthcheck: {
          test: ['CMD', 'python3', '-c', healthCommand(rt.port)],
          interval: '10s',
          timeout: '5s',
          retries: 3,
          // Downloading and loading the weights can take many minutes.
          start_period: '1800s',
        },
        restart: 'unless-stopped',
      },
    },
    volumes: { models: {} },
  };
}

function k8sLabels(rt: RuntimeConfig, name: string) {
  return {
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/managed-by': 'infer-control-plane',
    'infercp.dev/pipeline': rt.pipeline.id,
    'infercp.dev/variant': rt.variant.id,
  };
}

/**
 * What the Kubernetes adapter (src/providers/kubernetes) sets beyond the bundle's defaults, so that the bundle and the
 * adapter apply manifests from one builder.
 */
export interface K8sManifestOptions {
  /** The container image; the bundle's is the image the user builds from its Dockerfile. */
  image?: string;
  /** The container's command and args instead of the image's entrypoint (serve.sh). */
  command?: string[];
  args?: string[];
  replicas?: number;
  /** Extra labels on every object and pod (the adapter's ownership labels). */
  labels?: Record<string, string>;
  /** The Secret whose `api-key` the server requires as its key, and whether it must exist. */
  apiKeySecret?: { name: string; optional: boolean };
  serviceType?: 'ClusterIP' | 'LoadBalancer';
}

/** The Deployment and Service of one variant (the bundle's k8s/ files, and what the Kubernetes adapter applies). */
export function k8sManifests(pipeline: BundlePipeline, variant: BundleVariant, name: string, o: K8sManifestOptions = {}) {
  const rt = runtimeConfig(pipeline, variant);
  return { runtime: rt, deployment: deployment(name, rt, o), service: service(name, rt, o) };
}

function deployment(name: string, rt: RuntimeConfig, o: K8sManifestOptions = {}) {
  const selector = { 'app.kubernetes.io/name': name, 'infercp.dev/pipeline': rt.pipeline.id };
  const labels = { ...k8sLabels(rt, name), ...o.labels };
  const secret = o.apiKeySecret ?? { name: `${name}-api-key`, optional: true };
  const probe = (periodSeconds: number, failureThreshold: number) => ({
    httpGet: { path: rt.healthPath, port: 'http' },
    periodSeconds,
    failureThreshold,
  });
  const gpus = String(rt.gpusPerReplica);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels },
    spec: {
      replicas: o.replicas ?? 1,
      revisionHistoryLimit: 3,
      // Model download and load.
      progressDeadlineSeconds: 1800,
      // A surge needs a spare GPU; none is assumed.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      selector: { matchLabels: selector },
      template: {
        metadata: { labels },
        spec: {
          // In-flight streams drain before the pod goes.
          terminationGracePeriodSeconds: 60,
          tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
          containers: [
            {
              name: 'server',
              // Build this bundle's Dockerfile and push it where the cluster pulls from, then set the image here.
              image: o.image ?? `infercp/${name}:latest`,
              ...(o.command ? { command: o.command } : {}),
              ...(o.args ? { args: o.args } : {}),
              env: [
                { name: 'PORT', value: String(rt.port) },
                { name: 'API_KEY', valueFrom: { secretKeyRef: { name: secret.name, key: 'api-key', optional: secret.optional } } },
                { name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: `${name}-hf-token`, key: 'token', optional: true } } },
              ],
              ports: [{ name: 'http', containerPort: rt.port }],
              // GPUs go in limits only (requests default to them); whole GPUs, no sharing.
              resources: { limits: { 'nvidia.com/gpu': gpus } },
              // Up to 30 minutes to download and load the weights before readiness and liveness count.
              startupProbe: probe(10, 180),
              readinessProbe: probe(5, 3),
              livenessProbe: probe(15, 4),
              volumeMounts: [
                { name: 'shm', mountPath: '/dev/shm' },
                { name: 'models', mountPath: '/models' },
              ],
            },
          ],
          volumes: [
            { name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '16Gi' } },
            { name: 'models', emptyDir: {} },
          ],
        },
      },
    },
  };
}

function service(name: string, rt: RuntimeConfig, o: K8sManifestOptions = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, labels: { ...k8sLabels(rt, name), ...o.labels } },
    spec: {
      type: o.serviceType ?? 'ClusterIP',
      selector: { 'app.kubernetes.io/name': name, 'infercp.dev/pipeline': rt.pipeline.id },
      ports: [{ name: 'http', port: 80, targetPort: 'http' }],
    },
  };
}

const yamlOf = (header: string, doc: unknown) => `# ${header}\n${stringify(doc, { lineWidth: 0 })}`;

/**
 * The bundle's files, in a stable order. Throws BAD_USER_INPUT when the variant cannot be bundled (an engine other
 * than vLLM, an image pipeline, an engineConfig key the bundle sets itself).
 */
export function pipelineBundle(pipeline: BundlePipeline, variant: BundleVariant): BundleFile[] {
  const rt = runtimeConfig(pipeline, variant);
  const name = bundleName(pipeline, variant);
  const about = `${pipeline.name} (${pipeline.id}), variant ${variant.name} (${variant.id})`;
  return [
    { path: 'Dockerfile', content: dockerfile(rt), mode: 0o644 },
    { path: 'serve.sh', content: SERVE_SH, mode: 0o755 },
    { path: 'runtime.json', content: `${JSON.stringify(rt, null, 2)}\n`, mode: 0o644 },
    { path: 'artifacts.json', content: `${JSON.stringify(artifacts(rt), null, 2)}\n`, mode: 0o644 },
    {
      path: 'docker-compose.yaml',
      content: yamlOf(`${about}: docker compose up, then GET http://localhost:${rt.port}/health`, compose(name, rt)),
      mode: 0o644,
    },
    { path: 'k8s/deployment.yaml', content: yamlOf(`${about}: kubectl apply -f k8s/`, deployment(name, rt)), mode: 0o644 },
    { path: 'k8s/service.yaml', content: yamlOf(`${about}: the Service in front of the pods`, service(name, rt)), mode: 0o644 },
  ];
}
