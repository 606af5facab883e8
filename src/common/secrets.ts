import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** A random id with a readable kind prefix, e.g. dep_3k9x... (URL-safe, 128 bits). */
export function newId(kind: string): string {
  return `${kind}_${randomBytes(16).toString('base64url')}`;
}

export interface IssuedSecret {
  /** The whole secret; shown to the user once, never stored. */
  plaintext: string;
  /** Shown in listings to recognise the secret. */
  prefix: string;
  /** SHA-256 hex of the plaintext; what is stored. */
  hash: string;
}

/**
 * Issues a bearer secret: `<kind>_<12-char public part><32-char secret part>`.
 * The prefix (kind + public part) is unique and shown in listings.
 */
export function issueSecret(kind: 'sk' | 'mt'): IssuedSecret {
  const body = randomBytes(33).toString('base64url'); // 44 chars
  const plaintext = `${kind}_${body}`;
  return { plaintext, prefix: plaintext.slice(0, kind.length + 1 + 12), hash: hashSecret(plaintext) };
}

export function secretFromPlaintext(plaintext: string): IssuedSecret {
  const kind = plaintext.slice(0, plaintext.indexOf('_'));
  return { plaintext, prefix: plaintext.slice(0, kind.length + 1 + 12), hash: hashSecret(plaintext) };
}

/** The token of an `Authorization: Bearer <token>` header, or null when it is missing or malformed. */
export function bearer(header: string | string[] | undefined): string | null {
  const value = Array.isArray(header) ? header[0] : header;
  const m = value ? /^Bearer\s+(\S+)$/i.exec(value) : null;
  return m ? m[1] : null;
}

export function hashSecret(plaintext: string): string {
  return createHash('sha256').update(plaintext, 'utf8').digest('hex');
}

/** AES-256-GCM; output is base64url(iv | tag | ciphertext). */
export function encrypt(key: Buffer, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64url');
}

export function decrypt(key: Buffer, sealed: string): string {
  const raw = Buffer.from(sealed, 'base64url');
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  decipher.setAuthTag(raw.subarray(12, 28));
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
}
