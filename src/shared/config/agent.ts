/** Schema of the agent's configuration file (`jit agent --config`). */
import { z } from 'zod';
import { DurationString } from './server.js';

export const AgentPostgresTarget = z.object({
  type: z.literal('postgres'),
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(1).max(65535).default(5432),
  /** Default database for sessions. */
  database: z.string().default('postgres'),
  /**
   * Admin connection (needs CREATEROLE and pg_signal_backend) used to create and drop session
   * roles. Kept only here or in the environment variable named by adminUrlEnv.
   */
  adminUrl: z.string().optional(),
  adminUrlEnv: z.string().optional(),
  /** TLS to the target: disable, prefer (default) or require. */
  sslmode: z.enum(['disable', 'prefer', 'require']).default('prefer'),
});

export const AgentConfig = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  controlPlane: z.string().url(),
  /** Agent token; prefer tokenFile or the JIT_AGENT_TOKEN environment variable. */
  token: z.string().optional(),
  tokenFile: z.string().optional(),
  /** Extra CA (PEM) to trust for the control plane's TLS. */
  caFile: z.string().optional(),
  targets: z.record(z.string(), z.discriminatedUnion('type', [AgentPostgresTarget])),
  reaperInterval: DurationString.default(60),
});
export type AgentConfig = z.infer<typeof AgentConfig>;
export type AgentPostgresTarget = z.infer<typeof AgentPostgresTarget>;
