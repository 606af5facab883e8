import { ApplicationFailure } from '@temporalio/common';
import { ProviderError, ProviderPermanentError } from '../errors';
import { kubeFailure, PodView, poolObjectName, poolStatusOf, transientKube } from './mapping';

const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

describe('poolObjectName', () => {
  it('should give a DNS-1035 name of at most 63 characters from base64url ids', () => {
    const name = poolObjectName('infercp', 'dep_AbC-dEf_GhIjKlMnOpQrStUv', 'rev_ZyX_wvu-TSRqpoNMLkjihg');
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(DNS1035);
    expect(name).toMatch(/^infercp-dep-abc-def-ghijklmnopqrstuv-rev-zyx-wvu-[a-z0-9-]*-[0-9a-f]{10}$/);
  });

  it('should keep two ids apart that differ only in case', () => {
    expect(poolObjectName('infercp', 'dep_Aa', 'rev_1')).not.toBe(poolObjectName('infercp', 'dep_aA', 'rev_1'));
  });

  it('should be stable for a revision and name a deployment from before revisions', () => {
    expect(poolObjectName('infercp', 'dep_x', 'rev_y')).toBe(poolObjectName('infercp', 'dep_x', 'rev_y'));
    expect(poolObjectName('infercp', 'dep_x', null)).toMatch(/^infercp-dep-x-r0-[0-9a-f]{10}$/);
  });
});

const pod = (status: PodView['status'], deleting = false): PodView => ({
  metadata: { name: 'p', ...(deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
  status,
});
const ready = pod({ phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] });
const loading = pod({ phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }] });
const GPU_MSG =
  '0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.';
const unschedulable = pod({
  phase: 'Pending',
  conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: GPU_MSG }],
});
const waiting = (reason: string, message?: string) =>
  pod({ phase: 'Pending', containerStatuses: [{ ready: false, state: { waiting: { reason, message } } }] });

describe('poolStatusOf', () => {
  it.each([
    ['a Ready pod serves', [ready], { serviceable: 1 }, []],
    ['a pod whose probe has not passed initializes', [loading], { initializing: 1 }, []],
    ['ContainerCreating initializes', [waiting('ContainerCreating')], { initializing: 1 }, []],
    [
      'a pod the scheduler has no GPU for is throttled',
      [unschedulable, unschedulable],
      { throttled: 2 },
      [`Unschedulable: ${GPU_MSG} (2 pods)`],
    ],
    [
      'ImagePullBackOff is unhealthy',
      [waiting('ImagePullBackOff', 'Back-off pulling image "x"')],
      { unhealthy: 1 },
      ['ImagePullBackOff: Back-off pulling image "x"'],
    ],
    ['ErrImagePull is unhealthy', [waiting('ErrImagePull')], { unhealthy: 1 }, ['ErrImagePull']],
    ['CrashLoopBackOff is unhealthy', [waiting('CrashLoopBackOff', 'back-off 10s')], { unhealthy: 1 }, ['CrashLoopBackOff: back-off 10s']],
    ['a terminating pod is not counted', [pod({ conditions: [{ type: 'Ready', status: 'True' }] }, true)], {}, []],
  ])('%s', (_name, pods, counts, reasons) => {
    const s = poolStatusOf({}, pods, 0);
    expect(s).toEqual({ serviceable: 0, initializing: 0, throttled: 0, unhealthy: 0, inFlight: 0, ...counts, reasons });
  });

  it('should give up on initializing pods once the Deployment is past its progress deadline', () => {
    const d = {
      status: {
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'ProgressDeadlineExceeded',
            message: 'ReplicaSet "x" has timed out progressing.',
          },
        ],
      },
    };
    expect(poolStatusOf(d, [ready, loading], null)).toMatchObject({
      serviceable: 1,
      initializing: 0,
      unhealthy: 1,
      reasons: ['ProgressDeadlineExceeded: ReplicaSet "x" has timed out progressing.'],
    });
  });
});

/** What client-node throws: an ApiException with code, the Status as a string body (none for 401), and headers. */
const apiError = (code: number, body?: object, headers: Record<string, string> = {}) =>
  Object.assign(new Error(`HTTP-Code: ${code}`), { code, body: body ? JSON.stringify(body) : undefined, headers });
const statusBody = (code: number, reason: string, message: string) => ({ kind: 'Status', status: 'Failure', code, reason, message });

describe('kubeFailure', () => {
  it('should map 401 with no body on its code to a permanent error naming the credential', () => {
    const e = kubeFailure(apiError(401), 'create pool p');
    expect(e).toBeInstanceOf(ProviderPermanentError);
    expect(e.message).toBe(
      "Kubernetes refused the credential's token or certificate to create pool p (401 Unauthorized): replace the credential",
    );
  });

  it.each([
    [
      403,
      'Forbidden',
      'deployments.apps is forbidden: User "viewer" cannot create resource "deployments" in API group "apps" in the namespace "ml"',
    ],
    [422, 'Invalid', 'Deployment.apps "bad1" is invalid: spec.template.spec.containers[0].resources.limits: Required value'],
    [404, 'NotFound', 'namespaces "ml" not found'],
    [400, 'BadRequest', 'error decoding patch'],
  ])('should map %i %s to a permanent error with the cluster message', (code, reason, message) => {
    const e = kubeFailure(apiError(code, statusBody(code, reason, message)), 'create pool p');
    expect(e).toBeInstanceOf(ProviderPermanentError);
    expect(e.message).toBe(`Kubernetes create pool p: ${reason}: ${message}`);
  });

  it('should map 429 with Retry-After to a retryable failure that waits that long', () => {
    const e = kubeFailure(apiError(429, statusBody(429, 'TooManyRequests', 'Too many requests'), { 'retry-after': '7' }), 'scale');
    expect(e).toBeInstanceOf(ApplicationFailure);
    expect((e as ApplicationFailure).type).toBe('ProviderError');
    expect((e as ApplicationFailure).nextRetryDelay).toBe('7s');
  });

  it.each([
    ['a 5xx', apiError(504, statusBody(504, 'Timeout', 'the server was unable to return a response in the time allotted'))],
    ['a Conflict', apiError(409, statusBody(409, 'Conflict', 'the object has been modified'))],
    ['a connection reset', Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNRESET' } })],
  ])('should treat %s as transient', (_name, err) => {
    expect(transientKube(err)).toBe(true);
    expect(kubeFailure(err, 'read pool p')).toBeInstanceOf(ProviderError);
  });

  it('should not retry a permanent refusal', () => {
    expect(transientKube(apiError(403, statusBody(403, 'Forbidden', 'no')))).toBe(false);
    expect(transientKube(apiError(401))).toBe(false);
  });
});
