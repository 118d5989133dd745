/** Schema of the policy file: targets and who may access them. */
import { z } from 'zod';
import { DurationString } from './server.js';
import { ENGINES, misplacedTargetField, TargetType } from '../contract/engines.js';
import { NAME_PATTERN, NAME_RULE } from '../contract/ids.js';

const Name = z.string().regex(NAME_PATTERN, NAME_RULE);
const PgIdent = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'a plain PostgreSQL identifier');

export const PolicyTarget = z
  .object({
    name: Name.describe('Target name users type: jit connect <name>'),
    type: TargetType.describe('Protocol engine: postgres or ssh'),
    agent: Name.describe('Agent that reaches this target'),
    description: z.string().default('').describe('Shown by jit targets'),
    database: PgIdent.optional().describe('postgres: default database'),
    databases: z
      .array(PgIdent)
      .optional()
      .describe('postgres: other databases a session may choose with --database (any other is refused)'),
    maxDuration: DurationString.optional().describe('Longest session on this target'),
    statementTimeout: DurationString.optional().describe(
      "postgres: the session role's statement_timeout default (a statement running longer is cancelled)",
    ),
    idleInTransactionTimeout: DurationString.optional().describe(
      "postgres: the session role's idle_in_transaction_session_timeout default (a transaction left open longer ends its connection)",
    ),
    recordInput: z
      .boolean()
      .default(false)
      .describe('ssh: record keystrokes too, not only the output (typed passwords end up in the recording)'),
    commandMode: z
      .enum(['denylist', 'allowlist'])
      .optional()
      .describe(
        'ssh: denylist (default): what no guardrail blocks runs; allowlist: only commands an allow guardrail lists run (see unlistedCommands)',
      ),
    unlistedCommands: z
      .enum(['block', 'require-approval'])
      .optional()
      .describe('ssh, allowlist mode: what happens to a command no guardrail lists (default block)'),
  })
  .superRefine((t, ctx) => {
    // A field of another engine is a mistake the user should hear about, not a silent no-op.
    for (const field of Object.values(ENGINES).flatMap((e) => e.targetFields)) {
      const v = (t as Record<string, unknown>)[field];
      if (v === undefined || v === false) continue;
      const message = misplacedTargetField(t.type, field);
      if (message) ctx.addIssue({ code: 'custom', path: [field], message });
    }
  });

export const AccessRule = z
  .object({
    name: z.string().min(1).describe('Rule name (in audit events and errors)'),
    targets: z.array(z.string()).min(1).describe('Target names, or "*"'),
    users: z.array(z.string()).default([]).describe('User names this rule applies to (workload:<name> / service:<name> for machines)'),
    groups: z.array(z.string()).default([]).describe('Groups (from the token) this rule applies to'),
    grantRoles: z.array(PgIdent).default([]).describe('postgres: roles the session role becomes a member of'),
    logins: z
      .array(z.string().regex(/^[a-z_][a-z0-9_.-]{0,31}\$?$/i, 'a Unix account name'))
      .default([])
      .describe('ssh: accounts the user may log in as (certificate principals); the first is the default'),
    allowForwarding: z
      .boolean()
      .default(false)
      .describe(
        'ssh: allow port forwarding (ssh -L) through the session, to the destinations forwardTo names; agent and X11 forwarding are never allowed',
      ),
    forwardTo: z
      .array(z.string().regex(/^[A-Za-z0-9*._:[\]-]+:(\*|\d{1,5}(-\d{1,5})?)$/, 'host:port, host:low-high or host:* (host may use *)'))
      .default([])
      .describe(
        'ssh, with allowForwarding: destinations forwarding may reach ("db.internal:5432", "10.0.0.*:80-89", "*:443"); anything else is refused',
      ),
    maxDuration: DurationString.optional().describe('Longest session under this rule'),
  })
  .refine((r) => r.users.length + r.groups.length > 0, { message: 'name at least one user or group' })
  .refine((r) => !r.allowForwarding || r.forwardTo.length > 0, {
    message: 'allowForwarding needs forwardTo: name the host:port destinations forwarding may reach',
  });

