import { describe, expect, it } from 'vitest';
import { hashPassword, verifyPassword } from './password.js';

describe('password hashes', () => {
  it('hashes in the documented format and verifies only the right password', async () => {
    const h = await hashPassword('correct horse battery');
    expect(h).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(await verifyPassword('correct horse battery', h)).toBe(true);
    expect(await verifyPassword('correct horse batterY', h)).toBe(false);
    expect(await verifyPassword('', h)).toBe(false);
  });

  it('salts: the same password gives different hashes, both valid', async () => {
    const [a, b] = await Promise.all([hashPassword('pw-12345'), hashPassword('pw-12345')]);
    expect(a).not.toBe(b);
    expect(await verifyPassword('pw-12345', a)).toBe(true);
    expect(await verifyPassword('pw-12345', b)).toBe(true);
  });

  it('verifies hashes made with other (sane) parameters', async () => {
    const h = await hashPassword('pw-12345');
    const [, , , , salt, hash] = h.split('$');
    // Same key, but claimed with different parameters: must not match.
    expect(await verifyPassword('pw-12345', `scrypt$1024$8$1$${salt}$${hash}`)).toBe(false);
  });

  it('returns false, never throws, for malformed or hostile hashes', async () => {
    const h = await hashPassword('pw-12345');
    const [, , , , salt, hash] = h.split('$');
    const bad = [
      '',
      'scrypt$',
      'bcrypt$16384$8$1$' + salt + '$' + hash,
      `scrypt$16384$8$1$${salt}`,
      `scrypt$16384$8$1$${salt}$${hash}$extra`,
      `scrypt$16383$8$1$${salt}$${hash}`, // not a power of two
      `scrypt$1073741824$8$1$${salt}$${hash}`, // absurd N: would take minutes and GiBs
      `scrypt$16384$4096$1$${salt}$${hash}`, // absurd r
      `scrypt$16384$8$1000$${salt}$${hash}`, // absurd p
      `scrypt$0$8$1$${salt}$${hash}`,
      `scrypt$-1$8$1$${salt}$${hash}`,
      `scrypt$16384$8$1$not base64!$${hash}`,
      `scrypt$16384$8$1$${salt}$`,
      `scrypt$16384$8$1$${salt}$AAAA`, // too short a key
      'x'.repeat(10_000),
    ];
    for (const b of bad) {
      await expect(verifyPassword('pw-12345', b), b.slice(0, 60)).resolves.toBe(false);
    }
  });
});
