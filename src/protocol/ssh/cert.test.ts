import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ED25519_CERT, ed25519SignatureBlob, parseCertificate, SSH_CERT_TYPE_USER, signCertificate } from './cert.js';
import { ed25519PublicBlob, encodeOpenSshEd25519PrivateKey, parsePublicKeyLine, publicKeyLine } from './keys.js';
import { SshReader } from './wire.js';

function ed25519() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    privateKey,
    publicKey,
    seed: Buffer.from(jwk.d!, 'base64url'),
    raw: Buffer.from(jwk.x!, 'base64url'),
  };
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'jit-cert-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('OpenSSH user certificates', () => {
  const ca = ed25519();
  const user = ed25519();
  const signer = {
    publicBlob: ed25519PublicBlob(ca.raw),
    sign: (data: Buffer) => ed25519SignatureBlob(sign(null, data, ca.privateKey)),
  };
  const cert = signCertificate(
    {
      publicKey: user.raw,
      nonce: randomBytes(32),
      serial: 0x1234_5678_9abc_def0n,
      type: SSH_CERT_TYPE_USER,
      keyId: 'jit:alice:session abcdefghij0123456789',
      principals: ['root', 'deploy'],
      validAfter: 1_700_000_000n,
      validBefore: 1_700_000_600n,
      criticalOptions: { 'source-address': '127.0.0.1/32' },
      extensions: ['permit-pty'],
    },
    signer,
  );

  it('is what ssh-keygen -L reads back (type, key id, serial, principals, validity, options)', () => {
    const file = path.join(tmp, 'user-cert.pub');
    writeFileSync(file, `${publicKeyLine(cert, 'jit')}\n`);
    const out = execFileSync('ssh-keygen', ['-L', '-f', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    expect(out).toContain(`Type: ${ED25519_CERT} user certificate`);
    expect(out).toContain('Key ID: "jit:alice:session abcdefghij0123456789"');
    expect(out).toContain(`Serial: ${0x1234_5678_9abc_def0n}`);
    expect(out).toMatch(/Valid: from 2023-11-14T22:13:20 to 2023-11-14T22:23:20/);
    expect(out).toMatch(/Principals:\s*\n\s*root\s*\n\s*deploy/);
    expect(out).toMatch(/Critical Options:\s*\n\s*source-address 127\.0\.0\.1\/32/);
    expect(out).toMatch(/Extensions:\s*\n\s*permit-pty\s*\n?$/);
    // The signing CA's fingerprint is the CA key's, as ssh-keygen computes it.
    const caFile = path.join(tmp, 'ca.pub');
    writeFileSync(caFile, `${publicKeyLine(signer.publicBlob)}\n`);
    const fp = execFileSync('ssh-keygen', ['-l', '-f', caFile], { encoding: 'utf8' }).split(' ')[1];
    expect(out).toContain(`Signing CA: ED25519 ${fp}`);
  });

  it('round-trips through the parser and its signature verifies with the CA key', () => {
    const p = parseCertificate(cert);
    expect(p.principals).toEqual(['root', 'deploy']);
    expect(p.extensions).toEqual(['permit-pty']);
    expect(p.publicKey.equals(user.raw)).toBe(true);
    const sig = new SshReader(p.signature);
    expect(sig.text()).toBe('ssh-ed25519');
    expect(verify(null, p.signed, ca.publicKey, sig.string())).toBe(true);
  });

  it('ssh-keygen accepts the private key file and derives the same public key', () => {
    const file = path.join(tmp, 'id_ed25519');
    writeFileSync(file, encodeOpenSshEd25519PrivateKey(user.seed, user.raw, randomBytes(4), 'c'), { mode: 0o600 });
    const pub = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' });
    expect(parsePublicKeyLine(pub)?.blob.equals(ed25519PublicBlob(user.raw))).toBe(true);
    // And node reads the raw seed as the same key.
    const again = createPrivateKey({
      key: { kty: 'OKP', crv: 'Ed25519', d: user.seed.toString('base64url'), x: user.raw.toString('base64url') },
      format: 'jwk',
    });
    expect(createPublicKey(again).export({ format: 'jwk' }).x).toBe(user.raw.toString('base64url'));
  });

  it('parses known_hosts and authorized_keys style lines, and refuses a blob whose type disagrees', () => {
    const line = publicKeyLine(ed25519PublicBlob(user.raw));
    expect(parsePublicKeyLine(`[127.0.0.1]:2222,web-1 ${line}`)?.type).toBe('ssh-ed25519');
    expect(parsePublicKeyLine(`@cert-authority * ${line} my ca`)?.comment).toBe('my ca');
    expect(parsePublicKeyLine(`ssh-rsa ${line.split(' ')[1]}`)).toBeUndefined();
    expect(parsePublicKeyLine('ssh-ed25519 !!!')).toBeUndefined();
  });
});
