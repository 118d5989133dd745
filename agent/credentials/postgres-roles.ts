/**
 * Per-session PostgreSQL roles: `jit_<sessionId>`, created on a session's first connection and
 * dropped when the session ends (or by the reaper).
 *
 * Security decisions made here:
 * - The role's password is 32 random bytes held only in this process's memory; the server gets
 *   only its SCRAM verifier (the plaintext NEVER appears in a statement or a server log).
 * - `VALID UNTIL` is a lease: the session's expiry or `roleLease` ahead, whichever is sooner, renewed
 *   by the agent while the session lives. A role whose agent died stops accepting logins within the
 *   lease, with nobody left to drop it.
 * - A role found again (agent restarted) is brought back to exactly the policy's memberships, and
 *   refused if someone gave it attributes jit never gives (superuser, createrole, …).
 * - Privileges come ONLY through group roles (`IN ROLE`), so teardown never has to revoke grants
 *   made by someone else.
 * - Teardown order is fixed: NOLOGIN → terminate its backends (wait) → REASSIGN/DROP OWNED in every
 *   database it touched → DROP ROLE. Doing DROP ROLE first would leave live sessions lingering.
 * - Only names matching `^jit_[a-z0-9]{20}$` are ever created or dropped.
 */
import pg from 'pg';
import { quoteIdent, quoteLiteral } from '#protocol/postgres/sql-quote.js';
import { makeScramVerifier, scramVerifierString } from '#protocol/postgres/scram.js';
import type { AgentPostgresTarget } from '#shared/config/agent.js';
import type { SessionInfo } from '#shared/contract/agent.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { EmitEvent } from '../events.js';
import { SESSION_ROLE_PATTERN, SESSION_ROLE_SQL_PATTERN, sessionRoleName } from '#shared/contract/ids.js';

/** The only role names the agent ever creates or drops (the contract's pattern). */
export { SESSION_ROLE_PATTERN };

/** `jit_<sessionId>`; throws for ids that do not have the fixed 20-character shape. */
export function checkedSessionRoleName(sessionId: string): string {
  const role = sessionRoleName(sessionId);
  if (!SESSION_ROLE_PATTERN.test(role)) {
    throw new JitError('JIT_CREDENTIAL_FAILED', { detail: 'session id does not have the 20-character shape' });
  }
  return role;
}

export interface SessionCredential {
  role: string;
  /** Plaintext password of the role; lives only in this process's memory. */
  password: string;
}

export interface SessionRoleRow {
  role: string;
  sessionId: string;
  /** VALID UNTIL in ms since the epoch, or null when unset. */
  validUntil: number | null;
}

export interface PostgresRolesDeps {
  /** Target name (for events). */
  target: string;
  config: AgentPostgresTarget;
  /** Admin connection URL (CREATEROLE + pg_signal_backend). Never logged. */
  adminUrl: string;
  emit: EmitEvent;
  logger: Logger;
  clock: Clock;
  random(bytes: number): Buffer;
  /** How long to wait for terminated backends to go away (default 5 s). */
  terminateWaitMs?: number;
}

const ENDED_MEMORY_MS = 24 * 3600_000;
/** Longest wait between retries of a failed drop. */
const MAX_DROP_RETRY_MS = 30_000;

