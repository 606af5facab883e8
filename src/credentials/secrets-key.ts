// The AES-256-GCM key that seals provider credentials: SECRETS_KEY, or a key generated once under DATA_DIR.
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Config, decodeKey } from '../config/config';

/** The file a generated key is kept in when SECRETS_KEY is unset. */
export const secretsKeyPath = (config: Pick<Config, 'DATA_DIR'>) => resolve(config.DATA_DIR, 'secrets.key');

/** Paths this process has already warned about (one warning per process, not one per caller). */
const warned = new Set<string>();

/**
 * The key provider credentials are sealed with. SECRETS_KEY when set (config validated it: 32 bytes as base64 or 64
 * hex); else a random key generated once and kept at <DATA_DIR>/secrets.key (mode 0600), with a one-time warning on
 * `log`: every api and worker host must share the key, so production sets SECRETS_KEY. The api and the worker both
 * call it; whichever comes first writes the file, the other reads it.
 */
export function secretsKey(config: Pick<Config, 'SECRETS_KEY' | 'DATA_DIR'>, log?: { warn: (msg: string) => void }): Buffer {
  if (config.SECRETS_KEY) {
    const key = decodeKey(config.SECRETS_KEY);
    if (!key) throw new Error('SECRETS_KEY: must be 32 bytes as base64 or 64 hex characters');
    return key;
  }
  const path = secretsKeyPath(config);
  let key = readKeyFile(path);
  let generated = false;
  if (!key) {
    mkdirSync(dirname(path), { recursive: true });
    const fresh = randomBytes(32);
    // Written whole under another name, then linked into place: a reader never sees half a file, and of two
    // processes starting at once one links its key and the other (EEXIST) reads that one.
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, `${fresh.toString('base64')}\n`, { flag: 'wx', mode: 0o600 });
    try {
      chmodSync(tmp, 0o600);
      linkSync(tmp, path);
      key = fresh;
      generated = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      key = readKeyFile(path);
    } finally {
      unlinkSync(tmp);
    }
    if (!key) throw new Error(`${path}: could not read the generated key`);
  }
  if (!warned.has(path)) {
    warned.add(path);
    log?.warn(
      `SECRETS_KEY is not set: provider credentials are sealed with ${generated ? 'a key just generated at' : 'the generated key at'} ${path}; ` +
        'production must set SECRETS_KEY (32 bytes, base64 or hex), the same on every api and worker host',
    );
  }
  return key;
}

/** The key in the file, null when there is no file; a file that holds something else is an error naming it. */
function readKeyFile(path: string): Buffer | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const key = decodeKey(text.trim());
  if (!key) throw new Error(`${path} does not hold a 32-byte key (base64 or 64 hex); restore it or set SECRETS_KEY`);
  return key;
}
