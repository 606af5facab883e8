import { Gql, GqlResult, must } from '../support/graphql';
import { Stack, startStack } from '../support/stack';

const SET_POLICY = `mutation($input: ScalingPolicyInput!) {
  setScalingPolicy(input: $input) { mode minReplicas maxReplicas scaleDownWindowSeconds paused } }`;
const DEPLOYMENT = `query($id: ID!) { deployment(id: $id) { mode minReplicas maxReplicas events { kind message } scaling { mode minReplicas } } }`;

interface Policy {
  mode: string;
  minReplicas: number;
  maxReplicas: number;
}

/** setScalingPolicy through the real api and a real scaler workflow: knobs and the Flex <-> Active switch. */
describe('setScalingPolicy (real api, worker and scaler workflow)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.close();
  });
  const errorOf = (r: GqlResult<unknown>) => r.errors?.[0];

  it('should switch a Team deployment Flex -> Active (lifting a floor of 0 to 1) and back, in the scaler and the row', async () => {
    const ws = await stack.workspace('TEAM');
    const gql: Gql = stack.as(ws.token);
    const { deploymentId: id } = await stack.deployed(ws.token, { name: 'modes' }, { mode: 'FLEX', minReplicas: 0, maxReplicas: 2 });
    const set = (input: Record<string, unknown>) =>
      gql<{ setScalingPolicy: Policy }>(SET_POLICY, { input: { deploymentId: id, ...input } });

    expect((await must(set({ mode: 'ACTIVE' }))).setScalingPolicy).toMatchObject({
      mode: 'ACTIVE',
      minReplicas: 1,
      maxReplicas: 2,
      paused: false,
    });
    const active = (
      await must(gql<{ deployment: Policy & { events: Array<{ kind: string; message: string }>; scaling: Policy } }>(DEPLOYMENT, { id }))
    ).deployment;
    expect(active).toMatchObject({ mode: 'ACTIVE', minReplicas: 1, scaling: { mode: 'ACTIVE', minReplicas: 1 } });
    expect(active.events.filter((e) => e.kind === 'policy.mode').map((e) => e.message)).toEqual([
      'mode FLEX -> ACTIVE: usage is priced as ACTIVE from now on',
    ]);

    // Active keeps a warm replica: a floor of 0 is refused, naming the knob and the rule.
    const zero = errorOf(await set({ minReplicas: 0 }));
    expect(zero?.extensions.code).toBe('BAD_USER_INPUT');
    expect(zero?.message).toContain('minReplicas=0: ACTIVE mode keeps at least 1 warm replica');

    expect((await must(set({ mode: 'FLEX', minReplicas: 0 }))).setScalingPolicy).toMatchObject({ mode: 'FLEX', minReplicas: 0 });
    expect((await must(gql<{ deployment: Policy }>(DEPLOYMENT, { id }))).deployment).toMatchObject({ mode: 'FLEX', minReplicas: 0 });
  });

  it('should refuse Active on a Pro workspace with PLAN_LIMIT, changing nothing', async () => {
    const ws = await stack.workspace('PRO');
    const gql: Gql = stack.as(ws.token);
    const { deploymentId: id } = await stack.deployed(ws.token, { name: 'pro-modes' }, { mode: 'FLEX', minReplicas: 0, maxReplicas: 1 });
    const e = errorOf(await gql(SET_POLICY, { input: { deploymentId: id, mode: 'ACTIVE' } }));
    expect(e?.extensions).toMatchObject({ code: 'PLAN_LIMIT', plan: 'PRO' });
    expect(e?.message).toMatch(/ACTIVE/);
    expect((await must(gql<{ deployment: Policy }>(DEPLOYMENT, { id }))).deployment).toMatchObject({ mode: 'FLEX', minReplicas: 0 });
  });
});
