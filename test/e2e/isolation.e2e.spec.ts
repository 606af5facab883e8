import { encrypt } from '../../src/common/secrets';
import { secretsKey } from '../../src/credentials/secrets-key';
import { Gql, GqlResult, must } from '../support/graphql';
import { Stack, startStack } from '../support/stack';

interface IntrospectedField {
  name: string;
  args: Array<{ name: string; type: TypeRef }>;
}
interface TypeRef {
  kind: string;
  name: string | null;
  ofType: TypeRef | null;
}

const INTROSPECT = `{ __schema {
  queryType { fields { name args { name type { kind name ofType { kind name ofType { kind name } } } } } }
  mutationType { fields { name args { name type { kind name ofType { kind name ofType { kind name } } } } } }
  types { name kind inputFields { name type { kind name ofType { kind name } } } } } }`;

/**
 * Workspace isolation through the real api: every query and mutation that takes an id, called with another
 * workspace's ids, answers NOT_FOUND and changes nothing. A field added later that takes an id and is not in the
 * table below fails the coverage test, so nobody forgets to isolate it.
 */
describe('workspace isolation (real api and worker)', () => {
  let stack: Stack;
  let mine: Gql;
  let theirs: Gql;
  const a = {
    deploymentId: '',
    pipelineId: '',
    variantId: '',
    keyId: '',
    tokenId: '',
    apiKey: '',
    credentialId: 'pc_theirs',
    runId: 'run_theirs',
    replicaId: '',
  };
  let ownDeploymentId = '';
  let ownPipelineId = '';

  beforeAll(async () => {
    stack = await startStack();
    const wsA = await stack.workspace('TEAM', 'victim');
    const wsB = await stack.workspace('TEAM', 'intruder');
    theirs = stack.as(wsA.token);
    mine = stack.as(wsB.token);
    const d = await stack.deployed(wsA.token, { name: 'secret' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 2 });
    Object.assign(a, { deploymentId: d.deploymentId, pipelineId: d.pipelineId, apiKey: d.apiKey });
    a.variantId = (await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.deploymentId } })).variantId;
    a.keyId = (await stack.prisma.apiKey.findFirstOrThrow({ where: { deploymentId: d.deploymentId } })).id;
    a.replicaId = (await stack.prisma.replica.findFirstOrThrow({ where: { deploymentId: d.deploymentId } })).id;
    a.tokenId = (await stack.prisma.managementToken.findFirstOrThrow({ where: { workspaceId: wsA.id } })).id;
    // Their RunPod credential, as addProviderCredential stores it (the live check is credentials.e2e's).
    await stack.prisma.providerCredential.create({
      data: {
        id: a.credentialId,
        workspaceId: wsA.id,
        target: 'RUNPOD',
        name: 'theirs',
        sealed: encrypt(secretsKey(stack.config), 'rpa_their_own_runpod_key_0000'),
        last4: '0000',
        accountId: 'acct-victim',
      },
    });
    // Their finished optimization run, as a run leaves it (the measuring is optimization.e2e's).
    await stack.prisma.optimizationRun.create({
      data: { id: a.runId, pipelineId: a.pipelineId, status: 'SUCCEEDED', priority: 'BALANCED', gpus: ['sim'], finishedAt: new Date() },
    });
    const own = await stack.deployed(wsB.token, { name: 'own' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 });
    ownDeploymentId = own.deploymentId;
    ownPipelineId = own.pipelineId;
  });
  afterAll(async () => {
    await stack?.close();
  });

  /** Each call another workspace must not be able to make: the field it tests, and the document with A's ids. */
  const attempts = (): Array<[string, string, Record<string, unknown>]> => {
    const from = new Date(Date.now() - 3600_000).toISOString();
    const to = new Date().toISOString();
    return [
      ['deployment', `query($id: ID!) { deployment(id: $id) { id } }`, { id: a.deploymentId }],
      ['pipeline', `query($id: ID!) { pipeline(id: $id) { id } }`, { id: a.pipelineId }],
      ['replica', `query($id: ID!) { replica(id: $id) { id logs(tail: 5) { lines } } }`, { id: a.replicaId }],
      ['stopDeployment', `mutation($id: ID!) { stopDeployment(id: $id) { id } }`, { id: a.deploymentId }],
      ['startDeployment', `mutation($id: ID!) { startDeployment(id: $id) { id } }`, { id: a.deploymentId }],
      ['deleteDeployment', `mutation($id: ID!) { deleteDeployment(id: $id) { id } }`, { id: a.deploymentId }],
      ['changeGpu', `mutation($id: ID!) { changeGpu(deploymentId: $id, gpu: "sim-large") { id } }`, { id: a.deploymentId }],
      [
        'rollbackDeployment',
        `mutation($id: ID!, $v: ID!) { rollbackDeployment(deploymentId: $id, variantId: $v) { id } }`,
        { id: a.deploymentId, v: a.variantId },
      ],
      // Their variant onto my own deployment.
      [
        'rollbackDeployment',
        `mutation($id: ID!, $v: ID!) { rollbackDeployment(deploymentId: $id, variantId: $v) { id } }`,
        { id: ownDeploymentId, v: a.variantId },
      ],
      ['pipelineBundle', `query($p: ID!) { pipelineBundle(pipelineId: $p) { path } }`, { p: a.pipelineId }],
      // My own pipeline's bundle with their variant.
      [
        'pipelineBundle',
        `query($p: ID!, $v: ID!) { pipelineBundle(pipelineId: $p, variantId: $v) { path } }`,
        { p: ownPipelineId, v: a.variantId },
      ],
      ['revokeApiKey', `mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: a.keyId }],
      ['rotateApiKey', `mutation($id: ID!) { rotateApiKey(id: $id, graceSeconds: 0) { key } }`, { id: a.keyId }],
      ['setApiKeyRateLimit', `mutation($id: ID!) { setApiKeyRateLimit(id: $id, rateLimitPerMinute: 1) { id } }`, { id: a.keyId }],
      ['revokeManagementToken', `mutation($id: ID!) { revokeManagementToken(id: $id) { id } }`, { id: a.tokenId }],
      [
        'createVariant',
        `mutation($p: ID!) { createVariant(pipelineId: $p, input: { name: "evil", gpu: "any", engine: "vllm" }) { id } }`,
        { p: a.pipelineId },
      ],
      ['deployPipeline', `mutation($p: ID!) { deployPipeline(input: { pipelineId: $p, gpu: "sim" }) { apiKey } }`, { p: a.pipelineId }],
      // My own pipeline with their variant.
      [
        'deployPipeline',
        `mutation($p: ID!, $v: ID!) { deployPipeline(input: { pipelineId: $p, variantId: $v, gpu: "sim" }) { apiKey } }`,
        { p: ownPipelineId, v: a.variantId },
      ],
      // My own pipeline on their RunPod account.
      [
        'deployPipeline',
        `mutation($p: ID!, $c: ID!) { deployPipeline(input: { pipelineId: $p, target: RUNPOD, gpu: "L40S", credentialId: $c }) { apiKey } }`,
        { p: ownPipelineId, c: a.credentialId },
      ],
      [
        'rotateProviderCredential',
        `mutation($id: ID!) { rotateProviderCredential(id: $id, apiKey: "rpa_intruders_own_key_1111") { id } }`,
        { id: a.credentialId },
      ],
      ['deleteProviderCredential', `mutation($id: ID!) { deleteProviderCredential(id: $id) { id } }`, { id: a.credentialId }],
      ['optimizationRun', `query($id: ID!) { optimizationRun(id: $id) { id } }`, { id: a.runId }],
      [
        'startOptimizationRun',
        `mutation($p: ID!) { startOptimizationRun(pipelineId: $p, input: { gpus: ["sim"] }) { id } }`,
        { p: a.pipelineId },
      ],
      [
        'setReoptimizationSchedule',
        `mutation($p: ID!) { setReoptimizationSchedule(pipelineId: $p, input: { everySeconds: 3600, gpus: ["sim"] }) { scheduleId } }`,
        { p: a.pipelineId },
      ],
      ['deleteReoptimizationSchedule', `mutation($p: ID!) { deleteReoptimizationSchedule(pipelineId: $p) }`, { p: a.pipelineId }],
      [
        'createApiKey',
        `mutation($d: ID!) { createApiKey(input: { name: "x", scope: DEPLOYMENT, deploymentId: $d }) { key } }`,
        { d: a.deploymentId },
      ],
      [
        'createApiKey',
        `mutation($p: ID!) { createApiKey(input: { name: "x", scope: PIPELINE, pipelineId: $p }) { key } }`,
        { p: a.pipelineId },
      ],
      [
        'setScalingPolicy',
        `mutation($d: ID!) { setScalingPolicy(input: { deploymentId: $d, maxReplicas: 1 }) { current } }`,
        { d: a.deploymentId },
      ],
      [
        'usage',
        `query($d: ID!, $f: DateTime!, $t: DateTime!) { usage(input: { from: $f, to: $t, deploymentId: $d }) { total { requests } } }`,
        { d: a.deploymentId, f: from, t: to },
      ],
      [
        'usage',
        `query($k: ID!, $f: DateTime!, $t: DateTime!) { usage(input: { from: $f, to: $t, apiKeyId: $k }) { total { requests } } }`,
        { k: a.keyId, f: from, t: to },
      ],
    ];
  };

  it("should answer NOT_FOUND to every call with another workspace's ids, and change nothing of theirs", async () => {
    const results: Array<{ field: string; code: string | undefined; data: unknown }> = [];
    for (const [field, doc, vars] of attempts()) {
      const r: GqlResult<unknown> = await mine(doc, vars);
      results.push({ field, code: r.errors?.[0]?.extensions.code, data: r.data });
    }
    expect(results.filter((r) => r.code !== 'NOT_FOUND')).toEqual([]);
    // Theirs is as it was: ACTIVE, one revision, its key working, nothing created in their pipeline.
    const d = await must(
      theirs<{ deployment: { status: string; maxReplicas: number; revisions: unknown[]; pipeline: { variants: unknown[] } } }>(
        `query($id: ID!) { deployment(id: $id) { status maxReplicas revisions { id } pipeline { variants { id } } } }`,
        { id: a.deploymentId },
      ),
    );
    expect(d.deployment).toMatchObject({ status: 'ACTIVE', maxReplicas: 2, revisions: [{}], pipeline: { variants: [{}] } });
    const key = await stack.prisma.apiKey.findUniqueOrThrow({ where: { id: a.keyId } });
    expect(key).toMatchObject({ revokedAt: null, rotatedAt: null, rateLimitPerMinute: null });
    const credential = await stack.prisma.providerCredential.findUniqueOrThrow({ where: { id: a.credentialId } });
    expect(credential).toMatchObject({ deletedAt: null, rotatedAt: null, last4: '0000' });
    expect(await stack.prisma.deployment.count({ where: { credentialId: a.credentialId } })).toBe(0);
    const chat = await fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'default', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(chat.status).toBe(200);
  });

  it('should cover every query and mutation that takes an id', async () => {
    const { __schema: s } = await must(
      mine<{
        __schema: {
          queryType: { fields: IntrospectedField[] };
          mutationType: { fields: IntrospectedField[] };
          types: Array<{ name: string; kind: string; inputFields: Array<{ name: string; type: TypeRef }> | null }>;
        };
      }>(INTROSPECT),
    );
    const named = (t: TypeRef | null): string | null => (t ? (t.name ?? named(t.ofType)) : null);
    const inputsWithIds = new Set(
      s.types.filter((t) => t.kind === 'INPUT_OBJECT' && t.inputFields?.some((f) => named(f.type) === 'ID')).map((t) => t.name),
    );
    const takesId = [...s.queryType.fields, ...s.mutationType.fields]
      .filter((f) => f.args.some((x) => named(x.type) === 'ID' || inputsWithIds.has(named(x.type) ?? '')))
      .map((f) => f.name)
      .sort();
    const tested = [...new Set(attempts().map(([field]) => field))].sort();
    expect(takesId).toEqual(tested);
  });
});
