/**
 * The control plane's state, behind one query layer (kysely). The embedded default is SQLite
 * (better-sqlite3); the same queries are written to run on PostgreSQL later, so only portable SQL
 * goes here (no SQLite-only functions in queries).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { type Generated, Kysely, SqliteDialect, sql } from 'kysely';

export interface SessionsTable {
  id: string;
  username: string;
  subject: string;
  issuer: string;
  target: string;
  target_type: string;
  agent: string;
  database: string | null;
  reason: string | null;
  state: string;
  created_at: number;
  expires_at: number;
  last_heartbeat: number;
  ended_at: number | null;
  end_reason: string | null;
  /** JSON array of role names. */
  grant_roles: string;
  /** JSON ScramVerifier of the local secret (the secret itself is never stored). */
  local_verifier: string;
  access_rule: string;
  /** JSON InspectionRules decided at session start (postgres). */
  inspection: string | null;
  /** The approved access request the session was opened under (targets with an approvals rule). */
  request_id?: string | null;
}

/** Access requests (kind access) and held statements (kind statement) waiting for approvers. */
export interface RequestsTable {
  id: string;
  kind: string;
  subject: string;
  issuer: string;
  username: string;
  target: string;
  reason: string | null;
  duration_seconds: number;
  /** The approvals rule (access) or guardrail (statement) that asked for approval. */
  rule: string;
  /** JSON { users, groups, required }: the approvers as policy said when the request was filed. */
  approvers: string;
  state: string;
  /** JSON [{ subject, issuer, approver, comment?, time, scope? }]. */
  approvals: string;
  /** JSON { approver, reason, time } once denied. */
  denial: string | null;
  created_at: number;
  expires_at: number;
  decided_at: number | null;
  /** Approved access requests: a session must be opened before this. */
  usable_until: number | null;
  /** Used access requests: the session; statement requests: the session holding the statement. */
  session_id: string | null;
  /** Statement requests: JSON { sql, params, digest, kind, fingerprint, agent, agentRequestId }. */
  statement: string | null;
  /** Statement requests, approved: JSON { type, forSeconds?, until? }. */
  scope: string | null;
}

/** Notifications waiting to be delivered (durable outbox; the worker retries with backoff). */
export interface OutboxTable {
  id: Generated<number>;
  /** Which configured webhook (its URL; the secret is looked up in the config at delivery). */
  url: string;
  event: string;
  request_id: string;
  /** JSON payload (jit format; the slack format is rendered from it at delivery). */
  payload: string;
  state: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

export interface AuditTable {
  id: Generated<number>;
  time: number;
  type: string;
  actor: string | null;
  target: string | null;
  session: string | null;
  outcome: string;
  /** JSON object. */
  data: string;
  /** The chain this event belongs to (one per control-plane store; see audit/chain.ts). */
  stream: string | null;
  /** 1, 2, 3… within the stream: a gap is a removal. */
  seq: number | null;
  /** SHA-256 (hex) of the previous event of the stream. */
  prev_hash: string | null;
  /** SHA-256 (hex) over this event's canonical encoding, prev_hash included. */
  hash: string | null;
}

/** Signed checkpoints of the audit chain (audit/chain.ts Checkpoint). */
export interface AuditCheckpointsTable {
  id: Generated<number>;
  stream: string;
  last_id: number;
  last_seq: number;
  last_hash: string;
  count: number;
  time: number;
  pruned_through_id: number | null;
  pruned_through_seq: number | null;
  pruned_last_hash: string | null;
  key_id: string;
  signature: string;
}

/** Forwarding cursors: per destination, the last audit event id the receiver acknowledged. */
export interface AuditCursorsTable {
  destination: string;
  last_id: number;
  updated_at: number;
}

/** Who a user name is, per issuer: the subject first seen with it (display names are not identities). */
export interface IdentitiesTable {
  issuer: string;
  username: string;
  subject: string;
  first_seen: number;
}

export interface Schema {
  identities: IdentitiesTable;
  sessions: SessionsTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_cursors: AuditCursorsTable;
  audit_events: AuditTable;
  access_requests: RequestsTable;
  webhook_outbox: OutboxTable;
}

export type Db = Kysely<Schema>;

/** Open (and migrate) the SQLite store in dataDir. */
export async function openSqliteStore(dataDir: string, opts: { synchronous?: 'normal' | 'full' } = {}): Promise<Db> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const sqlite = new Database(path.join(dataDir, 'jit.db'));
  sqlite.pragma('journal_mode = WAL');
  // WAL + NORMAL: a committed transaction survives a crash of this process (SIGKILL included),
  // and a commit costs ~20 µs. FULL adds an fsync per commit (~0.4 ms here, and better-sqlite3
  // blocks the event loop that also relays every session's bytes) for durability across power
  // loss. See docs/audit.md.
  sqlite.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: sqlite }) });
  await migrate(db);
  return db;
}

