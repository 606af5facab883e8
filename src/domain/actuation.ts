// How a replica count is applied: which replicas to start, reuse or drain. Pure, so the rules are
// table-tested apart from the database and the provider (activities/replicas.ts applies the plan).

export interface ReplicaView {
  id: string;
  state: 'STARTING' | 'READY' | 'DRAINING';
  /** Epoch ms. */
  startedAt: number;
}

export interface ActuationPlan {
  /** Draining replicas that go back to serving instead of starting new ones. */
  reuse: string[];
  /** How many new replicas to start. */
  start: number;
  /** Live replicas to drain and stop. */
  drain: string[];
}

/**
 * Brings live replicas (starting or ready) to `desired`. Up: draining replicas come back first
 * (newest first: their weights are the most recently used), then new ones make up the rest. Down:
 * starting replicas go first (they serve nothing), then the newest ready ones.
 */
export function planActuation(desired: number, replicas: ReplicaView[]): ActuationPlan {
  const live = replicas.filter((r) => r.state !== 'DRAINING');
  const draining = replicas.filter((r) => r.state === 'DRAINING').sort((a, b) => b.startedAt - a.startedAt);
  if (desired > live.length) {
    const reuse = draining.slice(0, desired - live.length).map((r) => r.id);
    return { reuse, start: desired - live.length - reuse.length, drain: [] };
  }
  if (desired < live.length) {
    const order = [...live].sort((a, b) => (a.state === b.state ? b.startedAt - a.startedAt : a.state === 'STARTING' ? -1 : 1));
    return { reuse: [], start: 0, drain: order.slice(0, live.length - desired).map((r) => r.id) };
  }
  return { reuse: [], start: 0, drain: [] };
}
