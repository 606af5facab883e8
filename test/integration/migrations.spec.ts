import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { dropDatabase, ensureDatabase, migrate, MigrationError } from '../../src/database/migrate';

const MIGRATIONS = resolve(__dirname, '../../prisma/migrations');

function freshUrl(tag: string) {
  const u = new URL(process.env.DATABASE_URL!);
  u.pathname = `/${u.pathname.slice(1)}_${tag}_${Date.now().toString(36)}`;
  return u.toString();
}

async function query<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/**
 * A small reader of schema.prisma: models with their scalar and enum fields, and
 * enums with their values. Enough to compare the schema with the database the
 * migrations build, so a schema change without a migration fails CI.
 */
function readSchema(text: string) {
  const enums = new Map<string, string[]>();
  const models = new Map<string, Array<{ name: string; type: string; optional: boolean; date?: boolean }>>();
  for (const m of text.matchAll(/^enum (\w+) \{([^}]*)\}/gm)) {
    enums.set(
      m[1],
      m[2]
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('//')),
    );
  }
  for (const m of text.matchAll(/^model (\w+) \{([^}]*)\}/gm)) {
    const fields = [];
    for (const line of m[2].split('\n').map((l) => l.trim())) {
      const f = /^(\w+)\s+(\w+)(\?|\[\])?/.exec(line);
      if (!f || line.startsWith('@@') || line.startsWith('//')) continue;
      const [, name, type, mod] = f;
      const scalar =
        ['String', 'Int', 'Float', 'Boolean', 'DateTime', 'Json', 'BigInt', 'Decimal', 'Bytes'].includes(type) || enums.has(type);
      if (!scalar) continue;
      // A scalar list (String[]) is a Postgres array, nullable as Prisma makes it.
      if (mod === '[]') fields.push({ name, type: 'ARRAY', optional: true });
      else fields.push({ name, type, optional: mod === '?', date: /@db\.Date\b/.test(line) });
    }
    models.set(m[1], fields);
  }
  return { enums, models };
}

const PG_TYPE: Record<string, string> = {
  String: 'text',
  Int: 'integer',
  Float: 'double precision',
  Boolean: 'boolean',
  DateTime: 'timestamp without time zone',
  Json: 'jsonb',
  BigInt: 'bigint',
  Decimal: 'numeric',
  Bytes: 'bytea',
};

describe('migrations (applied without the Prisma schema engine)', () => {
  const urls: string[] = [];
  afterAll(async () => {
    for (const u of urls) await dropDatabase(u);
  });

  it('should build exactly the database schema.prisma describes', async () => {
    const url = freshUrl('drift');
    urls.push(url);
    await ensureDatabase(url);
    await migrate(url, MIGRATIONS);
    const { enums, models } = readSchema(readFileSync(resolve(__dirname, '../../prisma/schema.prisma'), 'utf8'));
    const tables = await query<{ table_name: string }>(
      url,
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'`,
    );
    expect(tables.map((t) => t.table_name).sort()).toEqual([...models.keys()].sort());

    const dbEnums = await query<{ name: string; values: string[] }>(
      url,
      `SELECT t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS values
       FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname`,
    );
    expect(Object.fromEntries(dbEnums.map((e) => [e.name, e.values]))).toEqual(Object.fromEntries(enums));

    const cols = await query<{ table_name: string; column_name: string; data_type: string; udt_name: string; is_nullable: string }>(
      url,
      `SELECT table_name, column_name, data_type, udt_name, is_nullable FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'`,
    );
    const actual = new Map<string, string>();
    for (const c of cols) {
      const type = c.data_type === 'USER-DEFINED' ? c.udt_name : c.data_type;
      actual.set(`${c.table_name}.${c.column_name}`, `${type}${c.is_nullable === 'YES' ? '?' : ''}`);
    }
    const expected = new Map<string, string>();
    for (const [model, fields] of models) {
      for (const f of fields)
        expected.set(`${model}.${f.name}`, `${f.date ? 'date' : (PG_TYPE[f.type] ?? f.type)}${f.optional ? '?' : ''}`);
    }
    expect(Object.fromEntries([...actual].sort())).toEqual(Object.fromEntries([...expected].sort()));
  });

  it('should record each migration in _prisma_migrations as Prisma does, and apply nothing twice', async () => {
    const names = readdirSync(MIGRATIONS, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    expect(names.length).toBeGreaterThan(1);
    const url = freshUrl('record');
    urls.push(url);
    await ensureDatabase(url);
    // An existing install: only the first migration applied, then an upgrade applies the rest.
    const firstOnly = mkdtempSync(join(tmpdir(), 'migrations-'));
    cpSync(join(MIGRATIONS, names[0]), join(firstOnly, names[0]), { recursive: true });
    expect((await migrate(url, firstOnly)).applied).toEqual([names[0]]);
    const upgrade = await migrate(url, MIGRATIONS);
    expect(upgrade).toEqual({ applied: names.slice(1), alreadyApplied: [names[0]] });
    const again = await migrate(url, MIGRATIONS);
    expect(again).toEqual({ applied: [], alreadyApplied: names });
    const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number }>(
      url,
      'SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
    );
    expect(rows).toEqual(
      names.map((name) => ({
        migration_name: name,
        checksum: createHash('sha256')
          .update(readFileSync(join(MIGRATIONS, name, 'migration.sql')))
          .digest('hex'),
        finished_at: expect.any(Date),
        applied_steps_count: 1,
      })),
    );
  });

  it('should record a failed migration, roll its changes back and block later runs with a clear message', async () => {
    const url = freshUrl('fail');
    urls.push(url);
    await ensureDatabase(url);
    const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
    cpSync(MIGRATIONS, dir, { recursive: true });
    mkdirSync(join(dir, '20261123000000_broken'));
    writeFileSync(join(dir, '20261123000000_broken', 'migration.sql'), 'CREATE TABLE "Half" (id TEXT);\nSELECT no_such_function();\n');
    await expect(migrate(url, dir)).rejects.toThrow(
      new MigrationError('migration 20261123000000_broken failed: function no_such_function() does not exist'),
    );
    expect(await query(url, `SELECT to_regclass('"Half"') AS t`)).toEqual([{ t: null }]);
    await expect(migrate(url, dir)).rejects.toThrow(/20261123000000_broken failed earlier and blocks new ones/);
  });
});