export class PostgresRoles {
  private readonly pool: pg.Pool;
  private readonly ensured = new Map<string, Promise<SessionCredential>>();
  private readonly dropping = new Map<string, Promise<boolean>>();
  private readonly databases = new Map<string, Set<string>>();
  /** Sessions whose role was dropped: never re-created (a late stream must not resurrect it). */
  private readonly ended = new Map<string, number>();
  /** Lease renewals per live session role. */
  private readonly renewals = new Map<string, NodeJS.Timeout>();
  /** Drops that failed and wait for their retry. */
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly deps: PostgresRolesDeps) {
    if (!deps.adminUrl) throw new JitError('JIT_CONFIG_INVALID', { message: `target ${deps.target}: no admin connection URL` });
    this.pool = new pg.Pool({ connectionString: deps.adminUrl, max: 4, idleTimeoutMillis: 30_000 });
    // An idle admin connection dropped by the server must not crash the agent.
    this.pool.on('error', (err) => deps.logger.warn({ target: deps.target, code: pgCode(err) }, 'admin connection lost'));
  }

  /**
   * Make sure the session's role exists with a password we know (single-flight per session:
   * concurrent first connections create it once). Existing roles (agent restarted) get a new
   * password and expiry instead of failing with "role already exists".
   */
  ensureSessionRole(session: SessionInfo): Promise<SessionCredential> {
    if (this.ended.has(session.id)) {
      return Promise.reject(new JitError('JIT_SESSION_ENDED'));
    }
    let p = this.ensured.get(session.id);
    if (!p) {
      p = this.createOrUpdate(session);
      this.ensured.set(session.id, p);
      // A failure must not be cached: the next connection tries again.
      p.catch(() => {
        if (this.ensured.get(session.id) === p) this.ensured.delete(session.id);
      });
    }
    return p;
  }

  /** Forget the cached credential (the target refused it); the next connection re-ensures the role. */
  invalidate(sessionId: string): void {
    this.ensured.delete(sessionId);
  }

  /** Remember a database the session's role connected to (DROP OWNED must run there). */
  noteDatabase(sessionId: string, database: string): void {
    let set = this.databases.get(sessionId);
    if (!set) {
      set = new Set();
      this.databases.set(sessionId, set);
    }
    set.add(database);
  }

  private async createOrUpdate(session: SessionInfo): Promise<SessionCredential> {
    const role = checkedSessionRoleName(session.id);
    const expires = new Date(session.expiresAt);
    if (Number.isNaN(expires.getTime())) throw new JitError('JIT_CREDENTIAL_FAILED', { detail: 'invalid session expiry' });
    const validUntil = this.leaseUntil(expires.getTime());
    const password = this.deps.random(32).toString('base64url');
    const verifier = scramVerifierString(makeScramVerifier(password));
    const groups = session.grantRoles.map(quoteIdent);
    const r = quoteIdent(role);
    const started = this.deps.clock.now();
    for (let attempt = 0; ; attempt++) {
      const client = await this.connectAdmin();
      let created = false;
      let revoked: string[] = [];
      try {
        await client.query('BEGIN');
        const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
        if (exists.rowCount === 0) {
          // CREATE ROLE takes no bind parameters: every name and literal is quoted above.
          await client.query(
            `CREATE ROLE ${r} LOGIN PASSWORD ${quoteLiteral(verifier)} VALID UNTIL ${quoteLiteral(validUntil)}` +
              (groups.length > 0 ? ` IN ROLE ${groups.join(', ')}` : ''),
          );
          created = true;
        } else {
          await this.refuseForeignAttributes(client, role);
          await client.query(`ALTER ROLE ${r} LOGIN PASSWORD ${quoteLiteral(verifier)} VALID UNTIL ${quoteLiteral(validUntil)}`);
          for (const g of groups) await client.query(`GRANT ${g} TO ${r}`);
          revoked = await this.revokeForeignMemberships(client, role, session.grantRoles);
        }
        await client.query(`COMMENT ON ROLE ${r} IS ${quoteLiteral(`jit session ${session.id}`)}`);
        // the policy's timeout defaults, set or reset so a role found again has exactly them
        for (const [name, secs] of [
          ['statement_timeout', session.roleSettings?.statementTimeout],
          ['idle_in_transaction_session_timeout', session.roleSettings?.idleInTransactionTimeout],
        ] as const) {
          await client.query(
            secs === undefined ? `ALTER ROLE ${r} RESET ${name}` : `ALTER ROLE ${r} SET ${name} = ${quoteLiteral(`${secs}s`)}`,
          );
        }
        await client.query('COMMIT');
        client.release();
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        client.release();
        // Another agent process created it between our check and CREATE: take the ALTER path.
        if (pgCode(err) === '42710' && attempt === 0) continue;
        this.deps.logger.error(
          { target: this.deps.target, session: session.id, code: pgCode(err), err: safePgMessage(err) },
          'creating the session role failed',
        );
        this.deps.emit({
          event: 'credential.failed',
          session: session.id,
          target: this.deps.target,
          outcome: 'failure',
          data: { role, sqlstate: pgCode(err), ...(err instanceof JitError ? { reason: err.message } : {}) },
        });
        if (err instanceof JitError) throw err;
        throw new JitError('JIT_CREDENTIAL_FAILED', { cause: err, detail: pgCode(err) });
      }
      this.noteDatabase(session.id, this.deps.config.database);
      this.deps.emit({
        event: 'credential.created',
        session: session.id,
        target: this.deps.target,
        outcome: 'success',
        data: {
          role,
          validUntil,
          grantRoles: session.grantRoles,
          existed: !created,
          ...(revoked.length ? { revokedMemberships: revoked } : {}),
          ms: this.deps.clock.now() - started,
        },
      });
      this.renewLater(session.id, role, expires.getTime());
      return { role, password };
    }
  }

  /** VALID UNTIL for now: the lease ahead, never past the session's expiry. */
  private leaseUntil(expiresMs: number): string {
    const lease = (this.deps.config.roleLease ?? 60) * 1000;
    return new Date(Math.min(expiresMs, this.deps.clock.now() + lease)).toISOString();
  }

  /** Renew the role's lease at a third of it while the session lives (until its expiry, a drop or close). */
  private renewLater(sessionId: string, role: string, expiresMs: number): void {
    this.deps.clock.clearTimeout(this.renewals.get(sessionId));
    const lease = (this.deps.config.roleLease ?? 60) * 1000;
    if (this.deps.clock.now() + lease >= expiresMs) {
      this.renewals.delete(sessionId);
      return; // the lease already reaches the expiry
    }
    const t = this.deps.clock.setTimeout(() => {
      if (this.ended.has(sessionId) || this.renewals.get(sessionId) !== t) return;
      const until = this.leaseUntil(expiresMs);
      this.pool
        .query(`ALTER ROLE ${quoteIdent(role)} VALID UNTIL ${quoteLiteral(until)}`)
        .catch((err) =>
          this.deps.logger.warn(
            { target: this.deps.target, session: sessionId, code: pgCode(err) },
            'renewing the role lease failed; retrying',
          ),
        )
        .finally(() => {
          if (this.renewals.get(sessionId) === t) this.renewLater(sessionId, role, expiresMs);
        });
    }, lease / 3);
    t.unref?.();
    this.renewals.set(sessionId, t);
  }

  /** A role someone gave attributes jit never gives is not reused: refused (the reaper or drop removes it). */
  private async refuseForeignAttributes(client: pg.ClientBase, role: string): Promise<void> {
    const res = await client.query<{ bad: string[] }>(
      `SELECT array_remove(ARRAY[
                CASE WHEN rolsuper THEN 'superuser' END, CASE WHEN rolcreaterole THEN 'createrole' END,
                CASE WHEN rolcreatedb THEN 'createdb' END, CASE WHEN rolreplication THEN 'replication' END,
                CASE WHEN rolbypassrls THEN 'bypassrls' END], NULL) AS bad
         FROM pg_roles WHERE rolname = $1`,
      [role],
    );
    const bad = res.rows[0]?.bad ?? [];
    if (bad.length > 0) {
      throw new JitError('JIT_CREDENTIAL_FAILED', { message: `The session role has attributes jit never gives it (${bad.join(', ')})` });
    }
  }

  /** Memberships the role has beyond the policy's grant roles are revoked; returns their names. */
  private async revokeForeignMemberships(client: pg.ClientBase, role: string, grantRoles: readonly string[]): Promise<string[]> {
    const res = await client.query<{ rolname: string }>(
      `SELECT g.rolname FROM pg_auth_members m
         JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
        WHERE u.rolname = $1`,
      [role],
    );
    const keep = new Set(grantRoles);
    const extra = res.rows.map((r) => r.rolname).filter((g) => !keep.has(g));
    const stuck: string[] = [];
    for (const g of extra) {
      // a savepoint per revoke: one the admin may not make must not abort the others' check
      await client.query('SAVEPOINT jit_revoke');
      try {
        await client.query(`REVOKE ${quoteIdent(g)} FROM ${quoteIdent(role)}`);
        await client.query('RELEASE SAVEPOINT jit_revoke');
      } catch {
        await client.query('ROLLBACK TO SAVEPOINT jit_revoke');
      }
      const still = await client.query<{ m: boolean }>("SELECT pg_has_role($1, $2, 'member') AS m", [role, g]);
      if (still.rows[0]?.m) stuck.push(g);
    }
    if (stuck.length > 0) {
      // fail closed: a role with privileges the policy does not give is never handed out
      throw new JitError('JIT_CREDENTIAL_FAILED', {
        message: `The session role was given memberships jit cannot revoke (${stuck.join(', ')}); it is not used`,
      });
    }
    return extra;
  }

  /**
   * Drop the session's role: NOLOGIN, terminate its backends, REASSIGN/DROP OWNED in every database
   * it touched, DROP ROLE. Idempotent; returns whether a role was dropped. Afterwards the session
   * can never get its role back from this agent.
   */
  dropSessionRole(sessionId: string, reason: string): Promise<boolean> {
    this.markEnded(sessionId);
    let p = this.dropping.get(sessionId);
    if (!p) {
      p = this.drop(sessionId, reason).finally(() => this.dropping.delete(sessionId));
      this.dropping.set(sessionId, p);
      // revocation does not wait for the reaper's next pass: retried at once, with backoff
      p.catch(() => this.retryDrop(sessionId, reason, 1));
    }
    return p;
  }

  /** Retry a failed drop after 1, 2, 4 … 30 s until it succeeds (or the agent stops); recorded as credential.destroy-pending. */
  private retryDrop(sessionId: string, reason: string, attempt: number): void {
    if (this.closed || this.retries.has(sessionId)) return;
    const delay = Math.min(MAX_DROP_RETRY_MS, 1000 * 2 ** Math.min(attempt - 1, 10));
    if (attempt === 1 || attempt % 5 === 0) {
      this.deps.emit({
        event: 'credential.destroy-pending',
        session: sessionId,
        target: this.deps.target,
        outcome: 'failure',
        data: { role: checkedSessionRoleName(sessionId), attempt, retryInMs: delay, reason },
      });
    }
    const t = this.deps.clock.setTimeout(() => {
      this.retries.delete(sessionId);
      if (this.closed) return;
      const p = this.drop(sessionId, reason).finally(() => this.dropping.delete(sessionId));
      this.dropping.set(sessionId, p);
      p.catch(() => this.retryDrop(sessionId, reason, attempt + 1));
    }, delay);
    t.unref?.();
    this.retries.set(sessionId, t);
  }

  private markEnded(sessionId: string): void {
    this.deps.clock.clearTimeout(this.renewals.get(sessionId));
    this.renewals.delete(sessionId);
    const now = this.deps.clock.now();
    for (const [id, at] of this.ended) if (now - at > ENDED_MEMORY_MS) this.ended.delete(id);
    this.ended.set(sessionId, now);
  }

  private async drop(sessionId: string, reason: string): Promise<boolean> {
    const role = checkedSessionRoleName(sessionId);
    const r = quoteIdent(role);
    // Let a creation in flight finish first, or it would re-create the role after we drop it.
    await this.ensured.get(sessionId)?.catch(() => {});
    this.ensured.delete(sessionId);
    try {
      const found = await this.pool.query<{ oid: number }>('SELECT oid FROM pg_roles WHERE rolname = $1', [role]);
      const oid = found.rows[0]?.oid;
      if (oid === undefined) {
        this.databases.delete(sessionId);
        return false;
      }
      await this.pool.query(`ALTER ROLE ${r} NOLOGIN`);
      await this.terminateBackends(role);
      const dbs = new Set(this.databases.get(sessionId) ?? []);
      dbs.add(this.deps.config.database);
      const owned = await this.pool.query<{ datname: string }>(
        `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1`,
        [oid],
      );
      for (const row of owned.rows) dbs.add(row.datname);
      // REASSIGN/DROP OWNED need the privileges of the role; its creator holds ADMIN OPTION
      // on it (PostgreSQL 16+) or CREATEROLE (15), either of which allows this self-grant.
      await this.pool.query(`GRANT ${r} TO CURRENT_USER`).catch(() => {});
      for (const db of dbs) await this.dropOwnedIn(db, r);
      await this.pool.query(`DROP ROLE IF EXISTS ${r}`);
      this.databases.delete(sessionId);
      this.deps.emit({
        event: 'credential.destroyed',
        session: sessionId,
        target: this.deps.target,
        outcome: 'success',
        data: { role, reason },
      });
      return true;
    } catch (err) {
      this.deps.logger.error(
        { target: this.deps.target, session: sessionId, code: pgCode(err), err: safePgMessage(err) },
        'dropping the session role failed',
      );
      this.deps.emit({
        event: 'credential.destroyed',
        session: sessionId,
        target: this.deps.target,
        outcome: 'failure',
        data: { role, reason, sqlstate: pgCode(err) },
      });
      throw new JitError('JIT_CREDENTIAL_FAILED', {
        message: 'The session credential could not be removed from the target',
        cause: err,
      });
    }
  }

  private async terminateBackends(role: string): Promise<void> {
    const deadline = this.deps.clock.now() + (this.deps.terminateWaitMs ?? 5_000);
    for (;;) {
      const r = await this.pool.query<{ pid: number }>(
        'SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()',
        [role],
      );
      if (r.rowCount === 0) return;
      if (this.deps.clock.now() > deadline) {
        throw new JitError('JIT_CREDENTIAL_FAILED', { detail: `${r.rowCount} backends of the role did not exit` });
      }
      await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, 50));
    }
  }

  private async dropOwnedIn(database: string, quotedRole: string): Promise<void> {
    const run = async (c: pg.ClientBase) => {
      await c.query(`REASSIGN OWNED BY ${quotedRole} TO CURRENT_USER`);
      await c.query(`DROP OWNED BY ${quotedRole}`);
    };
    if (this.isAdminDefaultDb(database)) {
      const c = await this.pool.connect();
      try {
        await run(c);
      } finally {
        c.release();
      }
      return;
    }
    const c = await this.connectTo(database);
    if (!c) return;
    try {
      await run(c);
    } finally {
      await c.end().catch(() => {});
    }
  }

  private isAdminDefaultDb(database: string): boolean {
    return adminDatabase(this.deps.adminUrl) === database;
  }

  /** A one-off admin connection to another database; undefined when that database no longer exists. */
  private async connectTo(database: string): Promise<pg.Client | undefined> {
    const url = new URL(this.deps.adminUrl);
    url.pathname = `/${encodeURIComponent(database)}`;
    const client = new pg.Client({ connectionString: url.toString() });
    client.on('error', () => {});
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => {});
      if (pgCode(err) === '3D000') return undefined;
      throw err;
    }
  }

  private async connectAdmin(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      this.deps.logger.error({ target: this.deps.target, code: pgCode(err), err: safePgMessage(err) }, 'admin connection failed');
      throw new JitError('JIT_CREDENTIAL_FAILED', { cause: err, detail: 'admin connection failed' });
    }
  }

  /**
   * Session roles on the target that this admin manages: names matching the fixed pattern and,
   * on PostgreSQL 16+ with a non-superuser admin, only roles it holds ADMIN OPTION on (the roles
   * it created). Another agent sharing the cluster with its own admin role keeps its roles.
   */
  async listSessionRoles(): Promise<SessionRoleRow[]> {
    const r = await this.pool.query<{ rolname: string; rolvaliduntil: Date | null }>(
      `SELECT r.rolname, r.rolvaliduntil FROM pg_roles r
        WHERE r.rolname ~ '${SESSION_ROLE_SQL_PATTERN}'
          AND (current_setting('server_version_num')::int < 160000
               OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
               OR EXISTS (SELECT 1 FROM pg_auth_members m
                           WHERE m.roleid = r.oid AND m.admin_option
                             AND m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)))`,
    );
    return r.rows
      .filter((row) => SESSION_ROLE_PATTERN.test(row.rolname))
      .map((row) => ({
        role: row.rolname,
        sessionId: row.rolname.slice(4),
        validUntil: row.rolvaliduntil ? new Date(row.rolvaliduntil).getTime() : null,
      }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of [...this.renewals.values(), ...this.retries.values()]) this.deps.clock.clearTimeout(t);
    this.renewals.clear();
    this.retries.clear();
    await Promise.allSettled([...this.dropping.values()]);
    await this.pool.end().catch(() => {});
  }
}

function adminDatabase(url: string): string | undefined {
  try {
    const p = new URL(url).pathname.replace(/^\//, '');
    return p ? decodeURIComponent(p) : undefined;
  } catch {
    return undefined;
  }
}

/** SQLSTATE of a pg error, if any. */
export function pgCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** A pg error's message for logs: server messages name objects, never passwords (we send only verifiers). */
function safePgMessage(err: unknown): string {
  return err instanceof Error ? err.message.slice(0, 300) : 'unknown error';
}
