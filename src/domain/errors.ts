// Typed errors, one code enum, mapped once per transport (GraphQL extensions.code,
// OpenAI envelope on /v1/*). Pure: no imports.

export enum ErrorCode {
  UNAUTHENTICATED = 'UNAUTHENTICATED',
  FORBIDDEN = 'FORBIDDEN',
  NOT_FOUND = 'NOT_FOUND',
  BAD_USER_INPUT = 'BAD_USER_INPUT',
  CONFLICT = 'CONFLICT',
  PLAN_LIMIT = 'PLAN_LIMIT',
  OPERATION_IN_PROGRESS = 'OPERATION_IN_PROGRESS',
  UNAVAILABLE = 'UNAVAILABLE',
  INTERNAL = 'INTERNAL',
}

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (what: string, id: string) => new DomainError(ErrorCode.NOT_FOUND, `${what} ${id} not found`, { id });

// ---- Activity failures ----
// An activity's error name becomes the ApplicationFailure type the workflows see. The classes live
// here, in the pure zone, so that workflows derive their non-retryable lists from the classes
// themselves instead of restating the names as strings.

/** An activity error that no retry can fix: listed in every workflow's nonRetryableErrorTypes. */
export abstract class PermanentError extends Error {}

/** The plan forbids the operation, or the target is not configured on this worker. */
export class PlanError extends PermanentError {
  override readonly name = 'PlanError';
}

/** The rows are not in the state the step needs (a revision that is not STAGED, one that has no ready replica). */
export class StateError extends PermanentError {
  override readonly name = 'StateError';
}

/** A row the activity acts on is gone. */
export class NotFoundError extends PermanentError {
  override readonly name = 'NotFoundError';
}

/** A replica exited before it served, or did not turn healthy in time. */
export class ReplicaUnhealthyError extends PermanentError {
  override readonly name = 'ReplicaUnhealthyError';
}

/** A provider call that failed in a way a retry may fix (5xx, timeout, rate limit). */
export class ProviderError extends Error {
  override readonly name = 'ProviderError';
}

/** A provider call that a retry cannot fix (bad credentials, unknown GPU, quota refused). */
export class ProviderPermanentError extends PermanentError {
  override readonly name = 'ProviderPermanentError';
}

type ErrorClass = abstract new (message: string) => Error;

/** The ApplicationFailure type an error class produces: the SDK takes the constructor's name. */
export const failureType = (c: ErrorClass): string => c.name;

/** Every permanent activity error's type, for nonRetryableErrorTypes. */
export const PERMANENT_FAILURES: readonly string[] = [
  PlanError,
  StateError,
  NotFoundError,
  ReplicaUnhealthyError,
  ProviderPermanentError,
].map(failureType);
