import { ConfigError, loadConfig } from './config';

describe('loadConfig', () => {
  it('should give every key its embedded default when the environment is empty', () => {
    const c = loadConfig({});
    expect(c.DATABASE_URL).toBe('postgresql://postgres@127.0.0.1:5432/infercp');
    expect(c.TEMPORAL_ADDRESS).toBe('127.0.0.1:7233');
    expect(c.TEMPORAL_TASK_QUEUE).toBe('deployments');
    expect(c.API_PORT).toBe(8080);
    expect(c.PUBLIC_BASE_URL).toBe('http://127.0.0.1:8080');
  });

  it('should treat an empty variable as unset', () => {
    expect(loadConfig({ API_PORT: '' }).API_PORT).toBe(8080);
  });

  it.each([
    ['API_PORT', '70000', 'API_PORT="70000": must be an integer from 0 to 65535'],
    ['API_PORT', 'http', 'API_PORT="http": must be an integer from 0 to 65535'],
    ['DEPLOY_HEALTH_TIMEOUT_SECONDS', '-1', 'DEPLOY_HEALTH_TIMEOUT_SECONDS="-1": must be a positive integer'],
    ['TEMPORAL_ADDRESS', 'localhost', 'TEMPORAL_ADDRESS="localhost": must be host:port'],
    ['DATABASE_URL', 'mysql://x', 'DATABASE_URL="mysql://x": must be a postgres:// or postgresql:// URL'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL="loud": '],
    ['METRICS_ENABLED', 'maybe', 'METRICS_ENABLED="maybe": '],
  ])('should stop with a message naming %s, its value and the rule when it is %s', (key, value, expected) => {
    let err: unknown;
    try {
      loadConfig({ [key]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toHaveLength(1);
    expect((err as ConfigError).problems[0].startsWith(expected)).toBe(true);
  });

  it('should never echo a secret value in the error', () => {
    expect(() => loadConfig({ BOOTSTRAP_TOKEN: 'hunter2' })).toThrow('BOOTSTRAP_TOKEN=<redacted>: must look like mt_');
    expect(() => loadConfig({ SECRETS_KEY: 'short' })).toThrow('SECRETS_KEY=<redacted>: must be 32 bytes');
  });

  it('should list every bad key at once', () => {
    const err = (() => {
      try {
        loadConfig({ API_PORT: 'x', TEMPORAL_ADDRESS: 'y' });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err?.problems.sort()).toEqual(['API_PORT="x": must be an integer from 0 to 65535', 'TEMPORAL_ADDRESS="y": must be host:port']);
  });
});
