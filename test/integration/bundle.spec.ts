import { ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { pipelineBundle } from '../../src/bundle/bundle';
import { writeBundle } from '../../src/bundle/write';
import { freePort } from '../../src/common/net';
import { eventually } from '../support/wait';

// The bundle's serve.sh, run for real: with SERVE_COMMAND our replica simulator stands in for vLLM and answers the
// OpenAI routes; without it, the engine command line it builds from runtime.json is what a stub `vllm` on PATH sees.
const root = resolve(__dirname, '../..');
const simulator = resolve(root, 'dist/src/simulator/main.js');

const pipeline = { id: 'pl_bundle1', name: 'chat-bot', task: 'CHAT' as const, model: 'sim/bundle-chat' };
const variant = {
  id: 'var_bundle1',
  name: 'default',
  gpu: 'L40S',
  engine: 'vllm',
  quantization: null,
  engineConfig: { maxModelLen: 4096, enablePrefixCaching: true },
  maxConcurrency: 8,
  targetConcurrency: null,
};

describe('pipeline bundle on disk', () => {
  let dir: string;
  let child: ChildProcess | null = null;
  let output = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bundle-'));
    await writeBundle(dir, pipelineBundle(pipeline, variant));
  });
  afterEach(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    child = null;
    output = '';
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const serve = (env: Record<string, string>) => {
    child = spawn('bash', ['serve.sh'], { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (output += b.toString()));
    return child;
  };

  it('should write serve.sh executable', async () => {
    expect((await stat(join(dir, 'serve.sh'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(dir, 'runtime.json'))).mode & 0o777).toBe(0o644);
  });

  it('should boot the simulator through SERVE_COMMAND and answer /health and chat completions, behind API_KEY', async () => {
    const port = await freePort();
    const apiKey = 'box-key-for-the-bundle-test';
    serve({
      PORT: String(port),
      API_KEY: apiKey,
      SERVE_COMMAND: `${process.execPath} ${simulator} --host 127.0.0.1 --port $PORT --model $MODEL --max-concurrency $MAX_CONCURRENCY --cold-start-ms 50 --warm-start-ms 50 --cache-dir ${dir}/.weights`,
    });
    const base = `http://127.0.0.1:${port}`;
    await eventually(async () => {
      const res = await request(`${base}/health`);
      await res.body.dump();
      return res.statusCode === 200;
    }, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\nserve.sh said:\n${output}`);
    });
    const chat = (auth: string | null) =>
      request(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
        body: JSON.stringify({ model: 'sim/bundle-chat', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] }),
      });
    const denied = await chat(null);
    await denied.body.dump();
    expect(denied.statusCode).toBe(401);
    const res = await chat(`Bearer ${apiKey}`);
    const body = (await res.body.json()) as { model: string; choices: Array<{ message: { content: string } }> };
    expect(res.statusCode).toBe(200);
    expect(body.model).toBe('sim/bundle-chat');
    expect(body.choices[0].message.content.length).toBeGreaterThan(0);
    const models = await request(`${base}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(((await models.body.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id)).toEqual(['sim/bundle-chat']);
  });

  it("should exec the engine with the runtime config's arguments, the host, the port and the key", async () => {
    const bin = await mkdtemp(join(tmpdir(), 'bundle-bin-'));
    const seen = join(bin, 'argv');
    // A stub vllm: records its arguments, one a line, and exits.
    await writeFile(join(bin, 'vllm'), `#!/usr/bin/env bash\nprintf '%s\\n' "$@" > ${seen}\n`);
    await chmod(join(bin, 'vllm'), 0o755);
    const c = serve({ PATH: `${bin}:${process.env.PATH}`, PORT: '8123', API_KEY: 'k-123' });
    const code = await new Promise((r) => c.once('exit', r));
    expect(`${code} ${output}`).toMatch(/^0 /);
    expect((await readFile(seen, 'utf8')).trim().split('\n')).toEqual([
      'serve',
      'sim/bundle-chat',
      '--max-num-seqs',
      '8',
      '--enable-prefix-caching',
      '--max-model-len',
      '4096',
      '--host',
      '0.0.0.0',
      '--port',
      '8123',
      '--api-key',
      'k-123',
    ]);
    await rm(bin, { recursive: true, force: true });
  });

  it('should refuse to start without its runtime config, saying which file', async () => {
    const c = serve({ RUNTIME_CONFIG: join(dir, 'missing.json') });
    const code = await new Promise((r) => c.once('exit', r));
    expect(code).toBe(2);
    expect(output).toContain(`cannot read the runtime config ${join(dir, 'missing.json')}`);
  });
});
