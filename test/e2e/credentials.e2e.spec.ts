import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decrypt } from '../../src/common/secrets';
import { secretsKey } from '../../src/credentials/secrets-key';
import { readCredentialSecret } from '../../src/credentials/store';
import { NotFoundError } from '../../src/domain/errors';
import { RunpodFake, startRunpodFake } from '../../src/providers/runpod/fake';
import { createPipeline, DEPLOY, DeployInput, Gql, GqlResult, must } from '../support/graphql';
import { Stack, startStack } from '../support/stack';

const ADD = `mutation($i: AddProviderCredentialInput!) {
  addProviderCredential(input: $i) { id target name last4 accountId createdAt rotatedAt inUseBy } }`;
const ROTATE = `mutation($id: ID!, $k: String!) { rotateProviderCredential(id: $id, apiKey: $k) { id last4 accountId rotatedAt } }`;
const DELETE = `mutation($id: ID!) { deleteProviderCredential(id: $id) { id deletedAt inUseBy } }`;
const LIST = `{ providerCredentials { id name last4 accountId inUseBy } }`;
const DEPLOYMENT = `query($id: ID!) { deployment(id: $id) { id credentialId credential { id name last4 } } }`;

interface Credential {
  id: string;
  target: string;
  name: string;
  last4: string;
  accountId: string | null;
  createdAt: string;
  rotatedAt: string | null;
  inUseBy: string[];
}

/** A RunPod-looking key: rpa_ and 40 random characters. */
const runpodKey = () => `rpa_${randomBytes(30).toString('base64url')}`;

/**
 * "Your own RunPod account" through the real api, against the RunPod fake: a key is checked live with RunPod's cheap
 * read, stored sealed and shown by its last four characters, refused with the reason RunPod gave, rotated and deleted;
 * a deployment can run on it (Flex only) and holds it until the deployment is deleted.
 */
