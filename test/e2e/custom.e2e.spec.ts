import { ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import OpenAI from 'openai';
import { parse } from 'yaml';
import { freePort } from '../../src/common/net';
import {
  CREATE_VARIANT,
  createPipeline,
  DELETE_DEPLOYMENT,
  deployAndWait,
  Gql,
  must,
  OperationResult,
  START_DEPLOYMENT,
  STOP_DEPLOYMENT,
} from '../support/graphql';
import { streamChat } from '../support/openai';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

const ADD = `mutation($input: AddProviderCredentialInput!) {
  addProviderCredential(input: $input) { id target name last4 accountId } }`;
const DEPLOY = `mutation($input: DeployPipelineInput!) { deployPipeline(input: $input) { deployment { id } } }`;
const BUNDLE = `query($p: ID!, $v: ID) { pipelineBundle(pipelineId: $p, variantId: $v) { path content mode } }`;

const simulator = resolve(__dirname, '../../dist/src/simulator/main.js');

/** A "bare box": a replica simulator the user runs, with its own key, as serve.sh would start it. */
async function startBox(apiKey: string) {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [simulator, '--port', String(port), '--model', 'sim/tiny-chat', '--api-key', apiKey, '--max-concurrency', '2'],
    { stdio: 'ignore', env: { ...process.env, SIM_COLD_START_MS: '0' } },
  );
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${url}/health`).catch(() => null))?.status === 200, 30_000);
  return { url, apiKey, child };
}

/**
 * Bare box mode of the CUSTOM target through GraphQL: the user runs two servers (simulators with --api-key), registers
 * their URLs and keys, deploys on them; the gateway routes to them with each box's key, queues past their capacity and
 * answers 503 with Retry-After; stop forgets the boxes, start probes them again, delete leaves them running.
 */
describe('CUSTOM bare boxes (real api, worker, Temporal)', () => {
  let stack: Stack;
  let gql: Gql;
  const boxes: Array<{ url: string; apiKey: string; child: ChildProcess }> = [];

  beforeAll(async () => {
    stack = await startStack({ env: { GATEWAY_QUEUE_TIMEOUT_MS: '300', SIM_ITL_MS: '20' } });
    gql = stack.as((await stack.workspace('TEAM')).token);
    boxes.push(await startBox('box-one-key-0001'), await startBox('box-two-key-0002'));
  });
  afterAll(async () => {
    for (const b of boxes) b.child.kill('SIGTERM');
    await stack?.close();
  });

  const operate = async (mutation: string, variables: Record<string, unknown>) => {
    const data = await must(gql<Record<string, OperationResult>>(mutation, variables));
    await stack.temporal.workflow.getHandle(Object.values(data)[0].workflowId).result();
  };
  const boxesAnswer = async () => Promise.all(boxes.map(async (b) => (await fetch(`${b.url}/health`).catch(() => null))?.status ?? 'down'));

  it("should give the pipeline's bundle as files, serve.sh executable, and NOT_FOUND for a variant of another pipeline", async () => {
    const p = await createPipeline(gql, { name: 'custom-bundle', model: 'Qwen/Qwen2.5-0.5B-Instruct' });
    const { pipelineBundle: files } = await must(
      gql<{ pipelineBundle: Array<{ path: string; content: string; mode: number }> }>(BUNDLE, { p }),
    );
    expect(files.map((f) => f.path).sort()).toEqual(
      ['Dockerfile', 'artifacts.json', 'docker-compose.yaml', 'k8s/deployment.yaml', 'k8s/service.yaml', 'runtime.json', 'serve.sh'].sort(),
    );
    expect(files.find((f) => f.path === 'serve.sh')!.mode).toBe(0o755);
    expect(JSON.parse(files.find((f) => f.path === 'runtime.json')!.content)).toMatchObject({ model: 'Qwen/Qwen2.5-0.5B-Instruct' });
    expect(parse(files.find((f) => f.path === 'k8s/deployment.yaml')!.content).kind).toBe('Deployment');
    const other = await createPipeline(gql, { name: 'custom-bundle-other' });
    const v = (await stack.prisma.variant.findFirstOrThrow({ where: { pipelineId: other } })).id;
    const r = await gql(BUNDLE, { p, v });
    expect(r.errors?.[0]).toMatchObject({ message: `variant ${v} not found`, extensions: { code: 'NOT_FOUND' } });
  });

  it('should refuse a credential whose server does not answer or refuses its key, naming the URL, and store nothing', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const down = await gql(ADD, { input: { target: 'CUSTOM', name: 'dead', endpoints: [{ url: dead, apiKey: 'whatever-key' }] } });
    expect(down.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(down.errors?.[0].message).toMatch(new RegExp(`^endpoints\\[0\\]\\.url: GET ${dead}/health could not be reached`));
    const wrong = await gql(ADD, {
      input: { target: 'CUSTOM', name: 'wrong', endpoints: [{ url: boxes[0].url }, { url: boxes[1].url, apiKey: 'not-the-key' }] },
    });
    expect(wrong.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(wrong.errors?.[0].message).toMatch(/^endpoints\[\d\]\.apiKey: GET http:\/\/127\.0\.0\.1:\d+\/v1\/models answered 401/);
    expect(wrong.errors?.[0].message).not.toContain('not-the-key');
    const none = await gql(ADD, { input: { target: 'CUSTOM', name: 'none', endpoints: [] } });
    expect(none.errors?.[0]).toMatchObject({ message: expect.stringMatching(/^endpoints: /), extensions: { code: 'BAD_USER_INPUT' } });
    expect(await stack.prisma.providerCredential.count({ where: { name: { in: ['dead', 'wrong', 'none'] } } })).toBe(0);
  });

  it('should deploy on the registered boxes at fixed capacity, stream, queue, 503, stop, start, and leave the boxes running', async () => {
    const { addProviderCredential: cred } = await must(
      gql<{ addProviderCredential: { id: string; last4: string; target: string } }>(ADD, {
        input: { target: 'CUSTOM', name: 'my boxes', endpoints: boxes.map((b) => ({ url: `${b.url}/v1/`, apiKey: b.apiKey })) },
      }),
    );
    expect(cred).toMatchObject({ target: 'CUSTOM', last4: '…0001' });
    // The secret holds the keys; nothing shows them.
    expect(JSON.stringify(await stack.prisma.providerCredential.findUniqueOrThrow({ where: { id: cred.id } }))).not.toContain(
      'box-one-key',
    );

    const pipelineId = await createPipeline(gql, { name: 'custom-e2e' });
    // One replica serves two requests at most (as the boxes run with --max-concurrency 2).
    const { createVariant: variant } = await must(
      gql<{ createVariant: { id: string } }>(CREATE_VARIANT, {
        pipelineId,
        input: { name: 'small', gpu: 'L40S', engine: 'vllm', maxConcurrency: 2 },
      }),
    );

    const noCred = await gql(DEPLOY, { input: { pipelineId, target: 'CUSTOM', gpu: 'L40S' } });
    expect(noCred.errors?.[0]).toMatchObject({
      message: expect.stringMatching(/^credentialId: a CUSTOM deployment runs on servers you run/),
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const tooMany = await gql(DEPLOY, { input: { pipelineId, target: 'CUSTOM', gpu: 'L40S', credentialId: cred.id, maxReplicas: 3 } });
    expect(tooMany.errors?.[0]).toMatchObject({
      message: expect.stringMatching(
        /^maxReplicas: a CUSTOM deployment has fixed capacity, one replica per registered endpoint: .* registers 2/,
      ),
      extensions: { code: 'BAD_USER_INPUT' },
    });

    const d = await deployAndWait(gql, { pipelineId, variantId: variant.id, target: 'CUSTOM', gpu: 'L40S', credentialId: cred.id });
    expect(d).toMatchObject({ status: 'ACTIVE' });
    const row = await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } });
    expect(row).toMatchObject({ minReplicas: 2, maxReplicas: 2 });
    const events = await stack.prisma.deploymentEvent.findMany({ where: { deploymentId: d.id } });
    expect(events.map((e) => e.message)).toContain(
      'fixed capacity: 2 registered endpoints; scaling is out of our hands (the servers are yours to add or remove)',
    );
    const replicas = await stack.prisma.replica.findMany({ where: { deploymentId: d.id, state: 'READY' } });
    expect(replicas.map((r) => r.address).sort()).toEqual(boxes.map((b) => b.url).sort());

    // The gateway sends each box its own key: the official client streams through it, on both boxes.
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: d.apiKey, maxRetries: 0 });
    const streams = await Promise.all([streamChat(client, 4), streamChat(client, 4), streamChat(client, 4), streamChat(client, 4)]);
    for (const s of streams) expect(s).toMatchObject({ tokens: 4, finish: 'length' });

    // Four slots in all (2 boxes x 2); a fifth long stream queues past the 300 ms queue timeout and gets the 503.
    const chat = () =>
      fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${d.apiKey}` },
        body: JSON.stringify({ model: 'default', stream: true, max_tokens: 60, messages: [{ role: 'user', content: 'hi' }] }),
      });
    const burst = await Promise.all(Array.from({ length: 5 }, chat));
    const refused = burst.filter((r) => r.status === 503);
    expect(burst.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 503]);
    expect(((await refused[0].json()) as { error: object }).error).toMatchObject({ code: 'no_replica_available' });
    expect(Number(refused[0].headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await Promise.all(burst.filter((r) => r.status === 200).map((r) => r.text()));

    // Stop forgets the boxes (they keep running, and the events say so); start takes them again.
    await operate(STOP_DEPLOYMENT, { id: d.id });
    expect(await stack.prisma.replica.count({ where: { deploymentId: d.id, state: { in: ['STARTING', 'READY'] } } })).toBe(0);
    expect(await boxesAnswer()).toEqual([200, 200]);
    const forgotten = await stack.prisma.deploymentEvent.findMany({ where: { deploymentId: d.id, kind: 'replica.forgotten' } });
    expect(forgotten.length).toBe(2);
    expect(forgotten[0].message).toMatch(/keeps running \(it is yours/);
    await operate(START_DEPLOYMENT, { id: d.id });
    expect((await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } })).status).toBe('ACTIVE');
    const again = await stack.prisma.replica.findMany({ where: { deploymentId: d.id, state: 'READY' } });
    expect(again.map((r) => r.address).sort()).toEqual(boxes.map((b) => b.url).sort());
    expect(await streamChat(client, 3)).toMatchObject({ tokens: 3, finish: 'length' });

    // Delete leaves the user's servers running.
    await operate(DELETE_DEPLOYMENT, { id: d.id });
    expect((await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } })).status).toBe('DELETED');
    expect(await boxesAnswer()).toEqual([200, 200]);
  });
});
