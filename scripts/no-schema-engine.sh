#!/bin/sh
echo "Prisma's schema engine is not installed (offline). 'prisma generate' works without it;" >&2
echo "apply migrations with 'npm run db:migrate'. To create a new migration, run" >&2
echo "'npx prisma migrate diff' on a machine with internet, or set PRISMA_SCHEMA_ENGINE_BINARY." >&2
exit 1
