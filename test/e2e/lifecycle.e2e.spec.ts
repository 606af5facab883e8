import OpenAI from 'openai';
import {
  createPipeline,
  DELETE_DEPLOYMENT,
  deployAndWait,
  Gql,
  GqlResult,
  OperationResult,
  START_DEPLOYMENT,
  STOP_DEPLOYMENT,
} from '../support/graphql';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

const DEPLOYMENT = `query($id: ID!) { deployment(id: $id) {
  id status statusReason replicas(includeStopped: true) { id state } events { kind message } operations { id kind status workflowId error } } }`;

interface DeploymentView {
  id: string;
  status: string;
  statusReason: string | null;
  replicas: Array<{ id: string; state: string }>;
  events: Array<{ kind: string; message: string }>;
  operations: Array<{ id: string; kind: string; status: string; workflowId: string; error: string | null }>;
}

describe('stop, start and delete a deployment (real api, worker, Temporal and replicas)', () => {
  let stack: Stack;
  let gql: Gql;
  let deploymentId: string;
  let apiKey: string;

  const view = async (id = deploymentId) => (await gql<{ deployment: DeploymentView }>(DEPLOYMENT, { id })).data.deployment;
  const op = (doc: string, id = deploymentId) => gql<Record<string, OperationResult>>(doc, { id });
  const settled = (status: string) =>
    eventually(async () => {
      const d = await view();
      return d.status === status && d.operations.every((o) => o.status !== 'RUNNING') ? d : null;
    });
  const chat = () =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'hi' }] }),
    });
  const errorOf = (r: GqlResult<unknown>) => r.errors?.[0];

  beforeAll(async () => {
    stack = await startStack();
    const ws = await stack.workspace('TEAM');
    gql = stack.as(ws.token);
    ({ deploymentId, apiKey } = await stack.deployed(ws.token, { name: 'lifecycle' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 2 }));
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should refuse to start an ACTIVE deployment with CONFLICT naming its status', async () => {
    const e = errorOf(await op(START_DEPLOYMENT));
    expect(e?.extensions.code).toBe('CONFLICT');
    expect(e?.message).toBe(`deployment ${deploymentId} is ACTIVE: start needs it STOPPED or FAILED`);
  });

  it('should stop: STOPPED, every replica stopped, a request answered 503 deployment_stopped without a cold start', async () => {
    const r = await op(STOP_DEPLOYMENT);
    expect(r.errors).toBeUndefined();
    const started = r.data.stopDeployment;
    expect(started).toMatchObject({ kind: 'STOP', status: 'RUNNING', workflowId: `op:${deploymentId}:${started.id}` });
    const d = await settled('STOPPED');
    expect(d.replicas.every((x) => x.state === 'STOPPED')).toBe(true);
    expect(d.operations[0]).toMatchObject({ id: started.id, kind: 'STOP', status: 'SUCCEEDED' });
    const kinds = d.events.map((e) => e.kind);
    expect(kinds.slice(kinds.indexOf('stop.requested'))).toEqual([
      'stop.requested',
      'deployment.stopping',
      'replicas.draining',
      'replica.drained',
      'replicas.stopped',
      'deployment.stopped',
    ]);

    const res = await chat();
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('deployment_stopped');
    expect(body.error.message).toContain('startDeployment');
    // No cold start: nothing was started for the request.
    await new Promise((r) => setTimeout(r, 300));
    expect((await view()).replicas.every((x) => x.state === 'STOPPED')).toBe(true);
  });

  it('should refuse to stop a STOPPED deployment with CONFLICT', async () => {
    const e = errorOf(await op(STOP_DEPLOYMENT));
    expect(e?.extensions.code).toBe('CONFLICT');
    expect(e?.message).toContain('is STOPPED');
  });

  it('should start again, refuse a second operation while the start runs, and serve the same key', async () => {
    const r = await op(START_DEPLOYMENT);
    expect(r.errors).toBeUndefined();
    const start = r.data.startDeployment;
    const second = errorOf(await op(STOP_DEPLOYMENT));
    expect(second?.extensions).toMatchObject({ code: 'OPERATION_IN_PROGRESS', kind: 'START', workflowId: start.workflowId });
    expect(second?.message).toContain(`a START operation (workflow ${start.workflowId}) in progress`);

    const d = await settled('ACTIVE');
    expect(d.operations[0]).toMatchObject({ id: start.id, kind: 'START', status: 'SUCCEEDED' });
    expect(d.replicas.filter((x) => x.state === 'READY')).toHaveLength(1);
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey });
    const out = await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'again' }] });
    expect(out.choices[0].message.content?.length).toBeGreaterThan(0);
    // The scaler was resumed with the started replica as its count.
    const scaler = await eventually(async () => {
      const s = await gql<{ deployment: { scaling: { paused: boolean; current: number } } }>(
        `query($id: ID!) { deployment(id: $id) { scaling { paused current } } }`,
        { id: deploymentId },
      );
      return s.data.deployment.scaling.paused ? null : s.data.deployment.scaling;
    });
    expect(scaler.current).toBe(1);
  });

  it('should delete: keys revoked (401), scaler ended, DELETED with its rows kept; nothing more can be done', async () => {
    const r = await op(DELETE_DEPLOYMENT);
    expect(r.errors).toBeUndefined();
    const d = await settled('DELETED');
    expect(d.operations[0]).toMatchObject({ kind: 'DELETE', status: 'SUCCEEDED' });
    expect(d.replicas.every((x) => x.state === 'STOPPED')).toBe(true);
    expect(d.events.map((e) => e.kind)).toEqual(expect.arrayContaining(['delete.requested', 'key.revoked', 'deployment.deleted']));
    await eventually(async () => (await chat()).status === 401);
    const scaler = await stack.temporal.workflow.getHandle(`scaler:${deploymentId}`).describe();
    expect(scaler.status.name).not.toBe('RUNNING');
    for (const doc of [START_DEPLOYMENT, STOP_DEPLOYMENT, DELETE_DEPLOYMENT]) {
      const e = errorOf(await op(doc));
      expect(e?.extensions.code).toBe('CONFLICT');
      expect(e?.message).toContain('is DELETED');
    }
  });
});

