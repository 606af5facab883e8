import OpenAI from 'openai';
import {
  CREATE_VARIANT,
  createPipeline,
  DELETE_DEPLOYMENT,
  deployAndWait,
  Gql,
  must,
  OperationResult,
  ROLLBACK,
  START_DEPLOYMENT,
  STOP_DEPLOYMENT,
} from '../support/graphql';
import { streamChat } from '../support/openai';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';
import { ALL, KubernetesFake, startKubernetesFake } from '../../src/providers/kubernetes/fake';
import { KUBERNETES_DEMO_CREDENTIAL_NAME, startKubernetesDemo } from '../../src/providers/kubernetes/demo';
import { ensureDefaultWorkspace } from '../../src/workspaces/workspaces.service';

const ADD = `mutation($input: AddProviderCredentialInput!) {
  addProviderCredential(input: $input) { id target name last4 accountId demo } }`;
const NS = 'inference';

/**
 * The CUSTOM target on Kubernetes end to end: a kubeconfig stored through GraphQL (checked live with
 * SelfSubjectAccessReviews against the fake API server), a deploy that becomes a Deployment + LoadBalancer Service,
 * a chat streamed through the gateway with the official client, then stop, start and a rollback (a second Deployment
 * beside the first, switched in the gateway), and delete.
 */