/** Additive schema change for stores made by an older version. */
async function addColumnIfMissing(db: Db, table: string, column: string, type: 'text' | 'bigint'): Promise<void> {
  const tables = await db.introspection.getTables();
  const t = tables.find((x) => x.name === table);
  if (t && !t.columns.some((c) => c.name === column)) {
    await db.schema.alterTable(table).addColumn(column, type).execute();
  }
}

async function migrate(db: Db): Promise<void> {
  await db.schema
    .createTable('sessions')
    .ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('target_type', 'text', (c) => c.notNull())
    .addColumn('agent', 'text', (c) => c.notNull())
    .addColumn('database', 'text')
    .addColumn('reason', 'text')
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('last_heartbeat', 'bigint', (c) => c.notNull())
    .addColumn('ended_at', 'bigint')
    .addColumn('end_reason', 'text')
    .addColumn('grant_roles', 'text', (c) => c.notNull())
    .addColumn('local_verifier', 'text', (c) => c.notNull())
    .addColumn('access_rule', 'text', (c) => c.notNull())
    .addColumn('inspection', 'text')
    .execute();
  await addColumnIfMissing(db, 'sessions', 'inspection', 'text');
  await db.schema.createIndex('sessions_state').ifNotExists().on('sessions').columns(['state', 'expires_at']).execute();
  await db.schema
    .createTable('audit_events')
    .ifNotExists()
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('actor', 'text')
    .addColumn('target', 'text')
    .addColumn('session', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull())
    .execute();
  // Hash chain (audit/chain.ts); rows of older stores get chained once at start (audit-log.ts).
  await addColumnIfMissing(db, 'audit_events', 'stream', 'text');
  await addColumnIfMissing(db, 'audit_events', 'seq', 'bigint');
  await addColumnIfMissing(db, 'audit_events', 'prev_hash', 'text');
  await addColumnIfMissing(db, 'audit_events', 'hash', 'text');
  await db.schema.createIndex('audit_stream_seq').ifNotExists().on('audit_events').columns(['stream', 'seq']).execute();
  await db.schema.createIndex('audit_time').ifNotExists().on('audit_events').column('time').execute();
  await db.schema
    .createTable('audit_checkpoints')
    .ifNotExists()
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('stream', 'text', (c) => c.notNull())
    .addColumn('last_id', 'bigint', (c) => c.notNull())
    .addColumn('last_seq', 'bigint', (c) => c.notNull())
    .addColumn('last_hash', 'text', (c) => c.notNull())
    .addColumn('count', 'bigint', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('pruned_through_id', 'bigint')
    .addColumn('pruned_through_seq', 'bigint')
    .addColumn('pruned_last_hash', 'text')
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('audit_cursors')
    .ifNotExists()
    .addColumn('destination', 'text', (c) => c.primaryKey())
    .addColumn('last_id', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('audit_session').ifNotExists().on('audit_events').column('session').execute();
  await addColumnIfMissing(db, 'sessions', 'request_id', 'text');
  await db.schema
    .createTable('access_requests')
    .ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('duration_seconds', 'bigint', (c) => c.notNull())
    .addColumn('rule', 'text', (c) => c.notNull())
    .addColumn('approvers', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('approvals', 'text', (c) => c.notNull())
    .addColumn('denial', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_at', 'bigint')
    .addColumn('usable_until', 'bigint')
    .addColumn('session_id', 'text')
    .addColumn('statement', 'text')
    .addColumn('scope', 'text')
    .execute();
  await db.schema.createIndex('access_requests_state').ifNotExists().on('access_requests').columns(['state', 'expires_at']).execute();
  await db.schema.createIndex('access_requests_subject').ifNotExists().on('access_requests').columns(['subject', 'created_at']).execute();
  await db.schema
    .createTable('webhook_outbox')
    .ifNotExists()
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('event', 'text', (c) => c.notNull())
    .addColumn('request_id', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull())
    .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('delivered_at', 'bigint')
    .execute();
  await db.schema.createIndex('webhook_outbox_due').ifNotExists().on('webhook_outbox').columns(['state', 'next_attempt_at']).execute();
  await db.schema
    .createTable('identities')
    .ifNotExists()
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('first_seen', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('identities_pk', ['issuer', 'username'])
    .execute();
  await sql`SELECT 1`.execute(db);
}
