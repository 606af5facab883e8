// Provider errors. The classes live in src/domain/errors.ts so that workflows can name them in
// their retry policies; adapters import them from here.
export { ProviderError, ProviderPermanentError } from '../domain/errors';
