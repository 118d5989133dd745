/** The audit log's public signing key as auditors receive it (a JWK), validated. */
import { z } from 'zod';
import { JitError } from '../errors/jit-error.js';
import type { AuditPublicJwk } from './chain.js';

export const PublicJwk = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().min(40).max(50),
  kid: z.string().min(1).max(80),
});

/** A public JWK from a `--key` file or the key endpoint, validated. */
export function parsePublicJwk(value: unknown): AuditPublicJwk {
  const r = PublicJwk.safeParse(value);
  if (!r.success) throw new JitError('JIT_USAGE', { message: 'The key is not an Ed25519 public JWK (kty OKP, crv Ed25519, x, kid)' });
  return r.data;
}
