/**
 * Session grant: a short-lived JWT signed by the control plane (EdDSA), audience "relay",
 * bound to session id, user and target. Useless without an active session row.
 */
import { z } from 'zod';

export const GRANT_AUDIENCE = 'relay';

export const GrantClaims = z.object({
  sub: z.string(),
  sid: z.string(),
  tgt: z.string(),
  aud: z.literal(GRANT_AUDIENCE),
  iss: z.string(),
  exp: z.number(),
  iat: z.number(),
  jti: z.string(),
});
export type GrantClaims = z.infer<typeof GrantClaims>;
