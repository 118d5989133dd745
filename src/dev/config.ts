/**
 * The configuration `jit dev` runs with, written as ordinary files (`<dir>/server.yaml`,
 * `<dir>/policy.yaml`) so that a newcomer can read them, and so that the same files work with
 * `jit server --config <dir>/server.yaml`. Both are validated by the real schemas before use.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { AgentConfig } from '../shared/config/agent.js';
import { parseYamlConfig } from '../shared/config/load.js';
import { Policy } from '../shared/config/policy.js';
import { ServerConfig } from '../shared/config/server.js';
import { ADMIN_GROUP, type DevUser } from './state.js';

export const DEMO_TARGET = 'demo-db';
export const DEMO_DATABASE = 'demo';
export const AGENT_NAME = 'local';
export const SERVER_FILE = 'server.yaml';
export const POLICY_FILE = 'policy.yaml';

export interface DevServerInput {
  /** Control plane port; 0 = any free port. */
  port: number;
  users: Array<Pick<DevUser, 'username' | 'name' | 'email' | 'groups'> & { passwordHash: string }>;
  agentTokenHash: string;
  heartbeatTimeoutSeconds: number;
}

/** `sha256:<hex>`, the form the server config keeps agent tokens in. */
export function agentTokenHash(token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('hex')}`;
}

/** The server config as YAML text (paths relative to the dev folder). */
export function serverYaml(input: DevServerInput): string {
  const doc = {
    listen: `127.0.0.1:${input.port}`,
    dataDir: './server',
    policy: `./${POLICY_FILE}`,
    identity: {
      builtin: {
        users: input.users.map((u) => ({
          username: u.username,
          name: u.name,
          email: u.email,
          groups: u.groups,
          passwordHash: u.passwordHash,
        })),
      },
    },
    admins: { groups: [ADMIN_GROUP] },
    agents: [{ name: AGENT_NAME, tokenHash: input.agentTokenHash }],
    sessions: { heartbeatTimeout: `${input.heartbeatTimeoutSeconds}s` },
  };
  return `# Written by jit dev at every start; edits are overwritten. Passwords: dev-users.json.\n${stringify(doc)}`;
}

/** The demo policy as YAML text. */
export function policyYaml(): string {
  const doc = {
    targets: [
      {
        name: DEMO_TARGET,
        type: 'postgres',
        agent: AGENT_NAME,
        database: DEMO_DATABASE,
        description: 'Demo shop database: customers, orders, products',
      },
    ],
    access: [
      {
        name: 'engineers-demo-db',
        targets: [DEMO_TARGET],
        groups: ['engineers'],
        grantRoles: ['demo_writer'],
        maxDuration: '8h',
      },
    ],
    // Layer 7: what a newcomer should see in the first five minutes (README walkthrough).
    guardrails: [
      {
        name: 'bulk-changes-need-approval',
        match: { kinds: ['delete', 'update'], withoutWhere: true, relations: ['customers'] },
        action: 'require-approval',
        message: 'DELETE or UPDATE of every customer needs approval',
        approvers: { users: ['bob'] },
      },
      {
        name: 'no-ddl',
        match: {
          kinds: ['create', 'alter', 'drop', 'truncate', 'grant', 'revoke', 'create-role', 'alter-role', 'drop-role'],
        },
        action: 'block',
        message: 'schema and privilege changes are not allowed through jit dev',
      },
      {
        name: 'no-dangerous-functions',
        match: {
          functions: [
            'pg_terminate_backend',
            'pg_cancel_backend',
            'pg_read_file',
            'pg_read_binary_file',
            'pg_read_server_files',
            'pg_ls_dir',
            'lo_import',
            'lo_export',
            'dblink*',
            'set_config',
          ],
        },
        action: 'block',
      },
      {
        name: 'no-escalation',
        match: { kinds: ['set-role', 'set-session-authorization', 'copy-program', 'do', 'create-function'] },
        action: 'block',
      },
    ],
    masking: [
      { name: 'customer-email', columns: ['customers.email'], style: 'partial' },
      { name: 'customer-card', columns: ['customers.card_number'], style: 'full' },
    ],
    maskedComputation: 'refuse',
  };
  return `# Written by jit dev at every start; edits are overwritten.\n${stringify(doc)}`;
}

/** Write both files into the dev folder and return the validated server config. */
export function writeDevConfig(dir: string, input: DevServerInput): ServerConfig {
  const serverText = serverYaml(input);
  const policyText = policyYaml();
  const serverFile = path.join(dir, SERVER_FILE);
  const policyFile = path.join(dir, POLICY_FILE);
  // Validate before writing: a schema change elsewhere must fail here, loudly, not at login.
  parseYamlConfig(policyText, Policy, policyFile);
  const config = parseYamlConfig(serverText, ServerConfig, serverFile);
  writeFileSync(policyFile, policyText, { mode: 0o600 });
  writeFileSync(serverFile, serverText, { mode: 0o600 });
  return config;
}

/** The in-process agent's config: one target, the embedded PostgreSQL, reached as jit_admin. */
export function devAgentConfig(opts: { controlPlane: string; pgPort: number; adminUrl: string }): AgentConfig {
  return AgentConfig.parse({
    name: AGENT_NAME,
    controlPlane: opts.controlPlane,
    targets: {
      [DEMO_TARGET]: {
        type: 'postgres',
        host: '127.0.0.1',
        port: opts.pgPort,
        database: DEMO_DATABASE,
        adminUrl: opts.adminUrl,
        sslmode: 'disable',
      },
    },
  });
}
