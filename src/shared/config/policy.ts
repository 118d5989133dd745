/** Schema of the policy file: targets and who may access them. */
import { z } from 'zod';
import { DurationString } from './server.js';

const Name = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)');
const PgIdent = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'a plain PostgreSQL identifier');

export const PolicyTarget = z.object({
  name: Name,
  type: z.enum(['postgres', 'ssh', 'tcp']),
  agent: Name,
  description: z.string().default(''),
  database: PgIdent.optional(),
  maxDuration: DurationString.optional(),
});

export const AccessRule = z
  .object({
    name: z.string().min(1),
    targets: z.array(z.string()).min(1).describe('Target names, or "*"'),
    users: z.array(z.string()).default([]),
    groups: z.array(z.string()).default([]),
    /** postgres: roles the session role is made a member of. */
    grantRoles: z.array(PgIdent).default([]),
    maxDuration: DurationString.optional(),
  })
  .refine((r) => r.users.length + r.groups.length > 0, { message: 'name at least one user or group' });

export const Policy = z.object({
  targets: z.array(PolicyTarget).default([]),
  access: z.array(AccessRule).default([]),
});
export type Policy = z.infer<typeof Policy>;
export type PolicyTarget = z.infer<typeof PolicyTarget>;
export type AccessRule = z.infer<typeof AccessRule>;
