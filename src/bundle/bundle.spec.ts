import { parse } from 'yaml';
import { DomainError } from '../domain/errors';
import { BundlePipeline, BundleVariant, engineArgs, pipelineBundle, RuntimeConfig, VLLM_IMAGE } from './bundle';

const pipeline: BundlePipeline = { id: 'pl_abc123', name: 'Support_Bot', task: 'CHAT', model: 'Qwen/Qwen2.5-7B-Instruct' };
const variant: BundleVariant = {
  id: 'var_xyz789',
  name: 'h100-fp8',
  gpu: 'H100',
  engine: 'vllm',
  quantization: 'fp8',
  engineConfig: { maxModelLen: 8192, enablePrefixCaching: true, gpu_memory_utilization: 0.9, enforceEager: false },
  maxConcurrency: 48,
  targetConcurrency: 20,
};

const filesOf = (p = pipeline, v = variant) => new Map(pipelineBundle(p, v).map((f) => [f.path, f]));
const fileOf = (path: string, p = pipeline, v = variant) => {
  const f = filesOf(p, v).get(path);
  if (!f) throw new Error(`no ${path} in the bundle`);
  return f;
};
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const yamlOf = (path: string, p = pipeline, v = variant): any => parse(fileOf(path, p, v).content);

describe('pipelineBundle', () => {
  it('should contain the build context, the runtime config, the compose file and the manifests, serve.sh executable', () => {
    const files = pipelineBundle(pipeline, variant);
    expect(files.map((f) => f.path)).toEqual([
      'Dockerfile',
      'serve.sh',
      'runtime.json',
      'artifacts.json',
      'docker-compose.yaml',
      'k8s/deployment.yaml',
      'k8s/service.yaml',
    ]);
    expect(files.find((f) => f.path === 'serve.sh')!.mode).toBe(0o755);
    expect(files.filter((f) => f.path !== 'serve.sh').every((f) => f.mode === 0o644)).toBe(true);
  });

  it('should build on the pinned vLLM image and boot serve.sh with the runtime config in the image', () => {
    const df = fileOf('Dockerfile').content;
    expect(df).toMatch(new RegExp(`^FROM ${VLLM_IMAGE.replace(/[.]/g, '\\.')}$`, 'm'));
    expect(VLLM_IMAGE).toMatch(/^vllm\/vllm-openai:v\d+\.\d+\.\d+$/);
    expect(df).toMatch(/^COPY runtime\.json artifacts\.json \.\/$/m);
    expect(df).toMatch(/^COPY --chmod=0755 serve\.sh \.\/$/m);
    expect(df).toMatch(/^ENTRYPOINT \["\/opt\/pipeline\/serve\.sh"\]$/m);
    expect(df).toMatch(/^HEALTHCHECK .*\/health/m);
  });

  it("should put the variant's engine settings into runtime.json as vLLM arguments", () => {
    const rt = JSON.parse(fileOf('runtime.json').content) as RuntimeConfig;
    expect(rt).toMatchObject({
      model: 'Qwen/Qwen2.5-7B-Instruct',
      task: 'CHAT',
      variant: { id: 'var_xyz789', name: 'h100-fp8', gpu: 'H100', quantization: 'fp8' },
      engine: { name: 'vllm', settings: variant.engineConfig, command: ['vllm', 'serve'] },
      maxConcurrency: 48,
      targetConcurrency: 20,
      port: 8000,
    });
    expect(rt.engine.args).toEqual([
      'Qwen/Qwen2.5-7B-Instruct',
      '--max-num-seqs',
      '48',
      '--quantization',
      'fp8',
      '--enable-prefix-caching',
      '--gpu-memory-utilization',
      '0.9',
      '--max-model-len',
      '8192',
    ]);
    const art = JSON.parse(fileOf('artifacts.json').content);
    expect(art.model).toMatchObject({ source: 'huggingface', id: 'Qwen/Qwen2.5-7B-Instruct' });
  });

  it('should take the task default target concurrency when the variant measured none', () => {
    const rt = JSON.parse(fileOf('runtime.json', pipeline, { ...variant, targetConcurrency: null }).content) as RuntimeConfig;
    expect(rt.targetConcurrency).toBeGreaterThanOrEqual(1);
    expect(rt.targetConcurrency).toBeLessThanOrEqual(48);
  });

  it('should give a compose service with a build, a port, a /health healthcheck and the NVIDIA GPU reservation', () => {
    const c = yamlOf('docker-compose.yaml');
    expect(Object.keys(c.services)).toEqual(['server']);
    const s = c.services.server;
    expect(s.build).toEqual({ context: '.' });
    expect(typeof s.image).toBe('string');
    expect(s.ports).toHaveLength(1);
    expect(String(s.ports[0])).toMatch(/^\$\{PORT:-8000\}:8000$/);
    expect(s.deploy.resources.reservations.devices).toEqual([{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
    expect(s.healthcheck.test[0]).toBe('CMD');
    expect(s.healthcheck.test.join(' ')).toContain('http://127.0.0.1:8000/health');
    expect(s.healthcheck.start_period).toMatch(/^\d+s$/);
    expect(s.ipc).toBe('host');
    // Every named volume a service mounts is declared.
    for (const v of s.volumes as string[]) expect(c.volumes).toHaveProperty(v.split(':')[0]);
  });

  it('should reserve as many GPUs as the tensor-parallel size, in compose and in the GPU limit', () => {
    const v = { ...variant, engineConfig: { tensorParallelSize: 4 } };
    expect(yamlOf('docker-compose.yaml', pipeline, v).services.server.deploy.resources.reservations.devices[0].count).toBe(4);
    expect(yamlOf('k8s/deployment.yaml', pipeline, v).spec.template.spec.containers[0].resources.limits).toEqual({ 'nvidia.com/gpu': '4' });
  });

  it('should give a Deployment whose selector matches its pods, with the GPU limit, the port and the probes', () => {
    const d = yamlOf('k8s/deployment.yaml');
    expect(d.apiVersion).toBe('apps/v1');
    expect(d.kind).toBe('Deployment');
    expect(d.metadata.name).toMatch(/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/);
    const labels = d.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(d.spec.selector.matchLabels)) expect(labels[k]).toBe(v);
    const [c] = d.spec.template.spec.containers;
    expect(d.spec.template.spec.containers).toHaveLength(1);
    expect(c.ports).toEqual([{ name: 'http', containerPort: 8000 }]);
    // GPUs in limits only, a whole number as a string quantity.
    expect(c.resources.limits).toEqual({ 'nvidia.com/gpu': '1' });
    expect(c.resources.requests).toBeUndefined();
    for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe']) expect(c[p].httpGet).toEqual({ path: '/health', port: 'http' });
    // The startup probe allows a slow model load, far longer than readiness waits.
    expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(600);
    // Every mount has its volume.
    const vols = new Set(d.spec.template.spec.volumes.map((v: { name: string }) => v.name));
    for (const m of c.volumeMounts) expect(vols.has(m.name)).toBe(true);
    // Label values are valid Kubernetes label values.
    for (const v of Object.values(labels)) expect(v).toMatch(/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/);
  });

  it("should give a Service selecting the Deployment's pods on the named container port", () => {
    const d = yamlOf('k8s/deployment.yaml');
    const s = yamlOf('k8s/service.yaml');
    expect(s.apiVersion).toBe('v1');
    expect(s.kind).toBe('Service');
    expect(s.metadata.name).toBe(d.metadata.name);
    const podLabels = d.spec.template.metadata.labels;
    expect(Object.keys(s.spec.selector).length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(s.spec.selector)) expect(podLabels[k]).toBe(v);
    const portNames = d.spec.template.spec.containers[0].ports.map((p: { name: string }) => p.name);
    for (const p of s.spec.ports) expect(portNames).toContain(p.targetPort);
  });

  it('should refuse an engine it cannot bundle, an image pipeline and an engineConfig key the bundle sets, with BAD_USER_INPUT', () => {
    const refusal = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(DomainError);
        return (e as DomainError).code + ': ' + (e as DomainError).message;
      }
      throw new Error('not refused');
    };
    expect(refusal(() => pipelineBundle(pipeline, { ...variant, engine: 'sglang' }))).toMatch(/^BAD_USER_INPUT: variantId: .*sglang.*vllm/);
    expect(refusal(() => pipelineBundle({ ...pipeline, task: 'IMAGE' }, variant))).toMatch(/^BAD_USER_INPUT: pipelineId: /);
    expect(refusal(() => pipelineBundle(pipeline, { ...variant, engineConfig: { port: 9 } }))).toMatch(
      /^BAD_USER_INPUT: engineConfig: port/,
    );
    expect(refusal(() => pipelineBundle(pipeline, { ...variant, engineConfig: { tensorParallelSize: 0.5 } }))).toMatch(
      /^BAD_USER_INPUT: engineConfig: tensorParallelSize/,
    );
  });

  it('should turn settings into flags: objects as JSON, lists as values, false left out', () => {
    expect(engineArgs({ compilationConfig: { level: 3 }, allowedOrigins: ['a', 'b'], trustRemoteCode: false })).toEqual([
      '--allowed-origins',
      'a',
      'b',
      '--compilation-config',
      '{"level":3}',
    ]);
  });
});