/** Statement kinds the PostgreSQL classifier reports (see docs/policy.md for what each covers). */
export const STATEMENT_KINDS = [
  'select',
  'insert',
  'update',
  'delete',
  'merge',
  'copy-to',
  'copy-from',
  'copy-program',
  'create',
  'alter',
  'drop',
  'truncate',
  'grant',
  'revoke',
  'create-role',
  'alter-role',
  'drop-role',
  'set-role',
  'set-session-authorization',
  'set',
  'reset',
  'show',
  'transaction',
  'prepare',
  'execute',
  'deallocate',
  'explain',
  'explain-analyze',
  'do',
  'call',
  'create-function',
  'listen',
  'notify',
  'maintenance',
  'lock',
  'other',
  'copy-file',
  // Specific kinds: every statement the parser knows, reported next to the broad kind above
  // (VACUUM is maintenance and vacuum; DROP TABLE is drop and drop-table). docs/policy.md lists them.
  'begin',
  'commit',
  'rollback',
  'savepoint',
  'release-savepoint',
  'rollback-to-savepoint',
  'prepare-transaction',
  'commit-prepared',
  'rollback-prepared',
  'declare-cursor',
  'fetch',
  'move',
  'close-cursor',
  'set-constraints',
  'discard',
  'unlisten',
  'vacuum',
  'analyze',
  'cluster',
  'reindex',
  'checkpoint',
  'refresh-materialized-view',
  'load',
  'comment',
  'security-label',
  'rename',
  'reassign-owned',
  'drop-owned',
  'grant-role',
  'revoke-role',
  'alter-default-privileges',
  'alter-system',
  'create-table',
  'create-table-as',
  'create-materialized-view',
  'create-view',
  'create-index',
  'create-sequence',
  'create-schema',
  'create-type',
  'create-domain',
  'create-aggregate',
  'create-operator',
  'create-operator-class',
  'create-operator-family',
  'create-collation',
  'create-conversion',
  'create-cast',
  'create-transform',
  'create-access-method',
  'create-language',
  'create-extension',
  'create-foreign-data-wrapper',
  'create-server',
  'create-foreign-table',
  'create-user-mapping',
  'import-foreign-schema',
  'create-trigger',
  'create-event-trigger',
  'create-rule',
  'create-policy',
  'create-publication',
  'create-subscription',
  'create-statistics',
  'create-tablespace',
  'create-database',
  'create-object',
  'alter-table',
  'alter-sequence',
  'alter-type',
  'alter-domain',
  'alter-function',
  'alter-operator',
  'alter-operator-family',
  'alter-collation',
  'alter-text-search',
  'alter-extension',
  'alter-foreign-data-wrapper',
  'alter-server',
  'alter-user-mapping',
  'alter-event-trigger',
  'alter-policy',
  'alter-publication',
  'alter-subscription',
  'alter-statistics',
  'alter-tablespace',
  'alter-database',
  'alter-owner',
  'alter-object',
  'drop-table',
  'drop-view',
  'drop-materialized-view',
  'drop-index',
  'drop-sequence',
  'drop-schema',
  'drop-function',
  'drop-extension',
  'drop-type',
  'drop-trigger',
  'drop-policy',
  'drop-foreign-table',
  'drop-publication',
  'drop-event-trigger',
  'drop-subscription',
  'drop-tablespace',
  'drop-user-mapping',
  'drop-database',
  'drop-object',
] as const;
export const StatementKind = z.enum(STATEMENT_KINDS);
export type StatementKind = z.infer<typeof StatementKind>;

/** Function classes guardrails can name (src/protocol/postgres/function-classes.ts says which function is which). */
export const FUNCTION_CLASSES = [
  'sql-executing',
  'serialiser',
  'backend-signal',
  'server-file',
  'large-object',
  'advisory-lock',
  'notification',
  'configuration',
  'replication-admin',
  'extension-management',
  'statistics-values',
  'user-defined',
  'security-definer',
  'unknown',
] as const;
export type FunctionClass = (typeof FUNCTION_CLASSES)[number];

const Who = {
  targets: z.array(z.string()).default(['*']).describe('Target names, or "*" (default)'),
  users: z.array(z.string()).default([]).describe('Users it applies to (empty users and groups: everyone)'),
  groups: z.array(z.string()).default([]).describe('Groups it applies to (empty users and groups: everyone)'),
};

export const GuardrailMatch = z
  .object({
    kinds: z.array(StatementKind).default([]).describe('Statement kinds, e.g. drop, truncate, alter'),
    relations: z.array(z.string()).default([]).describe('Tables read or written: "table", "schema.table", or "schema.*"'),
    relationsWritten: z.array(z.string()).default([]).describe('Tables written (INSERT/UPDATE/DELETE/MERGE/COPY FROM/TRUNCATE)'),
    functions: z
      .array(z.string())
      .default([])
      .describe('Functions called, e.g. pg_terminate_backend, dblink* (trailing * matches a prefix)'),
    functionClasses: z
      .array(z.enum(FUNCTION_CLASSES))
      .default([])
      .describe('Classes of functions called, e.g. sql-executing, server-file (docs/policy.md lists them and their members)'),
    withoutWhere: z.boolean().default(false).describe('DELETE or UPDATE without a WHERE clause'),
    opaque: z.boolean().default(false).describe('Code jit cannot judge: DO blocks, function bodies, EXECUTE, CALL'),
    commands: z
      .array(z.string().min(1).max(200))
      .default([])
      .describe(
        'ssh: commands, e.g. reboot, "systemctl restart", "rm -rf /" (a name, * as a wildcard, then arguments that must all appear)',
      ),
    interactive: z.boolean().default(false).describe('ssh: an interactive shell (jit ssh without a command)'),
  })
  .refine((m) => !(m.interactive && m.commands.length > 0), { message: 'interactive and commands cannot be combined' })
  .refine(
    (m) =>
      !(
        (m.commands.length > 0 || m.interactive) &&
        (m.kinds.length + m.relations.length + m.relationsWritten.length + m.functions.length + m.functionClasses.length > 0 ||
          m.withoutWhere ||
          m.opaque)
      ),
    { message: 'a guardrail matches SQL statements or SSH commands, not both' },
  )
  .describe('A statement matches when it meets EVERY condition given (empty lists are not conditions)');

