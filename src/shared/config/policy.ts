/** Schema of the policy file: targets and who may access them. */
import { z } from 'zod';
import { DurationString } from './server.js';

const Name = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)');
const PgIdent = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'a plain PostgreSQL identifier');

export const PolicyTarget = z.object({
  name: Name.describe('Target name users type: jit connect <name>'),
  type: z.enum(['postgres', 'ssh', 'tcp']).describe('Protocol engine'),
  agent: Name.describe('Agent that reaches this target'),
  description: z.string().default('').describe('Shown by jit targets'),
  database: PgIdent.optional().describe('postgres: default database'),
  maxDuration: DurationString.optional().describe('Longest session on this target'),
});

export const AccessRule = z
  .object({
    name: z.string().min(1).describe('Rule name (in audit events and errors)'),
    targets: z.array(z.string()).min(1).describe('Target names, or "*"'),
    users: z.array(z.string()).default([]).describe('User names this rule applies to'),
    groups: z.array(z.string()).default([]).describe('Groups (from the token) this rule applies to'),
    grantRoles: z.array(PgIdent).default([]).describe('postgres: roles the session role becomes a member of'),
    maxDuration: DurationString.optional().describe('Longest session under this rule'),
  })
  .refine((r) => r.users.length + r.groups.length > 0, { message: 'name at least one user or group' });

export const Policy = z.object({
  targets: z.array(PolicyTarget).default([]).describe('What can be reached'),
  access: z.array(AccessRule).default([]).describe('Who may reach what; first matching rule wins; deny by default'),
});
export type Policy = z.infer<typeof Policy>;
export type PolicyTarget = z.infer<typeof PolicyTarget>;
export type AccessRule = z.infer<typeof AccessRule>;
