import { loadConfig } from '../config/config';
import { describeTemporalConnection, temporalConnectionOptions } from './connection';

describe('Temporal connection options', () => {
  it('should be plaintext to the address by default (the dev server)', () => {
    expect(temporalConnectionOptions(loadConfig({ TEMPORAL_ADDRESS: 'temporal:7233' }))).toEqual({ address: 'temporal:7233' });
  });

  it('should turn TLS on with a Temporal Cloud API key, and never say the key when described', () => {
    const c = loadConfig({ TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', TEMPORAL_API_KEY: 'tcld-secret-key-123' });
    expect(temporalConnectionOptions(c)).toEqual({ address: 'ns.acct.tmprl.cloud:7233', tls: {}, apiKey: 'tcld-secret-key-123' });
    const said = describeTemporalConnection(c);
    expect(said).toEqual({ address: 'ns.acct.tmprl.cloud:7233', tls: true, mtls: false, apiKey: true });
    expect(JSON.stringify(said)).not.toContain('tcld-secret');
  });

  it('should take TEMPORAL_TLS=true alone as TLS with the system roots', () => {
    expect(temporalConnectionOptions(loadConfig({ TEMPORAL_TLS: 'true' })).tls).toEqual({});
  });
});
