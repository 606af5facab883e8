import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { ConfigError, loadConfig } from '../../src/config/config';
import { temporalConnectionOptions } from '../../src/temporal/connection';

/**
 * The api's client and the worker reaching a Temporal frontend that requires mTLS with a private CA: the run's real
 * dev server behind a TLS terminator (ALPN h2, client certificates required), as a TLS-enabled cluster's frontend is.
 */
describe('Temporal over TLS (the real dev server behind an mTLS terminator)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'infercp-tls-'));
  const f = (name: string) => join(dir, name);
  let proxy: tls.Server;
  let address: string;

  /** A CA, a server certificate for temporal.test and 127.0.0.1, and a client certificate, with openssl. */
  const pki = () => {
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=infercp test CA');
    for (const [who, ext] of [
      ['server', 'subjectAltName=DNS:temporal.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'],
      ['client', 'subjectAltName=DNS:infercp-worker\nextendedKeyUsage=clientAuth\n'],
    ]) {
      openssl('req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`);
      writeFileSync(f(`${who}.ext`), ext);
      openssl(
        'x509',
        '-req',
        '-in',
        `${who}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${who}.pem`,
        '-days',
        '2',
        '-extfile',
        `${who}.ext`,
      );
    }
  };

  beforeAll(async () => {
    pki();
    const [host, port] = process.env.TEMPORAL_ADDRESS!.split(':');
    proxy = tls.createServer(
      {
        key: readFileSync(f('server.key')),
        cert: readFileSync(f('server.pem')),
        ca: readFileSync(f('ca.pem')),
        requestCert: true,
        rejectUnauthorized: true,
        ALPNProtocols: ['h2'],
      },
      (client) => {
        const upstream = net.connect(Number(port), host);
        client.pipe(upstream).pipe(client);
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
      },
    );
    proxy.on('tlsClientError', () => {});
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    address = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => proxy.close(r));
  });

  const config = (env: Record<string, string>) => loadConfig({ ...process.env, TEMPORAL_ADDRESS: address, ...env });
  const mtls = {
    TEMPORAL_TLS_CA_FILE: f('ca.pem'),
    TEMPORAL_TLS_CERT_FILE: f('client.pem'),
    TEMPORAL_TLS_KEY_FILE: f('client.key'),
    TEMPORAL_TLS_SERVER_NAME: 'temporal.test',
  };

  it("should connect the api's client and the worker's connection with the client certificate and the private CA", async () => {
    const options = temporalConnectionOptions(config(mtls));
    const client = await Connection.connect(options);
    try {
      const ns = await client.workflowService.describeNamespace({ namespace: 'default' });
      expect(ns.namespaceInfo?.name).toBe('default');
    } finally {
      await client.close();
    }
    // The worker's (Rust) connection checks the server on connect.
    const native = await NativeConnection.connect(options);
    await native.close();
  });

  it('should fail to connect without the client certificate the frontend requires', async () => {
    const { TEMPORAL_TLS_CA_FILE, TEMPORAL_TLS_SERVER_NAME } = mtls;
    const options = temporalConnectionOptions(config({ TEMPORAL_TLS_CA_FILE, TEMPORAL_TLS_SERVER_NAME }));
    await expect(Connection.connect({ ...options, connectTimeout: 3000 })).rejects.toThrow();
  });

  it('should fail to connect when the server is not signed by the configured CA', async () => {
    // The client certificate as the "CA": it signed nothing the server presents.
    const options = temporalConnectionOptions(config({ ...mtls, TEMPORAL_TLS_CA_FILE: f('client.pem') }));
    await expect(Connection.connect({ ...options, connectTimeout: 3000 })).rejects.toThrow();
  });

  it('should refuse a certificate without its key, and a file it cannot read, naming the variable', () => {
    const problems = (env: Record<string, string>) => {
      try {
        config(env);
        return [];
      } catch (e) {
        return (e as ConfigError).problems;
      }
    };
    expect(problems({ TEMPORAL_TLS_CERT_FILE: f('client.pem') })).toEqual([
      'TEMPORAL_TLS_KEY_FILE: required with TEMPORAL_TLS_CERT_FILE (a client certificate and its key go together)',
    ]);
    expect(problems({ TEMPORAL_TLS_CA_FILE: f('missing.pem') })).toEqual([
      `TEMPORAL_TLS_CA_FILE=${JSON.stringify(f('missing.pem'))}: cannot be read (ENOENT)`,
    ]);
  });
});
