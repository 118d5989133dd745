/** Schema of the agent's configuration file (`jit agent --config`). */
import { z } from 'zod';
import { DurationString } from './server.js';
import { type TargetTypeName, unsupportedTargetType } from '../contract/engines.js';
import { NAME_PATTERN, NAME_RULE } from '../contract/ids.js';

export const AgentPostgresTarget = z.object({
  type: z.literal('postgres'),
  host: z.string().default('127.0.0.1').describe('Target host'),
  port: z.number().int().min(1).max(65535).default(5432).describe('Target port'),
  database: z.string().default('postgres').describe('Default database for sessions and the reaper'),
  /**
   * Admin connection (needs CREATEROLE and pg_signal_backend) used to create and drop session
   * roles. Kept only here or in the environment variable named by adminUrlEnv.
   */
  adminUrl: z.string().optional().describe('Admin connection URL (CREATEROLE, pg_signal_backend); prefer adminUrlEnv'),
  adminUrlEnv: z.string().optional().describe('Environment variable holding the admin connection URL'),
  /** TLS to the target: disable, prefer (default) or require. */
  sslmode: z.enum(['disable', 'prefer', 'require']).default('prefer').describe('TLS to the target'),
  maxConnectionsPerSession: z
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(64)
    .describe('Connections one session may hold open to this target at once; more are refused with SQLSTATE 53300'),
  roleLease: DurationString.default(60)
    .refine((s) => s >= 10 && s <= 3600, { message: 'between 10s and 1h' })
    .describe(
      "How long a session role's VALID UNTIL reaches ahead; the agent renews it while the session lives, so a role whose agent died stops accepting logins within this time (default 60s)",
    ),
});

export const AgentSshTarget = z
  .object({
    type: z.literal('ssh'),
    host: z.string().min(1).describe('sshd host'),
    port: z.number().int().min(1).max(65535).default(22).describe('sshd port'),
    hostKeys: z
      .array(z.string().min(1))
      .min(1)
      .describe('The host keys sshd may present, OpenSSH format ("ssh-ed25519 AAAA…", known_hosts lines work too); no trust on first use'),
    caKeyFile: z
      .string()
      .optional()
      .describe('User CA private key (Ed25519, OpenSSH format) that signs session certificates; sshd trusts it with TrustedUserCAKeys'),
    caKeyEnv: z.string().optional().describe('Environment variable holding the user CA private key (instead of caKeyFile)'),
    connectTimeout: DurationString.default(10).describe('How long reaching and logging in to sshd may take (default 10s)'),
    hostUsers: z
      .object({
        adminLogin: z
          .string()
          .regex(/^[a-z_][a-z0-9_.-]{0,31}$/i, 'a Unix account name')
          .default('root')
          .describe('The login that creates and removes session accounts: root, or an account with passwordless sudo'),
        shell: z
          .string()
          .regex(/^\/[\w/.-]+$/, 'an absolute path')
          .default('/bin/bash')
          .describe("The session accounts' shell"),
      })
      .optional()
      .describe(
        'A host account per session (jit_<session>, in the group named like the policy login): its processes are all killed and it is deleted when the session ends',
      ),
  })
  .refine((t) => Boolean(t.caKeyFile) !== Boolean(t.caKeyEnv), { message: 'set exactly one of caKeyFile and caKeyEnv' });

/** One schema per engine of the registry: a type without one does not compile. */
const AGENT_TARGETS = { postgres: AgentPostgresTarget, ssh: AgentSshTarget } satisfies Record<TargetTypeName, z.ZodType>;
const AgentTarget = z.discriminatedUnion('type', Object.values(AGENT_TARGETS) as [typeof AgentPostgresTarget, typeof AgentSshTarget], {
  error: (iss) => (iss.code === 'invalid_union' ? unsupportedTargetType((iss.input as { type?: unknown } | undefined)?.type) : undefined),
});

export const AgentConfig = z.object({
  name: z.string().regex(NAME_PATTERN, NAME_RULE).describe('Agent name, as in the server config'),
  controlPlane: z.string().url().describe('Control plane URL'),
  token: z.string().optional().describe('Agent token; prefer tokenFile or JIT_AGENT_TOKEN'),
  tokenFile: z.string().optional().describe('File holding the agent token'),
  caFile: z.string().optional().describe("Extra CA (PEM) to trust for the control plane's TLS"),
  targets: z.record(z.string(), AgentTarget).describe('Targets this agent serves, by name (as in the policy)'),
  reaperInterval: DurationString.default(60).describe('How often orphaned session credentials are looked for (default 60s)'),
  maskingKeyFile: z
    .string()
    .optional()
    .describe('File holding the key of masking style hash (≥ 16 bytes); default: derived from the agent token'),
});
export type AgentConfig = z.infer<typeof AgentConfig>;
export type AgentPostgresTarget = z.infer<typeof AgentPostgresTarget>;
export type AgentSshTarget = z.infer<typeof AgentSshTarget>;
