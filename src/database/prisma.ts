import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client';

export { PrismaClient };
export type * from '../generated/prisma/client';

/** A UTC instant as a `timestamp(3)` parameter for raw SQL (the rollup tables' minute columns). */
export function sqlTimestamp(t: Date | number): string {
  return (typeof t === 'number' ? new Date(t) : t).toISOString().slice(0, 23);
}

/** A Prisma client over node-postgres; no native engine. */
export function createPrisma(databaseUrl: string, max = 10): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: databaseUrl, max }) });
}
