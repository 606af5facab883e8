// Plan rules from the reference documents. Pure: imported by services and workflows.

export type PlanName = 'STARTER' | 'PRO' | 'TEAM' | 'ENTERPRISE';
import type { Mode, Task } from './targets';

export type ModeName = Mode;
export type TaskName = Task;

export interface PlanLimits {
  canDeploy: boolean;
  modes: ModeName[];
  /** Replica ceiling for one deployment; null = custom (set per workspace). */
  maxReplicas: number | null;
  /** Concurrent requests across the workspace; null = custom. */
  maxConcurrency: number | null;
  /** Playground requests per day; null = unlimited. */
  playgroundPerDay: number | null;
  /** Per-key request limit per minute: default and the most it may be raised to. */
  keyRateDefault: number | null;
  keyRateMax: number | null;
}

export const PLANS: Record<PlanName, PlanLimits> = {
  STARTER: {
    canDeploy: false,
    modes: [],
    maxReplicas: 0,
    maxConcurrency: 0,
    playgroundPerDay: 100,
    keyRateDefault: null,
    keyRateMax: null,
  },
  PRO: {
    canDeploy: true,
    modes: ['FLEX'],
    maxReplicas: 8,
    maxConcurrency: 240,
    playgroundPerDay: null,
    keyRateDefault: 500,
    keyRateMax: 1000,
  },
  TEAM: {
    canDeploy: true,
    modes: ['FLEX', 'ACTIVE'],
    maxReplicas: 32,
    maxConcurrency: 960,
    playgroundPerDay: null,
    keyRateDefault: 5000,
    keyRateMax: 10000,
  },
  ENTERPRISE: {
    canDeploy: true,
    modes: ['FLEX', 'ACTIVE'],
    maxReplicas: null,
    maxConcurrency: null,
    playgroundPerDay: null,
    keyRateDefault: 5000,
    keyRateMax: null,
  },
};

/** Each replica serves up to 30 concurrent requests unless its variant says otherwise. */
export const DEFAULT_REPLICA_CONCURRENCY = 30;

/** Target in-flight requests per replica by task (reference: chat ~32, embeddings ~256, image 1-4). */
export const DEFAULT_TARGET_CONCURRENCY: Record<TaskName, number> = {
  CHAT: 32,
  EMBEDDINGS: 256,
  IMAGE: 2,
  AUDIO: 8,
};

/**
 * The scaler's target: what the optimization run measured, else the task default,
 * never above what one replica can serve.
 */
export function targetConcurrency(task: TaskName, replicaCap: number, measured?: number | null): number {
  const wanted = measured ?? DEFAULT_TARGET_CONCURRENCY[task];
  return Math.max(1, Math.min(wanted, replicaCap));
}

/** Effective replica ceiling for a workspace, honouring Enterprise overrides. */
export function planMaxReplicas(plan: PlanName, override?: number | null): number {
  return override ?? PLANS[plan].maxReplicas ?? Number.MAX_SAFE_INTEGER;
}

export function planMaxConcurrency(plan: PlanName, override?: number | null): number {
  return override ?? PLANS[plan].maxConcurrency ?? Number.MAX_SAFE_INTEGER;
}

/** Mode defaults from the reference: Flex idles to zero after 5 min and scales down after 30 s; Active after 120 s. */
export const MODE_DEFAULTS: Record<ModeName, { minReplicas: number; scaleDownWindowSeconds: number; idleTimeoutSeconds: number }> = {
  FLEX: { minReplicas: 0, scaleDownWindowSeconds: 30, idleTimeoutSeconds: 300 },
  ACTIVE: { minReplicas: 1, scaleDownWindowSeconds: 120, idleTimeoutSeconds: 300 },
};

export interface PlanViolation {
  message: string;
  field?: 'mode' | 'maxReplicas';
  limit?: number;
}

/**
 * The reference's plan rules for a deployment, checked by the api (a clear error at
 * once) and again by the deploy workflow (the plan may change in between).
 */
export function planViolation(
  plan: PlanName,
  mode: ModeName,
  maxReplicas: number,
  maxReplicasOverride?: number | null,
): PlanViolation | null {
  const limits = PLANS[plan];
  if (!limits.canDeploy) {
    return { message: `the ${plan} plan cannot deploy; deployment needs the Pro plan or higher (Starter can test in the playground)` };
  }
  if (!limits.modes.includes(mode)) {
    return { message: `${mode} mode needs the Team plan or higher (workspace is on ${plan})`, field: 'mode' };
  }
  return ceilingViolation(plan, maxReplicas, maxReplicasOverride);
}

/**
 * planViolation's replica ceiling on its own: all the what-if simulation holds a policy to (it may
 * simulate a mode the plan cannot deploy).
 */
export function ceilingViolation(plan: PlanName, maxReplicas: number, maxReplicasOverride?: number | null): PlanViolation | null {
  const cap = planMaxReplicas(plan, maxReplicasOverride);
  if (maxReplicas > cap) {
    return { message: `maxReplicas ${maxReplicas} exceeds the ${plan} plan's ceiling of ${cap}`, field: 'maxReplicas', limit: cap };
  }
  return null;
}