/**
 * Whether a guardrail is about SSH (commands / interactive shells). Those apply only to ssh
 * sessions; the others only to postgres sessions, where a rule without conditions matches all.
 */
export function isCommandGuardrail(g: { match: { commands?: string[]; interactive?: boolean } }): boolean {
  return (g.match.commands?.length ?? 0) > 0 || g.match.interactive === true;
}

/** Who may approve, how many of them, and how long they have. */
export const ApproverSpec = z
  .object({
    users: z.array(z.string()).default([]).describe('Users who may approve'),
    groups: z.array(z.string()).default([]).describe('Groups whose members may approve'),
    required: z.number().int().min(1).max(10).default(1).describe('How many distinct approvers must approve (N of M)'),
    timeout: DurationString.default(30 * 60).describe('A request nobody decides in this time expires (default 30m)'),
  })
  .refine((a) => a.users.length + a.groups.length > 0, { message: 'name at least one approver user or group' });
export type ApproverSpec = z.infer<typeof ApproverSpec>;

export const Guardrail = z.object({
  name: z.string().min(1).describe('Rule name: shown in the refusal and the audit log'),
  ...Who,
  match: GuardrailMatch,
  action: z.enum(['allow', 'block', 'require-approval']).describe('What happens to a matching statement'),
  message: z.string().max(300).optional().describe('Shown to the user when the rule refuses a statement'),
  approvers: ApproverSpec.optional().describe('require-approval: who approves the statement (default: the administrators)'),
});
export type Guardrail = z.infer<typeof Guardrail>;

export const Detector = z.union([
  z.enum(['email', 'credit-card', 'phone', 'iban']),
  z.object({ regex: z.string().min(1).max(500).describe('A custom pattern (JavaScript syntax)'), name: z.string().optional() }),
]);
export type Detector = z.infer<typeof Detector>;

export const MaskRule = z
  .object({
    name: z.string().min(1).describe('Rule name, in the audit log'),
    ...Who,
    columns: z.array(z.string()).default([]).describe('Columns: "column", "table.column" or "schema.table.column"'),
    detectors: z.array(Detector).default([]).describe('Content detectors applied to every text value of the result'),
    style: z.enum(['full', 'partial', 'hash']).default('full').describe('full: ****; partial: keep a hint; hash: stable digest'),
  })
  .refine((r) => r.columns.length + r.detectors.length > 0, { message: 'name at least one column or detector' });
export type MaskRule = z.infer<typeof MaskRule>;

/** Access to a target that needs a human to approve a request first. */
export const ApprovalRule = z.object({
  name: z.string().min(1).describe('Rule name, in requests and the audit log'),
  ...Who,
  approvers: ApproverSpec,
  reasonRequired: z.boolean().default(true).describe('The requester must give --reason'),
  maxDuration: DurationString.optional().describe('Longest access an approval grants'),
});
export type ApprovalRule = z.infer<typeof ApprovalRule>;

export const Policy = z.object({
  targets: z.array(PolicyTarget).default([]).describe('What can be reached'),
  access: z.array(AccessRule).default([]).describe('Who may reach what; first matching rule wins; deny by default'),
  approvals: z
    .array(ApprovalRule)
    .default([])
    .describe('Targets whose sessions need an approved access request (first matching rule applies)'),
  guardrails: z
    .array(Guardrail)
    .default([])
    .describe(
      'postgres: per-statement rules, the strictest matching rule wins (block > require-approval > allow); ssh: per-command and interactive-shell rules (commands, interactive), first match wins; what no rule matches is allowed',
    ),
  masking: z.array(MaskRule).default([]).describe('postgres: columns and content masked in results'),
  maskedComputation: z
    .enum(['refuse', 'allow'])
    .default('refuse')
    .describe('What to do with queries that compute on a masked column (lower(email), GROUP BY email, LIKE probes)'),
  newerServer: z
    .enum(['refuse', 'warn'])
    .default('refuse')
    .describe(
      "postgres: a target newer than jit's SQL parser (whose new grammar jit cannot judge): refuse its sessions, or let them in with a warning and a connection.warning audit event",
    ),
});
export type Policy = z.infer<typeof Policy>;
export type PolicyTarget = z.infer<typeof PolicyTarget>;
export type AccessRule = z.infer<typeof AccessRule>;
