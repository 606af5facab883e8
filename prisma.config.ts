import { defineConfig } from 'prisma/config';

// Used by the Prisma CLI (generate, migrate) when a schema engine is available.
// The app and `npm run db:migrate` do not need it; see README "Database and migrations".
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/infercp' },
});
