/**
 * Password hashes for the built-in IdP's users: scrypt from node:crypto, encoded as
 * `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>` so the parameters can be raised later without
 * breaking hashes already written into configuration files.
 */
import { randomBytes, scrypt, type ScryptOptions, timingSafeEqual } from 'node:crypto';

const N = 16384;
const R = 8;
const P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

// A hash comes from a config file someone else may have written: parameters beyond these
// bounds would let that file make every login burn seconds of CPU and gigabytes of memory.
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_MEM = 256 * 1024 * 1024;

function scryptAsync(pw: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(pw, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Hash a password for `identity.builtin.users[].passwordHash`. */
export async function hashPassword(pw: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(pw.normalize('NFC'), salt, KEY_BYTES, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

function parseParam(s: string | undefined, max: number): number | undefined {
  if (s === undefined || !/^[1-9][0-9]{0,7}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
}

/** Check a password against an encoded hash; false (never a throw) for anything malformed. */
export async function verifyPassword(pw: string, encoded: string): Promise<boolean> {
  if (typeof pw !== 'string' || typeof encoded !== 'string' || encoded.length > 512) return false;
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const n = parseParam(parts[1], MAX_N);
  const r = parseParam(parts[2], MAX_R);
  const p = parseParam(parts[3], MAX_P);
  if (n === undefined || r === undefined || p === undefined) return false;
  if (n < 2 || (n & (n - 1)) !== 0) return false; // scrypt needs a power of two
  if (128 * n * r > MAX_MEM) return false;
  const [saltB64, hashB64] = [parts[4]!, parts[5]!];
  if (!B64.test(saltB64) || !B64.test(hashB64)) return false;
  const salt = Buffer.from(saltB64, 'base64');
  const expected = Buffer.from(hashB64, 'base64');
  if (salt.length < 8 || expected.length < 16 || expected.length > 64) return false;
  // Passwords are capped so a huge form field cannot be used to make scrypt expensive.
  if (pw.length > 1024) return false;
  let actual: Buffer;
  try {
    actual = await scryptAsync(pw.normalize('NFC'), salt, expected.length, { N: n, r, p, maxmem: MAX_MEM + 1024 * 1024 });
  } catch {
    return false;
  }
  return timingSafeEqual(actual, expected);
}
