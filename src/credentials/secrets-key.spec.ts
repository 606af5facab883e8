import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decrypt, encrypt } from '../common/secrets';
import { secretsKey } from './secrets-key';

describe('secretsKey', () => {
  const dataDir = () => join(mkdtempSync(join(tmpdir(), 'secrets-key-')), 'data');
  const logger = () => {
    const lines: string[] = [];
    return { lines, log: { warn: (m: string) => lines.push(m) } };
  };

  it('should use SECRETS_KEY when set, as base64 or hex, and write no file', () => {
    const raw = randomBytes(32);
    const dir = dataDir();
    const { lines, log } = logger();
    expect(secretsKey({ SECRETS_KEY: raw.toString('base64'), DATA_DIR: dir }, log).equals(raw)).toBe(true);
    expect(secretsKey({ SECRETS_KEY: raw.toString('hex'), DATA_DIR: dir }, log).equals(raw)).toBe(true);
    expect(() => statSync(join(dir, 'secrets.key'))).toThrow(/ENOENT/);
    expect(lines).toEqual([]);
  });

  it('should generate a key once under DATA_DIR with mode 0600, reuse it, and warn once that production must set SECRETS_KEY', () => {
    const dir = dataDir();
    const { lines, log } = logger();
    const first = secretsKey({ DATA_DIR: dir }, log);
    expect(first).toHaveLength(32);
    const file = join(dir, 'secrets.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64').equals(first)).toBe(true);

    // The worker (or a restart) reads the same key: what one sealed, the other opens.
    const sealed = encrypt(first, 'rpa_0123456789abcdef');
    const second = secretsKey({ DATA_DIR: dir }, log);
    expect(decrypt(second, sealed)).toBe('rpa_0123456789abcdef');
    expect(statSync(file).mode & 0o777).toBe(0o600);

    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('SECRETS_KEY is not set');
    expect(lines[0]).toContain(file);
    expect(lines[0]).toContain('production must set SECRETS_KEY');
    expect(lines[0]).not.toContain(first.toString('base64'));
  });

  it('should refuse a key file that does not hold a 32-byte key, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'secrets-key-'));
    writeFileSync(join(dir, 'secrets.key'), 'not a key\n', { mode: 0o600 });
    expect(() => secretsKey({ DATA_DIR: dir })).toThrow(`${join(dir, 'secrets.key')} does not hold a 32-byte key`);
  });
});