describe('CUSTOM on Kubernetes through the fake API server (real api, worker, Temporal)', () => {
  let stack: Stack;
  let gql: Gql;
  let fake: KubernetesFake;

  beforeAll(async () => {
    fake = await startKubernetesFake({
      users: [
        { token: 'e2e-admin-token', name: 'system:serviceaccount:inference:infercp', rules: ALL },
        { token: 'e2e-viewer-token', name: 'viewer', rules: [{ verbs: ['get', 'list'], groups: ['*'], resources: ['*'] }] },
      ],
      namespaces: [NS],
      gpus: 4,
    });
    stack = await startStack({ env: { KUBERNETES_MIN_SCALE_INTERVAL_MS: '100' } });
    gql = stack.as((await stack.workspace('TEAM')).token);
  });
  let demo: KubernetesFake | null = null;
  afterAll(async () => {
    await stack?.close();
    await fake?.stop();
    await demo?.stop();
  });

  const operate = async (mutation: string, variables: Record<string, unknown>) => {
    const data = await must(gql<Record<string, OperationResult>>(mutation, variables));
    await stack.temporal.workflow.getHandle(Object.values(data)[0].workflowId).result();
  };
  const ours = (deploymentId: string) => fake.listDeployments().filter((d) => d.metadata.labels['infercp.dev/deployment'] === deploymentId);

  it('should refuse a kubeconfig the cluster does not let do what the adapter needs, or that needs a plugin, and store nothing', async () => {
    const denied = await gql(ADD, {
      input: { target: 'CUSTOM', name: 'viewer', kubeconfig: fake.kubeconfig('e2e-viewer-token'), namespace: NS },
    });
    expect(denied.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(denied.errors?.[0].message).toMatch(/^kubeconfig: the kubeconfig's user may not create deployments \(API group apps\)/);
    const exec = fake
      .kubeconfig('x')
      .replace('    token: x', '    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: gke-gcloud-auth-plugin');
    const plugin = await gql(ADD, { input: { target: 'CUSTOM', name: 'plugin', kubeconfig: exec, namespace: NS } });
    expect(plugin.errors?.[0]).toMatchObject({
      message: expect.stringMatching(/^kubeconfig: user "infercp" authenticates with an exec plugin, which our workers cannot run/),
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const both = await gql(ADD, {
      input: {
        target: 'CUSTOM',
        name: 'both',
        kubeconfig: fake.kubeconfig('e2e-admin-token'),
        namespace: NS,
        endpoints: [{ url: 'http://10.0.0.5:8000' }],
      },
    });
    expect(both.errors?.[0].message).toMatch(/^endpoints: give either endpoints/);
    const noNs = await gql(ADD, { input: { target: 'CUSTOM', name: 'nons', kubeconfig: fake.kubeconfig('e2e-admin-token') } });
    expect(noNs.errors?.[0].message).toMatch(/^namespace: a Kubernetes CUSTOM credential needs the namespace/);
    expect(await stack.prisma.providerCredential.count({ where: { name: { in: ['viewer', 'plugin', 'both', 'nons'] } } })).toBe(0);
  });

  it('should deploy as a Deployment + Service, stream through the gateway, stop, start, roll back and delete', async () => {
    const { addProviderCredential: cred } = await must(
      gql<{ addProviderCredential: { id: string; accountId: string; demo: boolean; last4: string } }>(ADD, {
        input: { target: 'CUSTOM', name: 'cluster', kubeconfig: fake.kubeconfig('e2e-admin-token'), namespace: NS },
      }),
    );
    expect(cred).toMatchObject({ accountId: `127.0.0.1:${fake.port}/${NS}`, demo: false });
    const listed = await must(
      gql<{ providerCredentials: Array<Record<string, unknown>> }>(`{ providerCredentials { id last4 accountId } }`),
    );
    expect(JSON.stringify(listed)).not.toContain('e2e-admin-token');

    const d = await deployAndWait(gql, {
      pipelineId: await createPipeline(gql, { name: 'k8s-e2e' }),
      target: 'CUSTOM',
      gpu: 'H100',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 2,
      credentialId: cred.id,
    });
    expect(d.status).toBe('ACTIVE');
    const [first] = ours(d.id);
    expect(first.spec.replicas).toBe(1);
    const [replica] = await stack.prisma.replica.findMany({ where: { deploymentId: d.id, state: 'READY' } });
    expect(replica.providerId).toBe(first.metadata.name);

    // The LoadBalancer's URL serves only with the pool's key, which the gateway sends.
    const stranger = new OpenAI({ baseURL: `${replica.address}/v1`, apiKey: 'guess', maxRetries: 0 });
    await expect(streamChat(stranger, 1)).rejects.toMatchObject({ status: 401 });
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: d.apiKey, maxRetries: 0 });
    expect(await streamChat(client, 4)).toMatchObject({ tokens: 4, finish: 'length' });

    // The scaler's count goes to the scale subresource: exact control, unlike bare boxes' fixed capacity.
    await must(
      gql(`mutation($input: ScalingPolicyInput!) { setScalingPolicy(input: $input) { minReplicas maxReplicas } }`, {
        input: { deploymentId: d.id, minReplicas: 2, maxReplicas: 2 },
      }),
    );
    await eventually(async () => ours(d.id)[0].spec.replicas === 2, 30_000);
    await eventually(async () => (await stack.prisma.replica.count({ where: { deploymentId: d.id, state: 'READY' } })) === 2, 30_000);
    expect(await streamChat(client, 2)).toMatchObject({ tokens: 2, finish: 'length' });

    // Stop keeps the Deployment at 0 replicas (no pods, no GPUs held); start scales it back.
    await operate(STOP_DEPLOYMENT, { id: d.id });
    expect(ours(d.id).map((x) => x.spec.replicas)).toEqual([0]);
    await eventually(async () => fake.listPods().filter((p) => p.metadata.name.startsWith(first.metadata.name)).length === 0);
    await operate(START_DEPLOYMENT, { id: d.id });
    expect((await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } })).status).toBe('ACTIVE');
    expect(await streamChat(client, 3)).toMatchObject({ tokens: 3, finish: 'length' });

    // Rollback onto another variant: a second Deployment (its own revision) comes up beside, then the first goes.
    const pipelineId = (await stack.prisma.deployment.findUniqueOrThrow({ where: { id: d.id } })).pipelineId;
    const { createVariant } = await must(
      gql<{ createVariant: { id: string } }>(CREATE_VARIANT, {
        pipelineId,
        input: { name: 'older', gpu: 'H100', engine: 'vllm', maxConcurrency: 16 },
      }),
    );
    await operate(ROLLBACK, { id: d.id, variantId: createVariant.id });
    await eventually(async () => ours(d.id).length === 1 && ours(d.id)[0].metadata.name !== first.metadata.name, 30_000);
    const [second] = ours(d.id);
    expect(second.spec.template.spec.containers[0].args).toEqual(expect.arrayContaining(['--max-num-seqs', '16']));
    expect(await streamChat(client, 2)).toMatchObject({ tokens: 2, finish: 'length' });

    await operate(DELETE_DEPLOYMENT, { id: d.id });
    await eventually(async () => ours(d.id).length === 0);
  });

  it('should register the npm start demo credential on an embedded fake cluster, listed as demo, and deploy on it', async () => {
    const { token } = await ensureDefaultWorkspace(stack.prisma);
    const started = await startKubernetesDemo(stack.config);
    demo = started.fake;
    const own = stack.as(token);
    const { providerCredentials } = await must(
      own<{ providerCredentials: Array<{ id: string; name: string; demo: boolean }> }>(`{ providerCredentials { id name demo } }`),
    );
    expect(providerCredentials).toContainEqual({ id: started.credentialId, name: KUBERNETES_DEMO_CREDENTIAL_NAME, demo: true });
    const d = await deployAndWait(own, {
      pipelineId: await createPipeline(own, { name: 'k8s-demo' }),
      target: 'CUSTOM',
      gpu: 'H100',
      mode: 'FLEX',
      minReplicas: 1,
      maxReplicas: 1,
      credentialId: started.credentialId,
    });
    expect(d.status).toBe('ACTIVE');
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: d.apiKey, maxRetries: 0 });
    expect(await streamChat(client, 3)).toMatchObject({ tokens: 3, finish: 'length' });
    const { deleteDeployment } = await must(own<Record<string, OperationResult>>(DELETE_DEPLOYMENT, { id: d.id }));
    await stack.temporal.workflow.getHandle(deleteDeployment.workflowId).result();
    expect(demo.listDeployments()).toEqual([]);
  });
});
