// How the api's client and the worker reach Temporal: the address, and TLS (mTLS, a private CA) or a Temporal Cloud API
// key when the config names them. One builder for both, so the api and the worker never disagree about the cluster.
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import type { Config } from '../config/config';

export interface TemporalConnectionOptions {
  address: string;
  /** Absent: plaintext (the dev server, a cluster on a private network). */
  tls?: TLSConfig;
  apiKey?: string;
}

type TemporalSettings = Pick<
  Config,
  | 'TEMPORAL_ADDRESS'
  | 'TEMPORAL_TLS'
  | 'TEMPORAL_TLS_CA_FILE'
  | 'TEMPORAL_TLS_CERT_FILE'
  | 'TEMPORAL_TLS_KEY_FILE'
  | 'TEMPORAL_TLS_SERVER_NAME'
  | 'TEMPORAL_API_KEY'
>;

/** The options of Connection (client) and NativeConnection (worker); the files are read here, at each connect. */
export function temporalConnectionOptions(c: TemporalSettings): TemporalConnectionOptions {
  const mtls = Boolean(c.TEMPORAL_TLS_CERT_FILE && c.TEMPORAL_TLS_KEY_FILE);
  // An API key travels as a bearer token: never in plaintext, so it turns TLS on (Temporal Cloud requires it anyway).
  const useTls = c.TEMPORAL_TLS || mtls || Boolean(c.TEMPORAL_TLS_CA_FILE) || Boolean(c.TEMPORAL_API_KEY);
  const out: TemporalConnectionOptions = { address: c.TEMPORAL_ADDRESS };
  if (useTls) {
    out.tls = {
      ...(c.TEMPORAL_TLS_SERVER_NAME ? { serverNameOverride: c.TEMPORAL_TLS_SERVER_NAME } : {}),
      ...(c.TEMPORAL_TLS_CA_FILE ? { serverRootCACertificate: readFileSync(c.TEMPORAL_TLS_CA_FILE) } : {}),
      ...(mtls ? { clientCertPair: { crt: readFileSync(c.TEMPORAL_TLS_CERT_FILE), key: readFileSync(c.TEMPORAL_TLS_KEY_FILE) } } : {}),
    };
  }
  if (c.TEMPORAL_API_KEY) out.apiKey = c.TEMPORAL_API_KEY;
  return out;
}

/** What the logs may say about the connection: never the key or the certificates themselves. */
export function describeTemporalConnection(c: TemporalSettings): Record<string, unknown> {
  const o = temporalConnectionOptions(c);
  return { address: o.address, tls: Boolean(o.tls), mtls: Boolean(o.tls?.clientCertPair), apiKey: Boolean(o.apiKey) };
}
