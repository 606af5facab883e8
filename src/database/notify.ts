import type { PrismaClient } from './prisma';

// Postgres NOTIFY: writers (activities, the keys service) tell every gateway's Directory that a
// route or a key changed; the payload is the deployment or key id. The one home of the channel names.

export const CHANNEL_ROUTES = 'infercp_routes';
export const CHANNEL_KEYS = 'infercp_keys';
export type Channel = typeof CHANNEL_ROUTES | typeof CHANNEL_KEYS;

type Raw = Pick<PrismaClient, '$executeRaw'>;

/** The NOTIFY as a statement; pass it to $transaction to send it only if the transaction commits. */
export const notify = (db: Raw, channel: Channel, payload: string) => db.$executeRaw`SELECT pg_notify(${channel}, ${payload})`;