describe('provider credentials (real api, RunPod fake)', () => {
  const keys = {
    main: runpodKey(),
    sameAccount: runpodKey(),
    sameAccountRotated: runpodKey(),
    otherAccount: runpodKey(),
    noServerless: runpodKey(),
    spare: runpodKey(),
    stranger: runpodKey(),
    unknown: runpodKey(),
  };
  const logFile = join(mkdtempSync(join(tmpdir(), 'credentials-')), 'stack.log');
  let fake: RunpodFake;
  let stack: Stack;
  let gql: Gql;
  let key: Buffer;
  const errorOf = (r: GqlResult<unknown>) => r.errors?.[0];
  const add = (apiKey: string, name: string, target = 'RUNPOD', as: Gql = gql) =>
    as<{ addProviderCredential: Credential }>(ADD, { i: { target, name, apiKey } });
  const added = async (apiKey: string, name: string) => (await must(add(apiKey, name))).addProviderCredential;
  const deployOn = (input: DeployInput & { credentialId: string }) =>
    gql<{ deployPipeline: { deployment: { id: string } } }>(DEPLOY, { input: { target: 'RUNPOD', gpu: 'NVIDIA L40S', ...input } });
  const row = (id: string) => stack.prisma.providerCredential.findUniqueOrThrow({ where: { id } });

  beforeAll(async () => {
    fake = await startRunpodFake({
      keys: [
        { key: keys.main, accountId: 'acct-main' },
        { key: keys.sameAccount, accountId: 'acct-shared' },
        { key: keys.sameAccountRotated, accountId: 'acct-shared' },
        { key: keys.otherAccount, accountId: 'acct-other' },
        { key: keys.noServerless, access: 'NO_SERVERLESS', accountId: 'acct-noserverless' },
        { key: keys.spare, accountId: 'acct-spare' },
        { key: keys.stranger, accountId: 'acct-stranger' },
      ],
    });
    stack = await startStack({
      logFile,
      env: {
        LOG_LEVEL: 'debug',
        RUNPOD_API_URL: fake.managementUrl,
        RUNPOD_GRAPHQL_URL: fake.graphqlUrl,
        RUNPOD_RUNTIME_URL: fake.runtimeUrl,
      },
    });
    gql = stack.as((await stack.workspace('TEAM')).token);
    key = secretsKey(stack.config);
  });
  afterAll(async () => {
    await stack?.close();
    await fake?.stop();
  });

  it('should add a key that RunPod accepts, show it only by its last four characters, and store it only sealed', async () => {
    const c = await added(keys.main, 'main account');
    expect(c).toMatchObject({
      id: expect.stringMatching(/^pc_/),
      target: 'RUNPOD',
      name: 'main account',
      last4: `…${keys.main.slice(-4)}`,
      accountId: 'acct-main',
      rotatedAt: null,
      inUseBy: [],
    });
    expect((await must(gql<{ providerCredentials: Credential[] }>(LIST))).providerCredentials).toEqual([
      { id: c.id, name: 'main account', last4: `…${keys.main.slice(-4)}`, accountId: 'acct-main', inUseBy: [] },
    ]);
    // The row holds it sealed; the worker's activities read it back by id.
    const raw = await stack.prisma.$queryRawUnsafe<Array<{ j: string }>>(
      `SELECT row_to_json(x)::text AS j FROM "ProviderCredential" x WHERE id = $1`,
      c.id,
    );
    expect(raw).toHaveLength(1);
    expect(raw[0].j).not.toContain(keys.main);
    expect(await readCredentialSecret(stack.prisma, key, c.id)).toBe(keys.main);
    // The audit trail names it without the key.
    const events = await stack.prisma.auditEvent.findMany({
      where: { kind: 'credential.added', data: { path: ['credentialId'], equals: c.id } },
    });
    expect(events).toHaveLength(1);
    expect(JSON.stringify(events[0], (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).not.toContain(keys.main);
  });

  it('should refuse a key RunPod does not know, naming the 401, and store nothing', async () => {
    const r = await add(keys.unknown, 'unknown');
    expect(errorOf(r)?.extensions.code).toBe('BAD_USER_INPUT');
    expect(errorOf(r)?.message).toMatch(/RunPod rejected the API key \(401/);
    expect(errorOf(r)?.message).not.toContain(keys.unknown);
    const names = (await must(gql<{ providerCredentials: Credential[] }>(LIST))).providerCredentials.map((c) => c.name);
    expect(names).not.toContain('unknown');
  });

  it('should refuse a key without Serverless access, saying so', async () => {
    const r = await add(keys.noServerless, 'read only');
    expect(errorOf(r)?.extensions.code).toBe('BAD_USER_INPUT');
    expect(errorOf(r)?.message).toMatch(/no Serverless access \(403/);
  });

  it('should answer UNAVAILABLE with when to retry when RunPod rate-limits the check, and UNAVAILABLE when RunPod fails', async () => {
    fake.faults.managementFailureRate = 1;
    try {
      fake.faults.kinds = ['429'];
      const limited = await add(keys.spare, 'spare');
      expect(errorOf(limited)?.extensions).toMatchObject({ code: 'UNAVAILABLE', retryAfterSeconds: 1 });
      expect(errorOf(limited)?.message).toMatch(/RunPod rate-limited the check; retry in 1 s/);
      fake.faults.kinds = ['503'];
      const down = await add(keys.spare, 'spare');
      expect(errorOf(down)?.extensions.code).toBe('UNAVAILABLE');
      expect(errorOf(down)?.message).toMatch(/RunPod could not be reached to check the key: .*503/);
    } finally {
      fake.faults.managementFailureRate = 0;
      fake.faults.kinds = ['429', '500', '503'];
    }
    // Nothing was stored: the same key is accepted once RunPod answers.
    expect((await added(keys.spare, 'spare')).accountId).toBe('acct-spare');
  });

  it('should refuse an empty or whitespace key, and a CUSTOM credential without endpoints, before asking RunPod', async () => {
    for (const apiKey of ['', '   \t ']) {
      const r = await add(apiKey, 'blank');
      expect(errorOf(r)?.extensions.code).toBe('BAD_USER_INPUT');
      expect(errorOf(r)?.message).toBe('apiKey: must not be empty or whitespace');
    }
    const custom = await add(keys.otherAccount, 'custom', 'CUSTOM');
    expect(errorOf(custom)?.extensions.code).toBe('BAD_USER_INPUT');
    // CUSTOM takes the URLs of servers the user runs, not a key (custom.e2e.spec.ts).
    expect(errorOf(custom)?.message).toMatch(/^endpoints: a CUSTOM credential needs at least one endpoint/);
  });

  it('should refuse the same RunPod account twice in a workspace, naming the credential it already has', async () => {
    const first = await added(keys.sameAccount, 'shared');
    const r = await add(keys.sameAccountRotated, 'shared again');
    expect(errorOf(r)?.extensions.code).toBe('CONFLICT');
    expect(errorOf(r)?.message).toContain(`account acct-shared is already in this workspace as credential shared (${first.id})`);
  });

  it('should rotate to a new key of the same account: new last4, and the row no longer opens to the old key', async () => {
    const c = (await must(gql<{ providerCredentials: Credential[] }>(LIST))).providerCredentials.find((x) => x.name === 'shared')!;
    const other = await gql(ROTATE, { id: c.id, k: keys.otherAccount });
    expect(errorOf(other)?.extensions.code).toBe('BAD_USER_INPUT');
    expect(errorOf(other)?.message).toContain('belongs to RunPod account acct-other, not acct-shared');

    const { rotateProviderCredential: rotated } = await must(
      gql<{ rotateProviderCredential: { id: string; last4: string; accountId: string; rotatedAt: string | null } }>(ROTATE, {
        id: c.id,
        k: keys.sameAccountRotated,
      }),
    );
    expect(rotated).toMatchObject({ id: c.id, last4: `…${keys.sameAccountRotated.slice(-4)}`, accountId: 'acct-shared' });
    expect(rotated.rotatedAt).not.toBeNull();
    const sealed = (await row(c.id)).sealed!;
    expect(decrypt(key, sealed)).toBe(keys.sameAccountRotated);
    expect(await readCredentialSecret(stack.prisma, key, c.id)).toBe(keys.sameAccountRotated);

    const bad = await gql(ROTATE, { id: c.id, k: keys.unknown });
    expect(errorOf(bad)?.extensions.code).toBe('BAD_USER_INPUT');
    expect(errorOf(bad)?.message).toMatch(/401/);
    expect(decrypt(key, (await row(c.id)).sealed!)).toBe(keys.sameAccountRotated);
  });

  it('should run a RUNPOD deployment on the credential, Flex only, and refuse to delete the credential while it does', async () => {
    const c = await added(keys.otherAccount, 'deploying');
    const pipelineId = await createPipeline(gql, { name: 'own-runpod' });
    const active = await deployOn({ pipelineId, target: 'RUNPOD', gpu: 'NVIDIA L40S', mode: 'ACTIVE', credentialId: c.id });
    expect(errorOf(active)?.extensions.code).toBe('BAD_USER_INPUT');
    expect(errorOf(active)?.message).toContain('your own RunPod account runs Flex only; Active is managed RunPod');
    const local = await deployOn({ pipelineId, target: 'LOCAL', gpu: 'sim', credentialId: c.id });
    expect(errorOf(local)?.extensions.code).toBe('BAD_USER_INPUT');
    expect(errorOf(local)?.message).toContain('is a RUNPOD credential');

    const { deployPipeline } = await must(
      deployOn({ pipelineId, target: 'RUNPOD', gpu: 'NVIDIA L40S', mode: 'FLEX', maxReplicas: 1, credentialId: c.id }),
    );
    const deploymentId = deployPipeline.deployment.id;
    const { deployment } = await must(
      gql<{ deployment: { credentialId: string; credential: { id: string; name: string; last4: string } } }>(DEPLOYMENT, {
        id: deploymentId,
      }),
    );
    expect(deployment).toMatchObject({ credentialId: c.id, credential: { id: c.id, name: 'deploying', last4: c.last4 } });
    const listed = (await must(gql<{ providerCredentials: Credential[] }>(LIST))).providerCredentials.find((x) => x.id === c.id);
    expect(listed?.inUseBy).toEqual([deploymentId]);

    const refused = await gql(DELETE, { id: c.id });
    expect(errorOf(refused)?.extensions).toMatchObject({ code: 'CONFLICT', deploymentIds: [deploymentId] });
    expect(errorOf(refused)?.message).toContain(`in use by deployment ${deploymentId}`);
    expect(await readCredentialSecret(stack.prisma, key, c.id)).toBe(keys.otherAccount);
  });

  it('should delete a credential: gone from the list, its key wiped, and no longer usable', async () => {
    const c = (await must(gql<{ providerCredentials: Credential[] }>(LIST))).providerCredentials.find((x) => x.name === 'spare')!;
    const { deleteProviderCredential } = await must(
      gql<{ deleteProviderCredential: { id: string; deletedAt: string | null } }>(DELETE, { id: c.id }),
    );
    expect(deleteProviderCredential.deletedAt).not.toBeNull();
    expect((await row(c.id)).sealed).toBeNull();
    expect((await must(gql<{ providerCredentials: Credential[] }>(LIST))).providerCredentials.map((x) => x.id)).not.toContain(c.id);
    await expect(readCredentialSecret(stack.prisma, key, c.id)).rejects.toThrow(NotFoundError);

    for (const r of [await gql(DELETE, { id: c.id }), await gql(ROTATE, { id: c.id, k: keys.spare })]) {
      expect(errorOf(r)?.extensions.code).toBe('NOT_FOUND');
    }
    const pipelineId = await createPipeline(gql, { name: 'after-delete' });
    const d = await deployOn({ pipelineId, target: 'RUNPOD', gpu: 'NVIDIA L40S', credentialId: c.id });
    expect(errorOf(d)?.extensions.code).toBe('NOT_FOUND');
    // Deleted, its account can be added again.
    expect((await added(keys.spare, 'spare again')).accountId).toBe('acct-spare');
  });

  it("should answer NOT_FOUND for another workspace's credential, whatever the mutation", async () => {
    const theirs = stack.as((await stack.workspace('TEAM', 'stranger')).token);
    const c = (await must(add(keys.stranger, 'theirs', 'RUNPOD', theirs))).addProviderCredential;
    const pipelineId = await createPipeline(gql, { name: 'borrower' });
    for (const r of [
      await gql(ROTATE, { id: c.id, k: keys.main }),
      await gql(DELETE, { id: c.id }),
      await deployOn({ pipelineId, target: 'RUNPOD', gpu: 'NVIDIA L40S', credentialId: c.id }),
    ]) {
      expect(errorOf(r)?.extensions.code).toBe('NOT_FOUND');
      expect(errorOf(r)?.message).toBe(`provider credential ${c.id} not found`);
    }
    expect((await must(gql<{ providerCredentials: Credential[] }>(LIST))).providerCredentials.map((x) => x.id)).not.toContain(c.id);
    expect(await readCredentialSecret(stack.prisma, key, c.id)).toBe(keys.stranger);
  });

  it('should have written no key in any log line or any column of any table', async () => {
    const all = Object.values(keys);
    const leaks: string[] = [];
    const log = readFileSync(logFile, 'utf8');
    expect(log.length).toBeGreaterThan(1000);
    leaks.push(...all.filter((k) => log.includes(k)).map((k) => `log: ${k.slice(0, 8)}...`));
    const tables = await stack.prisma.$queryRawUnsafe<Array<{ t: string }>>(
      `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
    );
    expect(tables.map((t) => t.t)).toContain('ProviderCredential');
    for (const { t } of tables) {
      const rows = await stack.prisma.$queryRawUnsafe<Array<{ j: string }>>(`SELECT row_to_json(x)::text AS j FROM "${t}" x`);
      const text = rows.map((r) => r.j).join('\n');
      leaks.push(...all.filter((k) => text.includes(k)).map((k) => `table ${t}: ${k.slice(0, 8)}...`));
    }
    expect(leaks).toEqual([]);
  });
});
