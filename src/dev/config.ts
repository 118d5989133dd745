/**
 * The configuration `jit dev` runs with, written as ordinary files (`<dir>/server.yaml`,
 * `<dir>/policy.yaml`) so that a newcomer can read them, and so that the same files work with
 * `jit server --config <dir>/server.yaml`. Both are validated by the real schemas before use.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { AgentConfig } from '#shared/config/agent.js';
import { parseYamlConfig } from '#shared/config/load.js';
import { Policy } from '#shared/config/policy.js';
import { ServerConfig } from '#shared/config/server.js';
import { ADMIN_GROUP, type DevUser } from './state.js';

export const DEMO_TARGET = 'demo-db';
/** The same demo database with broader rights (demo_admin), opened only after bob approves. */
export const DEMO_ADMIN_TARGET = 'demo-db-admin';
/** The demo SSH host (the machine's own sshd, when it has one). */
export const DEMO_SSH_TARGET = 'demo-host';
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
  /** The account the demo-host target logs in as; absent = no demo-host (no sshd here). */
  sshLogin?: string;
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

/** The demo SSH host's part of the policy: engineers may log in as `login`; reboots are blocked. */
function sshPolicy(login: string) {
  return {
    target: {
      name: DEMO_SSH_TARGET,
      type: 'ssh',
      agent: AGENT_NAME,
      description: `This machine over SSH, as ${login} (certificate valid for the session only)`,
      recordInput: false,
    },
    access: { name: 'engineers-demo-host', targets: [DEMO_SSH_TARGET], groups: ['engineers'], logins: [login], maxDuration: '1h' },
    guardrails: [
      {
        name: 'no-reboot',
        targets: [DEMO_SSH_TARGET],
        match: { commands: ['reboot', 'shutdown', 'poweroff', 'halt', 'systemctl reboot', 'systemctl poweroff', 'init 0', 'init 6'] },
        action: 'block',
        message: 'rebooting or shutting down the demo host is not allowed',
      },
    ],
  };
}

/** The demo policy as YAML text (with the demo-host SSH target when `sshLogin` is given). */
export function policyYaml(sshLogin?: string): string {
  const ssh = sshLogin ? sshPolicy(sshLogin) : undefined;
  const doc = {
    targets: [
      {
        name: DEMO_TARGET,
        type: 'postgres',
        agent: AGENT_NAME,
        database: DEMO_DATABASE,
        description: 'Demo shop database: customers, orders, products',
      },
      {
        name: DEMO_ADMIN_TARGET,
        type: 'postgres',
        agent: AGENT_NAME,
        database: DEMO_DATABASE,
        description: 'The demo database with admin rights (needs approval)',
      },
      ...(ssh ? [ssh.target] : []),
    ],
    access: [
      {
        name: 'engineers-demo-db',
        targets: [DEMO_TARGET],
        groups: ['engineers'],
        grantRoles: ['demo_writer'],
        maxDuration: '8h',
      },
      {
        name: 'engineers-demo-db-admin',
        targets: [DEMO_ADMIN_TARGET],
        groups: ['engineers'],
        grantRoles: ['demo_admin'],
        maxDuration: '1h',
      },
      ...(ssh ? [ssh.access] : []),
    ],
    // Just-in-time approvals (README "Approvals"): admin rights only after bob says yes.
    approvals: [
      {
        name: 'admin-needs-bob',
        targets: [DEMO_ADMIN_TARGET],
        approvers: { users: ['bob'], timeout: '30m' },
        maxDuration: '1h',
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
      ...(ssh ? ssh.guardrails : []),
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
  const policyText = policyYaml(input.sshLogin);
  const serverFile = path.join(dir, SERVER_FILE);
  const policyFile = path.join(dir, POLICY_FILE);
  // Validate before writing: a schema change elsewhere must fail here, loudly, not at login.
  parseYamlConfig(policyText, Policy, policyFile);
  const config = parseYamlConfig(serverText, ServerConfig, serverFile);
  writeFileSync(policyFile, policyText, { mode: 0o600 });
  writeFileSync(serverFile, serverText, { mode: 0o600 });
  return config;
}

/** The in-process agent's config: the embedded PostgreSQL (reached as jit_admin) and, if any, the demo sshd. */
export function devAgentConfig(opts: {
  controlPlane: string;
  pgPort: number;
  adminUrl: string;
  ssh?: { port: number; hostKeyLine: string; caKeyFile: string };
}): AgentConfig {
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
      [DEMO_ADMIN_TARGET]: {
        type: 'postgres',
        host: '127.0.0.1',
        port: opts.pgPort,
        database: DEMO_DATABASE,
        adminUrl: opts.adminUrl,
        sslmode: 'disable',
      },
      ...(opts.ssh
        ? {
            [DEMO_SSH_TARGET]: {
              type: 'ssh',
              host: '127.0.0.1',
              port: opts.ssh.port,
              hostKeys: [opts.ssh.hostKeyLine],
              caKeyFile: opts.ssh.caKeyFile,
            },
          }
        : {}),
    },
  });
}
