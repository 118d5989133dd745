/** Schema of the control plane's configuration file (`jit server --config`). */
import { z } from 'zod';
import { parseDuration } from '../duration.js';

export const DurationString = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    try {
      return typeof v === 'number' ? v : parseDuration(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  });

export const BuiltinUser = z
  .object({
    username: z.string().regex(/^[a-z][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)'),
    /** `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>` — make one with `jit hash-password`. */
    passwordHash: z.string().startsWith('scrypt$'),
    email: z.string().email().optional(),
    name: z.string().optional(),
    groups: z.array(z.string()).default([]),
  })
  .describe('A user of the built-in identity provider');

export const IdentityConfig = z
  .object({
    builtin: z
      .object({
        users: z.array(BuiltinUser).default([]),
        /** Access token lifetime. Keep short: JWT access tokens cannot be revoked. */
        accessTokenTtl: DurationString.default(600),
        refreshTokenTtl: DurationString.default(14 * 86400),
      })
      .optional()
      .describe('Run the built-in OIDC provider at <publicUrl>/oidc'),
    oidc: z
      .object({
        issuer: z.string().url(),
        clientId: z.string(),
        audience: z.string(),
        scopes: z.array(z.string()).default(['openid', 'profile', 'email', 'offline_access']),
      })
      .optional()
      .describe('Trust an external OIDC issuer instead'),
    groupsClaim: z.string().default('groups'),
    usernameClaim: z.string().default('preferred_username'),
    algorithms: z.array(z.string()).default(['RS256', 'PS256', 'ES256', 'EdDSA']),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
  })
  .refine((v) => Boolean(v.builtin) !== Boolean(v.oidc), {
    message: 'set exactly one of identity.builtin or identity.oidc',
  });
export type IdentityConfig = z.infer<typeof IdentityConfig>;

export const ServerConfig = z.object({
  listen: z
    .string()
    .regex(/^[^:]+:\d{1,5}$|^\[[0-9a-f:]+\]:\d{1,5}$/i, 'host:port')
    .default('127.0.0.1:8443')
    .describe('Address to listen on; port 0 picks a free port'),
  publicUrl: z.string().url().optional().describe('URL clients and agents use; defaults to the listen address'),
  tls: z.object({ cert: z.string(), key: z.string() }).optional().describe('PEM files; required unless listening on loopback'),
  dataDir: z.string().default('./jit-data').describe('SQLite state, signing keys, recordings'),
  identity: IdentityConfig,
  admins: z
    .object({ users: z.array(z.string()).default([]), groups: z.array(z.string()).default([]) })
    .default({ users: [], groups: [] }),
  agents: z
    .array(
      z.object({
        name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
        /** `sha256:<hex>` of the agent token; make one with `jit agent-token`. */
        tokenHash: z.string().regex(/^sha256:[0-9a-f]{64}$/),
      }),
    )
    .default([]),
  sessions: z
    .object({
      heartbeatTimeout: DurationString.default(30),
      heartbeatInterval: DurationString.default(10),
      defaultDuration: DurationString.default(3600),
      maxDuration: DurationString.default(8 * 3600),
    })
    .default({ heartbeatTimeout: 30, heartbeatInterval: 10, defaultDuration: 3600, maxDuration: 8 * 3600 }),
  /** Path to the policy file (relative to this file). */
  policy: z.string().describe('Policy file: targets and who may use them'),
});
export type ServerConfig = z.infer<typeof ServerConfig>;
