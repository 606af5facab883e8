import { ceilingViolation, PLANS, planMaxConcurrency, planMaxReplicas, planViolation, targetConcurrency } from './plans';

describe('plans', () => {
  it.each([
    ['STARTER', false, [], 0, 0],
    ['PRO', true, ['FLEX'], 8, 240],
    ['TEAM', true, ['FLEX', 'ACTIVE'], 32, 960],
  ] as const)('should give %s the reference limits', (plan, canDeploy, modes, maxReplicas, maxConcurrency) => {
    expect(PLANS[plan].canDeploy).toBe(canDeploy);
    expect(PLANS[plan].modes).toEqual(modes);
    expect(planMaxReplicas(plan)).toBe(maxReplicas);
    expect(planMaxConcurrency(plan)).toBe(maxConcurrency);
    // The budget is max replicas x 30 concurrent requests per replica.
    expect(maxConcurrency).toBe(maxReplicas * 30);
  });

  it('should let an Enterprise workspace set its own caps', () => {
    expect(planMaxReplicas('ENTERPRISE', 100)).toBe(100);
    expect(planMaxReplicas('TEAM', 100)).toBe(100);
    expect(planMaxReplicas('ENTERPRISE')).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([
    ['CHAT', 30, undefined, 30], // default 32, capped by the replica's 30
    ['CHAT', 64, undefined, 32],
    ['EMBEDDINGS', 512, undefined, 256],
    ['EMBEDDINGS', 30, undefined, 30],
    ['IMAGE', 30, undefined, 2],
    ['CHAT', 30, 12, 12], // measured by the optimization run
    ['CHAT', 30, 48, 30], // measured above the cap is capped
    ['CHAT', 30, 0, 1], // never below 1
  ] as const)('should target %s at min(measured ?? default, cap %d) = %d', (task, cap, measured, expected) => {
    expect(targetConcurrency(task, cap, measured)).toBe(expected);
  });
});

describe('planViolation', () => {
  it.each([
    [
      'STARTER',
      'FLEX',
      1,
      null,
      { message: 'the STARTER plan cannot deploy; deployment needs the Pro plan or higher (Starter can test in the playground)' },
    ],
    ['PRO', 'ACTIVE', 2, null, { message: 'ACTIVE mode needs the Team plan or higher (workspace is on PRO)', field: 'mode' }],
    ['PRO', 'FLEX', 9, null, { message: "maxReplicas 9 exceeds the PRO plan's ceiling of 8", field: 'maxReplicas', limit: 8 }],
    [
      'ENTERPRISE',
      'ACTIVE',
      101,
      100,
      { message: "maxReplicas 101 exceeds the ENTERPRISE plan's ceiling of 100", field: 'maxReplicas', limit: 100 },
    ],
    ['PRO', 'FLEX', 8, null, null],
    ['TEAM', 'ACTIVE', 32, null, null],
  ] as const)('should judge %s %s with max %d (override %s)', (plan, mode, max, override, expected) => {
    expect(planViolation(plan, mode, max, override)).toEqual(expected);
  });

  it("should hold the simulation to the plan's ceiling alone, in planViolation's words", () => {
    expect(ceilingViolation('PRO', 9)).toEqual(planViolation('PRO', 'FLEX', 9));
    // A Pro workspace may simulate ACTIVE, which it cannot deploy.
    expect(ceilingViolation('PRO', 8)).toBeNull();
    expect(ceilingViolation('STARTER', 1)).toMatchObject({ message: "maxReplicas 1 exceeds the STARTER plan's ceiling of 0", limit: 0 });
  });
});
