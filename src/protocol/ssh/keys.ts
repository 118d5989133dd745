/**
 * Ed25519 keys in the formats OpenSSH reads: the public key blob / `authorized_keys` line and the
 * unencrypted `openssh-key-v1` private key file. Pure: the caller supplies key material and
 * randomness (the check integers of the private key format).
 */
import { SshFormatError, SshReader, SshWriter } from './wire.js';

export const ED25519 = 'ssh-ed25519';

/** The SSH public key blob of an Ed25519 key: string "ssh-ed25519", string key(32). */
export function ed25519PublicBlob(publicKey: Buffer): Buffer {
  if (publicKey.length !== 32) throw new SshFormatError('an Ed25519 public key has 32 bytes');
  return new SshWriter().string(ED25519).string(publicKey).toBuffer();
}

/** `<type> <base64 blob> [comment]`, as in authorized_keys, known_hosts and *.pub files. */
export function publicKeyLine(blob: Buffer, comment = ''): string {
  const type = new SshReader(blob).text();
  return `${type} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

export interface PublicKeyEntry {
  type: string;
  blob: Buffer;
  comment: string;
}

const KEY_TYPE =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)(-cert-v01@openssh\.com)?$/;

/**
 * Parse a public key line (`type base64 [comment]`), also with leading known_hosts fields
 * (`host1,host2 type base64`) or `@cert-authority` markers: the first token that is a key type
 * starts the key. Returns undefined when no key is found or the blob's type disagrees.
 */
export function parsePublicKeyLine(line: string): PublicKeyEntry | undefined {
  const tokens = line.trim().split(/\s+/);
  const i = tokens.findIndex((t) => KEY_TYPE.test(t));
  if (i < 0 || i + 1 >= tokens.length) return undefined;
  const type = tokens[i]!;
  const b64 = tokens[i + 1]!;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const blob = Buffer.from(b64, 'base64');
  try {
    if (new SshReader(blob).text() !== type) return undefined;
  } catch {
    return undefined;
  }
  return { type, blob, comment: tokens.slice(i + 2).join(' ') };
}

/**
 * An unencrypted OpenSSH private key file (PROTOCOL.key) for an Ed25519 key.
 * `seed` is the 32-byte private seed, `publicKey` its 32-byte public key, `check` 4 random bytes.
 */
export function encodeOpenSshEd25519PrivateKey(seed: Buffer, publicKey: Buffer, check: Buffer, comment = ''): string {
  if (seed.length !== 32 || publicKey.length !== 32 || check.length < 4) throw new SshFormatError('bad Ed25519 key material');
  const pubBlob = ed25519PublicBlob(publicKey);
  const c = check.readUInt32BE(0);
  const priv = new SshWriter()
    .uint32(c)
    .uint32(c)
    .string(ED25519)
    .string(publicKey)
    .string(Buffer.concat([seed, publicKey]))
    .string(comment)
    .toBuffer();
  // Pad to the cipher block size (8 for "none") with 1, 2, 3, …
  const padLen = (8 - (priv.length % 8)) % 8;
  const pad = Buffer.from(Array.from({ length: padLen }, (_, i) => i + 1));
  const body = new SshWriter()
    .raw(Buffer.from('openssh-key-v1\0', 'latin1'))
    .string('none')
    .string('none')
    .string('')
    .uint32(1)
    .string(pubBlob)
    .string(Buffer.concat([priv, pad]))
    .toBuffer();
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`;
}
