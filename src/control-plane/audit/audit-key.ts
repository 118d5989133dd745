/**
 * The control plane's audit signing key (Ed25519), kept apart from the grant key: checkpoints
 * outlive grant-key rotations, and an auditor gets this public key without learning anything
 * about grants. Stored as a JWK in `<dataDir>/audit-key.json`, mode 0600; previous public keys
 * stay in the file so that old checkpoints still verify after a rotation.
 */
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { JitError } from '#shared/errors/jit-error.js';
import { type AuditPublicJwk, type Checkpoint, publicKeyMap, signCheckpoint } from '#shared/audit/chain.js';
import { PublicJwk, parsePublicJwk } from '#shared/audit/public-key.js';

const KeyFile = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string(),
  d: z.string(),
  kid: z.string(),
  /** Earlier public keys, for checkpoints signed before a rotation. */
  previous: z.array(PublicJwk).default([]),
});

export { parsePublicJwk };

/** Signs checkpoints; knows every public key that old checkpoints may name. */
export class AuditSigner {
  private constructor(
    private readonly privateKey: KeyObject,
    readonly publicJwk: AuditPublicJwk,
    readonly previous: AuditPublicJwk[],
  ) {}

  get keyId(): string {
    return this.publicJwk.kid;
  }

  /** Load the key from keyFile, creating it (0600) on first start. */
  static load(keyFile: string): AuditSigner {
    if (!existsSync(keyFile)) {
      const { privateKey } = generateKeyPairSync('ed25519');
      const jwk = privateKey.export({ format: 'jwk' }) as { x: string; d: string };
      const kid = `audit-${createHash('sha256').update(jwk.x).digest('hex').slice(0, 16)}`;
      writeFileSync(keyFile, JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d, kid, previous: [] }), { mode: 0o600 });
    }
    chmodSync(keyFile, 0o600);
    let parsed: z.infer<typeof KeyFile>;
    try {
      parsed = KeyFile.parse(JSON.parse(readFileSync(keyFile, 'utf8')));
    } catch (cause) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: `${keyFile} is not an Ed25519 audit key`,
        hint: 'restore it from a backup',
        cause,
      });
    }
    const privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x: parsed.x, d: parsed.d }, format: 'jwk' });
    return new AuditSigner(privateKey, { kty: 'OKP', crv: 'Ed25519', x: parsed.x, kid: parsed.kid }, parsed.previous);
  }

  /** Sign a checkpoint with the current key. */
  sign(c: Omit<Checkpoint, 'signature' | 'keyId'>): Checkpoint {
    return signCheckpoint({ ...c, keyId: this.keyId }, this.privateKey);
  }

  /** Every public key, current first. */
  publicKeys(): AuditPublicJwk[] {
    return [this.publicJwk, ...this.previous];
  }

  /** kid → public key, for verification. */
  verificationKeys(): ReturnType<typeof publicKeyMap> {
    return publicKeyMap(this.publicKeys());
  }
}
