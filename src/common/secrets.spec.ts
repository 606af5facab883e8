import { randomBytes } from 'node:crypto';
import { decrypt, encrypt, hashSecret, issueSecret, secretFromPlaintext } from './secrets';

describe('secrets', () => {
  it('should issue a key whose stored form is only its prefix and SHA-256', () => {
    const s = issueSecret('sk');
    expect(s.plaintext).toMatch(/^sk_[A-Za-z0-9_-]{44}$/);
    expect(s.plaintext.startsWith(s.prefix)).toBe(true);
    expect(s.prefix).toHaveLength(15);
    expect(s.hash).toBe(hashSecret(s.plaintext));
    expect(s.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(secretFromPlaintext(s.plaintext)).toEqual(s);
    expect(issueSecret('sk').plaintext).not.toBe(s.plaintext);
  });

  it('should round-trip AES-256-GCM and refuse tampered or wrongly keyed ciphertext', () => {
    const key = randomBytes(32);
    const sealed = encrypt(key, 'rpa_provider_token');
    expect(sealed).not.toContain('rpa_provider_token');
    expect(decrypt(key, sealed)).toBe('rpa_provider_token');
    expect(encrypt(key, 'rpa_provider_token')).not.toBe(sealed);
    const raw = Buffer.from(sealed, 'base64url');
    raw[raw.length - 1] ^= 1;
    expect(() => decrypt(key, raw.toString('base64url'))).toThrow();
    expect(() => decrypt(randomBytes(32), sealed)).toThrow();
  });
});
