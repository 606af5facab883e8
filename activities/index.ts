// Activity factory: plain async functions over injected dependencies, grouped by what they act on.
// Every activity is idempotent, so Temporal may retry or replay it freely.
import { ActivityDeps, activityContext } from './context';
import { deploymentActivities } from './deployment';
import { keyActivities } from './keys';
import { lifecycleActivities } from './lifecycle';
import { optimizationActivities } from './optimization';
import { replicaActivities } from './replicas';
import { revisionActivities } from './revisions';

export type { ActivityDeps } from './context';
export { replicaId } from './replicas';

export function createActivities(deps: ActivityDeps) {
  const ctx = activityContext(deps);
  return {
    ...deploymentActivities(ctx),
    ...replicaActivities(ctx),
    ...keyActivities(ctx),
    ...lifecycleActivities(ctx),
    ...revisionActivities(ctx),
    ...optimizationActivities(ctx, deps.prices),
  };
}

export type Activities = ReturnType<typeof createActivities>;
