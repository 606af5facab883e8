import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { CHANGE_GPU, must, STOP_DEPLOYMENT, START_DEPLOYMENT } from '../support/graphql';
import { RUNPOD_MANAGED_KEY, Stack, startStack } from '../support/stack';

const RUNPOD_USER_KEY = 'rpa_secret_user_account_key_42';

/**
 * Secrets stay secret: after keys and management tokens have been issued, rotated, used (right and wrong) and
 * carried through deploys, swaps, stops and starts at debug logging, no plaintext appears in any log line, any
 * Temporal history of the stack's workflows, or any database column.
 */
describe('no plaintext secret in logs, workflow histories or the database', () => {
  let stack: Stack;
  const logFile = join(mkdtempSync(join(tmpdir(), 'secrets-')), 'stack.log');
  beforeAll(async () => {
    // Managed RunPod on the fake, and a user's own RunPod account whose key the user stores as a credential.
    stack = await startStack({
      logFile,
      env: { LOG_LEVEL: 'debug' },
      runpod: { keys: [{ key: RUNPOD_MANAGED_KEY }, { key: RUNPOD_USER_KEY, accountId: 'acct_secret' }] },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should find none after a round of every operation that handles one', async () => {
    const ws = await stack.workspace('TEAM', 'secretive');
    const gql = stack.as(ws.token);
    const secrets = [ws.token];
    const token2 = await must(
      gql<{ createManagementToken: { token: string } }>(`mutation { createManagementToken(name: "second") { token } }`),
    );
    secrets.push(token2.createManagementToken.token);
    const d = await stack.deployed(ws.token, { name: 'vault' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 });
    secrets.push(d.apiKey);
    const created = await must(
      gql<{ createApiKey: { key: string; apiKey: { id: string } } }>(
        `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id } } }`,
        { i: { name: 'extra', scope: 'DEPLOYMENT', deploymentId: d.deploymentId } },
      ),
    );
    secrets.push(created.createApiKey.key);
    const rotated = await must(
      gql<{ rotateApiKey: { key: string } }>(`mutation($id: ID!) { rotateApiKey(id: $id, graceSeconds: 0) { key } }`, {
        id: created.createApiKey.apiKey.id,
      }),
    );
    secrets.push(rotated.rotateApiKey.key);

    // Provider keys: the managed account's (config) and a user's (a credential) carried through a RUNPOD deploy, whose
    // gateway calls the runtime with it.
    secrets.push(RUNPOD_MANAGED_KEY, RUNPOD_USER_KEY);
    const cred = await must(
      gql<{ addProviderCredential: { id: string } }>(
        `mutation($i: AddProviderCredentialInput!) { addProviderCredential(input: $i) { id } }`,
        { i: { target: 'RUNPOD', name: 'own', apiKey: RUNPOD_USER_KEY } },
      ),
    );
    const own = await stack.deployed(
      ws.token,
      { name: 'vault-runpod' },
      { target: 'RUNPOD', gpu: 'H100', mode: 'FLEX', minReplicas: 1, maxReplicas: 1, credentialId: cred.addProviderCredential.id },
    );
    secrets.push(own.apiKey);
    const managed = await stack.deployed(
      ws.token,
      { name: 'vault-managed' },
      { target: 'RUNPOD', gpu: 'A100', mode: 'FLEX', minReplicas: 1, maxReplicas: 1 },
    );
    secrets.push(managed.apiKey);
    for (const key of [own.apiKey, managed.apiKey]) {
      const r = await fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'default', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(r.status).toBe(200);
      await r.text();
    }

    // Each key used, the rotated one refused; GraphQL with a token that is wrong by one character.
    for (const key of [d.apiKey, created.createApiKey.key, rotated.rotateApiKey.key]) {
      await fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'default', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }),
      }).then((r) => r.text());
    }
    await stack.gql(`{ workspace { id } }`, `${ws.token.slice(0, -1)}x`);
    for (const [doc, vars] of [
      [CHANGE_GPU, { id: d.deploymentId, gpu: 'sim-large' }],
      [STOP_DEPLOYMENT, { id: d.deploymentId }],
      [START_DEPLOYMENT, { id: d.deploymentId }],
    ] as const) {
      const op = Object.values(await must(gql<Record<string, { workflowId: string }>>(doc, vars)))[0];
      await stack.temporal.workflow.getHandle(op.workflowId).result();
    }

    const found = (where: string, text: string) => secrets.filter((s) => text.includes(s)).map((s) => `${where}: ${s.slice(0, 6)}...`);
    const leaks: string[] = [];

    // Logs: every line the api and the worker wrote, at debug.
    const log = readFileSync(logFile, 'utf8');
    expect(log.length).toBeGreaterThan(1000);
    leaks.push(...found('log', log));

    // Every workflow history of this stack's task queue.
    let histories = 0;
    for await (const wf of stack.temporal.workflow.list({ query: `TaskQueue = '${stack.config.TEMPORAL_TASK_QUEUE}'` })) {
      const h = await stack.temporal.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      const bytes = Buffer.from(temporal.api.history.v1.History.encode(h).finish()).toString('latin1');
      histories++;
      leaks.push(...found(`history ${wf.workflowId}`, bytes + JSON.stringify(h)));
    }
    expect(histories).toBeGreaterThanOrEqual(5); // deploy, scaler, change GPU, stop, start

    // Every column of every table.
    const tables = await stack.prisma.$queryRawUnsafe<Array<{ t: string }>>(
      `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
    );
    expect(tables.length).toBeGreaterThan(10);
    for (const { t } of tables) {
      const rows = await stack.prisma.$queryRawUnsafe<Array<{ j: string }>>(`SELECT row_to_json(x)::text AS j FROM "${t}" x`);
      leaks.push(...found(`table ${t}`, rows.map((r) => r.j).join('\n')));
    }
    expect(leaks).toEqual([]);
  });
});
