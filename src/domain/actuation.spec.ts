import { planActuation, ReplicaView } from './actuation';

const r = (id: string, state: ReplicaView['state'], startedAt: number): ReplicaView => ({ id, state, startedAt });

describe('planActuation', () => {
  it.each([
    ['nothing to do at the desired count', 2, [r('a', 'READY', 1), r('b', 'READY', 2)], { reuse: [], start: 0, drain: [] }],
    ['starts what is missing, all at once', 4, [r('a', 'READY', 1)], { reuse: [], start: 3, drain: [] }],
    ['counts starting replicas as capacity on the way', 3, [r('a', 'READY', 1), r('b', 'STARTING', 2)], { reuse: [], start: 1, drain: [] }],
    [
      'reuses draining replicas before starting any, newest first',
      3,
      [r('a', 'READY', 1), r('b', 'DRAINING', 2), r('c', 'DRAINING', 3)],
      { reuse: ['c', 'b'], start: 0, drain: [] },
    ],
    ['reuses what drains and starts the rest', 4, [r('a', 'READY', 1), r('b', 'DRAINING', 2)], { reuse: ['b'], start: 2, drain: [] }],
    [
      'drains starting replicas before ready ones',
      1,
      [r('a', 'READY', 1), r('b', 'READY', 2), r('c', 'STARTING', 3)],
      { reuse: [], start: 0, drain: ['c', 'b'] },
    ],
    [
      'drains the newest ready replicas first',
      1,
      [r('a', 'READY', 1), r('b', 'READY', 3), r('c', 'READY', 2)],
      { reuse: [], start: 0, drain: ['b', 'c'] },
    ],
    [
      'leaves replicas already draining alone on a scale-down',
      1,
      [r('a', 'READY', 1), r('b', 'DRAINING', 2)],
      { reuse: [], start: 0, drain: [] },
    ],
    ['goes to zero', 0, [r('a', 'READY', 1)], { reuse: [], start: 0, drain: ['a'] }],
  ] as const)('%s', (_what, desired, replicas, plan) => {
    expect(planActuation(desired, [...replicas])).toEqual(plan);
  });
});
