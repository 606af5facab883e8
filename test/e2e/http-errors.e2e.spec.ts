import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Stack, startStack } from '../support/stack';

/** Plain HTTP requests outside GraphQL and /v1: a browser's /favicon.ico, a mistyped path. */
describe('HTTP errors outside GraphQL and /v1', () => {
  const logFile = join(mkdtempSync(join(tmpdir(), 'http-errors-')), 'stack.log');
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ logFile, env: { LOG_LEVEL: 'info' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('should answer an unknown path with a JSON 404 and log no error for it', async () => {
    for (const path of ['/favicon.ico', '/nope', '/graphql/x']) {
      const r = await fetch(`${stack.url}${path}`);
      expect(r.status).toBe(404);
      expect(await r.json()).toMatchObject({ statusCode: 404, message: `Cannot GET ${path}` });
    }
    const errors = readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"level":50'));
    expect(errors).toEqual([]);
  });
});