describe('a start whose replica exits at start', () => {
  it('should release what it started and end FAILED with the reason, nothing left running', async () => {
    const stack = await startStack({ env: { LOCAL_REPLICA_COMMAND: '/bin/false {port}', DEPLOY_HEALTH_TIMEOUT_SECONDS: '30' } });
    try {
      const gql = stack.as((await stack.workspace('TEAM')).token);
      const pipelineId = await createPipeline(gql, { name: 'crashy' });
      const d = await deployAndWait(gql, { pipelineId, mode: 'FLEX', minReplicas: 1, maxReplicas: 1 });
      expect(d.status).toBe('FAILED');
      // A failed deploy is not started (its key was revoked): it is deployed anew.
      const refused = await gql(START_DEPLOYMENT, { id: d.id });
      expect(refused.errors?.[0].extensions.code).toBe('CONFLICT');
      expect(refused.errors?.[0].message).toContain('FAILED by its deploy');

      expect((await gql(STOP_DEPLOYMENT, { id: d.id })).errors).toBeUndefined();
      await eventually(async () => {
        const x = await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } });
        return x.status === 'STOPPED' && !x.activeOperationId;
      });
      expect((await gql(START_DEPLOYMENT, { id: d.id })).errors).toBeUndefined();
      const failed = await eventually(async () => {
        const x = await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } });
        return x.status === 'FAILED' && !x.activeOperationId ? x : null;
      });
      expect(failed.statusReason).toMatch(/exited before it became healthy/);
      const op = await stack.prisma.operation.findFirstOrThrow({ where: { deploymentId: d.id }, orderBy: { startedAt: 'desc' } });
      expect(op).toMatchObject({ kind: 'START', status: 'FAILED', error: expect.stringMatching(/exited before it became healthy/) });
      const replicas = await stack.prisma.replica.findMany({ where: { deploymentId: d.id } });
      expect(replicas.every((r) => r.state === 'STOPPED' || r.state === 'FAILED')).toBe(true);
      expect(await stack.worker.providers.LOCAL!.listReplicas()).toEqual([]);
      // A failed start may be tried again.
      const again = await gql<Record<string, OperationResult>>(START_DEPLOYMENT, { id: d.id });
      expect(again.errors).toBeUndefined();
      expect(again.data.startDeployment.kind).toBe('START');
      await eventually(async () => {
        const x = await stack.prisma.operation.findUniqueOrThrow({ where: { id: again.data.startDeployment.id } });
        return x.status === 'FAILED';
      });
    } finally {
      await stack.close();
    }
  });
});

