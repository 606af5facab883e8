import { ApplicationFailure } from '@temporalio/common';
import {
  NotFoundError,
  PERMANENT_FAILURES,
  PlanError,
  ProviderError,
  ProviderPermanentError,
  ReplicaUnhealthyError,
  StateError,
} from './errors';

describe('activity failure types', () => {
  it.each([PlanError, StateError, NotFoundError, ReplicaUnhealthyError, ProviderPermanentError])(
    'should list %p as permanent under the type the SDK gives it',
    (C) => {
      const type = ApplicationFailure.fromError(new C('x')).type;
      expect(PERMANENT_FAILURES).toContain(type);
      expect(new C('x').name).toBe(type);
    },
  );

  it('should leave a transient provider error retryable', () => {
    expect(PERMANENT_FAILURES).not.toContain(ApplicationFailure.fromError(new ProviderError('503')).type);
  });
});
