import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';

// Docker cannot run on the CI machines; this checks what can be checked without it.
interface Service {
  image?: string;
  build?: string;
  command?: string[];
  ports?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }> | string[];
}

const root = resolve(__dirname, '../..');
const compose = parse(readFileSync(resolve(root, 'docker-compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };

describe('docker-compose.yaml', () => {
  it('should run Postgres, Temporal on Postgres, its UI, the bootstrap job, the worker and the api', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['api', 'bootstrap', 'postgres', 'redis', 'temporal', 'temporal-ui', 'worker']);
    expect(compose.services.api.environment).toMatchObject({ REDIS_URL: 'redis://redis:6379' });
    expect(compose.services.temporal.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgres' });
  });

  it('should publish the ports the README names', () => {
    const ports = Object.fromEntries(Object.entries(compose.services).map(([k, s]) => [k, s.ports ?? []]));
    expect(ports).toMatchObject({ postgres: ['5432:5432'], temporal: ['7233:7233'], 'temporal-ui': ['8233:8080'], api: ['8080:8080'] });
  });

  it('should pin every image and point the app at the compose services', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.image) expect(`${name}: ${s.image}`).toMatch(/:\d+\.\d+(\.\d+)?$/);
    }
    for (const name of ['api', 'worker', 'bootstrap']) {
      const env = compose.services[name].environment!;
      expect(env.DATABASE_URL).toMatch(/@postgres:5432\//);
      expect(env.TEMPORAL_ADDRESS).toBe('temporal:7233');
    }
    expect(compose.services.worker.environment).toMatchObject({ LOCAL_REPLICA_HOST: '0.0.0.0', LOCAL_REPLICA_ADVERTISE_HOST: 'worker' });
  });

  it('should start app services from files the image build produces', () => {
    const dockerfile = readFileSync(resolve(root, 'Dockerfile'), 'utf8');
    expect(dockerfile).toContain('npx tsc -p tsconfig.build.json');
    for (const name of ['api', 'worker', 'bootstrap']) {
      const [bin, entry] = compose.services[name].command!;
      expect(bin).toBe('node');
      // The same build ran before the tests: the entry must exist in dist/.
      expect(existsSync(resolve(root, entry))).toBe(true);
    }
  });
});