describe('GraphQL schema errors through the real api', () => {
  let stack: Stack;
  let gql: Gql;
  beforeAll(async () => {
    stack = await startStack({ env: { GRAPHQL_MAX_DEPTH: '3' } });
    gql = stack.as((await stack.workspace('TEAM')).token);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should refuse a document of 2,000 aliases by its cost before running any of it, and one nested too deep', async () => {
    const aliases = Array.from({ length: 2000 }, (_, i) => `a${i}: deployments { id }`).join(' ');
    const wide = await gql(`query { ${aliases} }`);
    expect(wide.data).toBeNull();
    expect(wide.errors).toEqual([
      expect.objectContaining({
        message: 'This document asks for 4000 fields, above the limit of 1000 (GRAPHQL_MAX_COST); ask for fewer, or split it.',
        extensions: { code: 'QUERY_TOO_COMPLEX', cost: 4000, limit: 1000 },
      }),
    ]);
    // Within the limit, aliases work.
    const fine = await gql<Record<string, unknown[]>>(`query { a: deployments { id } b: deployments { id } }`);
    expect(fine.errors).toBeUndefined();
    expect(Object.keys(fine.data)).toEqual(['a', 'b']);
    // Depth: this stack allows 3 levels (GRAPHQL_MAX_DEPTH), so deployments > revisions > variant > id is one too many.
    expect((await gql(`query { deployments { revisions { id } } }`)).errors).toBeUndefined();
    const deep = await gql(`query { deployments { revisions { variant { id } } } }`);
    expect(deep.data).toBeNull();
    expect(deep.errors?.[0]).toMatchObject({
      message: expect.stringContaining('depth'),
      extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
    });
  });

  it("should answer a typo in a selection with graphql-js's message and GRAPHQL_VALIDATION_FAILED", async () => {
    const r = await gql(`query { deployments { idd } }`);
    expect(r.errors).toEqual([
      expect.objectContaining({
        message: 'Cannot query field "idd" on type "Deployment". Did you mean "id"?',
        extensions: { code: 'GRAPHQL_VALIDATION_FAILED' },
        locations: [{ line: 1, column: 23 }],
      }),
    ]);
  });

  it('should name a missing required input field', async () => {
    const r = await gql(`mutation { createPipeline(input: { name: "x", task: CHAT }) { id } }`);
    expect(r.errors?.map((e) => e.extensions.code)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    expect(r.errors?.[0].message).toBe('Field "CreatePipelineInput.model" of required type "String!" was not provided.');
  });

  it('should answer a document that does not parse with GRAPHQL_PARSE_FAILED', async () => {
    const r = await gql(`query { deployments { id `);
    expect(r.errors).toEqual([expect.objectContaining({ extensions: { code: 'GRAPHQL_PARSE_FAILED' } })]);
    expect(r.errors?.[0].message).toMatch(/^Syntax Error: Expected Name, found <EOF>\./);
  });

  it('should name a variable that does not fit its type, GRAPHQL_VALIDATION_FAILED too', async () => {
    const r = await gql(`mutation($input: CreatePipelineInput!) { createPipeline(input: $input) { id } }`, { input: { name: 'x' } });
    expect(r.errors?.[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(r.errors?.[0].message).toBe(
      'Variable "$input" got invalid value { name: "x" }; Field "model" of required type "String!" was not provided.',
    );
  });
});
