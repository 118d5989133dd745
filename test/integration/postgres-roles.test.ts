/**
 * Session-role lifecycle and the reaper against a real PostgreSQL, as a non-superuser admin
 * (CREATEROLE + pg_signal_backend), the way an agent runs in production.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { checkedSessionRoleName, PostgresRoles } from '#agent/credentials/postgres-roles.js';
import type { AgentEventInput } from '#agent/events.js';
import { reapOnce } from '#agent/reaper.js';
import { makeScramVerifier } from '#protocol/postgres/scram.js';
import { AgentPostgresTarget } from '#shared/config/agent.js';
import type { SessionInfo } from '#shared/contract/agent.js';
import { silentLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { sql } from '../helpers/postgres.js';

const pgInfo = inject('pg');
const prefix = `pr${randomBytes(3).toString('hex')}`;
const ADMIN = `${prefix}_admin`;
const ADMIN_PW = randomBytes(12).toString('hex');
const READER = `${prefix}_reader`;
const DB = `${prefix}_db`;
const DB2 = `${prefix}_db2`;
const adminUrl = `postgresql://${ADMIN}:${ADMIN_PW}@127.0.0.1:${pgInfo.port}/${DB}`;
const superIn = (db: string) => pgInfo.superUrl.replace(/\/postgres$/, `/${db}`);
const events: AgentEventInput[] = [];
let roles: PostgresRoles;

function sid(): string {
  let s = '';
  while (s.length < 20) s += randomBytes(16).toString('hex');
  return s.slice(0, 20);
}

function session(overrides: Partial<SessionInfo> = {}): SessionInfo {
  return {
    id: sid(),
    user: 'alice',
    target: 't',
    grantRoles: [READER],
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    localVerifier: makeScramVerifier('x'),
    ...overrides,
  };
}

async function existing(names: string[]): Promise<string[]> {
  const rows = await sql<{ rolname: string }>(pgInfo.superUrl, 'select rolname from pg_roles where rolname = any($1) order by 1', [names]);
  return rows.map((r) => r.rolname);
}

beforeAll(async () => {
  await sql(pgInfo.superUrl, `CREATE ROLE ${ADMIN} LOGIN PASSWORD '${ADMIN_PW}' CREATEROLE`);
  await sql(pgInfo.superUrl, `GRANT pg_signal_backend TO ${ADMIN}`);
  await sql(pgInfo.superUrl, `CREATE ROLE ${READER} NOLOGIN`);
  await sql(pgInfo.superUrl, `GRANT ${READER} TO ${ADMIN} WITH ADMIN OPTION`);
  await sql(pgInfo.superUrl, `CREATE DATABASE ${DB}`);
  await sql(pgInfo.superUrl, `CREATE DATABASE ${DB2}`);
  for (const db of [DB, DB2]) await sql(superIn(db), `GRANT USAGE, CREATE ON SCHEMA public TO ${READER}`);
  roles = new PostgresRoles({
    target: 't',
    config: AgentPostgresTarget.parse({ type: 'postgres', port: pgInfo.port, database: DB }),
    adminUrl,
    emit: (e) => events.push(e),
    logger: silentLogger(),
    clock: systemClock,
    random: randomBytes,
  });
});

afterAll(async () => {
  await roles?.close();
});

describe('session roles', () => {
  it('creates the role with the verifier, expiry, grant role and comment; never the plaintext', async () => {
    const s = session();
    const cred = await roles.ensureSessionRole(s);
    expect(cred.role).toBe(`jit_${s.id}`);
    const [row] = await sql<{ until: Date; comment: string; member: boolean; pw: string }>(
      pgInfo.superUrl,
      `select rolvaliduntil as until, shobj_description(oid, 'pg_authid') as comment,
              pg_has_role(rolname, $2, 'member') as member, (select rolpassword from pg_authid where rolname = $1) as pw
         from pg_roles where rolname = $1`,
      [cred.role, READER],
    );
    // VALID UNTIL is a lease (roleLease, 60 s by default) renewed while the session lives, not the expiry
    const ahead = new Date(row!.until).getTime() - Date.now();
    expect(ahead).toBeGreaterThan(50_000);
    expect(ahead).toBeLessThanOrEqual(60_000);
    expect(row!.comment).toBe(`jit session ${s.id}`);
    expect(row!.member).toBe(true);
    expect(row!.pw).toMatch(/^SCRAM-SHA-256\$4096:/);
    // The password we hold logs in.
    const c = new pg.Client({ host: '127.0.0.1', port: pgInfo.port, user: cred.role, password: cred.password, database: DB });
    await c.connect();
    await c.end();
    await roles.dropSessionRole(s.id, 'test');
  });

  it("a role's VALID UNTIL is a lease the agent renews: with the agent gone, the role stops logging in within it", async () => {
    const leased = new PostgresRoles({
      target: 't',
      config: { ...AgentPostgresTarget.parse({ type: 'postgres', port: pgInfo.port, database: DB }), roleLease: 1 },
      adminUrl,
      emit: (e) => events.push(e),
      logger: silentLogger(),
      clock: systemClock,
      random: randomBytes,
    });
    const s = session();
    const cred = await leased.ensureSessionRole(s);
    const login = async () => {
      const c = new pg.Client({ host: '127.0.0.1', port: pgInfo.port, user: cred.role, password: cred.password, database: DB });
      c.on('error', () => {});
      try {
        await c.connect();
        await c.end();
        return 'ok';
      } catch (err) {
        return (err as { code?: string }).code ?? 'error';
      }
    };
    await new Promise((r) => setTimeout(r, 1600));
    expect(await login()).toBe('ok'); // renewed while the agent lives
    await leased.close(); // the agent dies: nobody renews, nobody drops
    await new Promise((r) => setTimeout(r, 1600));
    expect(await login()).toBe('28P01');
    await roles.dropSessionRole(s.id, 'test cleanup');
  });

  it('a role found again gets exactly the policy memberships, and is refused when it has more or attributes jit never gives', async () => {
    const extra = `${prefix}_extra`;
    const foreign = `${prefix}_foreign`;
    await sql(pgInfo.superUrl, `CREATE ROLE ${extra} NOLOGIN`);
    await sql(pgInfo.superUrl, `CREATE ROLE ${foreign} NOLOGIN`);
    await sql(pgInfo.superUrl, `GRANT ${extra} TO ${ADMIN} WITH ADMIN OPTION`);
    const s = session();
    const cred = await roles.ensureSessionRole(s);
    // a membership the agent's admin can revoke (granted by the admin, as another agent run would)
    await sql(adminUrl, `GRANT ${extra} TO ${cred.role}`);
    roles.invalidate(s.id); // as after an agent restart: the next connection re-ensures the role
    await roles.ensureSessionRole(s);
    const member = await sql<{ m: boolean }>(pgInfo.superUrl, `select pg_has_role($1, $2, 'member') as m`, [cred.role, extra]);
    expect(member[0]!.m).toBe(false);
    const ev = events.filter((e) => e.session === s.id && e.event === 'credential.created').pop();
    expect(ev?.data).toMatchObject({ revokedMemberships: [extra] });
    // one it cannot revoke (a superuser granted a role the admin does not administer): refused
    await sql(pgInfo.superUrl, `GRANT ${foreign} TO ${cred.role}`);
    roles.invalidate(s.id);
    await expect(roles.ensureSessionRole(s)).rejects.toMatchObject({ code: 'JIT_CREDENTIAL_FAILED' });
    await sql(pgInfo.superUrl, `REVOKE ${foreign} FROM ${cred.role}`);
    await sql(pgInfo.superUrl, `ALTER ROLE ${cred.role} CREATEDB`);
    roles.invalidate(s.id);
    await expect(roles.ensureSessionRole(s)).rejects.toMatchObject({ code: 'JIT_CREDENTIAL_FAILED' });
    await sql(pgInfo.superUrl, `ALTER ROLE ${cred.role} NOCREATEDB`);
    await roles.dropSessionRole(s.id, 'test cleanup');
  });

  it("carries the policy's statement and idle-in-transaction timeouts as the role's defaults", async () => {
    const s = session({ roleSettings: { statementTimeout: 1, idleInTransactionTimeout: 30 } });
    const cred = await roles.ensureSessionRole(s);
    const c = new pg.Client({ host: '127.0.0.1', port: pgInfo.port, user: cred.role, password: cred.password, database: DB });
    c.on('error', () => {});
    await c.connect();
    try {
      expect((await c.query('show statement_timeout')).rows[0].statement_timeout).toBe('1s');
      expect((await c.query('show idle_in_transaction_session_timeout')).rows[0].idle_in_transaction_session_timeout).toBe('30s');
      await expect(c.query('select pg_sleep(3)')).rejects.toMatchObject({ code: '57014' });
    } finally {
      await c.end();
    }
    // found again without them (policy changed): reset to the server's
    roles.invalidate(s.id);
    const again = await roles.ensureSessionRole({ ...s, roleSettings: undefined });
    const c2 = new pg.Client({ host: '127.0.0.1', port: pgInfo.port, user: again.role, password: again.password, database: DB });
    await c2.connect();
    expect((await c2.query('show statement_timeout')).rows[0].statement_timeout).toBe('0');
    await c2.end();
    await roles.dropSessionRole(s.id, 'test cleanup');
  });

  it('a drop that fails is retried at once with backoff, not at the next reaper pass, and the role cannot log in meanwhile', async () => {
    const locked = `${prefix}_locked`;
    await sql(pgInfo.superUrl, `CREATE DATABASE ${locked}`);
    const s = session();
    const cred = await roles.ensureSessionRole(s);
    // the role owns a table in a database the agent's admin may not connect to: DROP OWNED cannot run there
    await sql(pgInfo.superUrl, `REVOKE CONNECT ON DATABASE ${locked} FROM PUBLIC`);
    await sql(superIn(locked), `CREATE TABLE owned_by_session (a int)`);
    await sql(superIn(locked), `ALTER TABLE owned_by_session OWNER TO ${cred.role}`);
    await expect(roles.dropSessionRole(s.id, 'test')).rejects.toMatchObject({ code: 'JIT_CREDENTIAL_FAILED' });
    expect(events.find((e) => e.session === s.id && e.event === 'credential.destroy-pending')).toMatchObject({
      data: { role: cred.role, attempt: 1 },
    });
    // NOLOGIN came first: the role is unusable while the drop is pending
    const c = new pg.Client({ host: '127.0.0.1', port: pgInfo.port, user: cred.role, password: cred.password, database: DB });
    c.on('error', () => {});
    await expect(c.connect()).rejects.toMatchObject({ code: '28000' });
    // the cause goes away: the next retry (1 s, then 2 s …) drops it without anyone asking
    await sql(pgInfo.superUrl, `GRANT CONNECT ON DATABASE ${locked} TO ${ADMIN}`);
    const gone = async () => (await existing([cred.role])).length === 0;
    const until = Date.now() + 10_000;
    while (!(await gone()) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    expect(await gone()).toBe(true);
    expect(events.find((e) => e.session === s.id && e.event === 'credential.destroyed' && e.outcome === 'success')).toBeDefined();
  });

  it('refuses session ids without the fixed shape (reapers could never find them)', () => {
    expect(() => checkedSessionRoleName('short')).toThrow();
    expect(() => checkedSessionRoleName('UPPERCASE0123456789X')).toThrow();
  });

  it('reports credential.failed for a grant role the admin may not hand out', async () => {
    const s = session({ grantRoles: ['pg_read_server_files'] });
    await expect(roles.ensureSessionRole(s)).rejects.toMatchObject({ code: 'JIT_CREDENTIAL_FAILED' });
    expect(await existing([`jit_${s.id}`])).toEqual([]);
    expect(events.find((e) => e.session === s.id)).toMatchObject({ event: 'credential.failed', outcome: 'failure' });
  });

  it('drops objects the role owns in every database it touched', async () => {
    const s = session();
    const cred = await roles.ensureSessionRole(s);
    // The role connects to a second database (the engine would note it) and creates a table there.
    roles.noteDatabase(s.id, DB2);
    const c = new pg.Client({ host: '127.0.0.1', port: pgInfo.port, user: cred.role, password: cred.password, database: DB2 });
    await c.connect();
    await c.query('create table owned_by_session (x int)');
    await c.end();
    expect(await roles.dropSessionRole(s.id, 'exit')).toBe(true);
    expect(await existing([cred.role])).toEqual([]);
    const owner = await sql(superIn(DB2), "select tableowner from pg_tables where tablename = 'owned_by_session'");
    expect(owner).toEqual([{ tableowner: ADMIN }]);
  });
});

describe('reaper', () => {
  it('drops orphans, keeps live sessions and never touches other roles', async () => {
    const orphan = sid();
    const live = sid();
    const others = [`jit_admin_${prefix}`, `jit_${sid()}x`, `jit_${sid().toUpperCase()}`, `${prefix}_jit_${sid()}`];
    for (const r of [`jit_${orphan}`, `jit_${live}`]) await sql(adminUrl, `CREATE ROLE "${r}" LOGIN`);
    for (const r of others) await sql(adminUrl, `CREATE ROLE "${r}" NOLOGIN`);
    let asked: string[] = [];
    const result = await reapOnce({
      targets: new Map([['t', roles]]),
      askLive: async (ids) => {
        asked = ids;
        return [live];
      },
      logger: silentLogger(),
      clock: systemClock,
    });
    expect(asked).toEqual(expect.arrayContaining([orphan, live]));
    expect(result.dropped).toContainEqual({ target: 't', role: `jit_${orphan}`, reason: 'orphaned' });
    expect(await existing([`jit_${orphan}`, `jit_${live}`, ...others])).toEqual([`jit_${live}`, ...others].sort());
    await roles.dropSessionRole(live, 'test');
    for (const r of others) await sql(adminUrl, `DROP ROLE "${r}"`);
  });

  it('leaves session roles another admin (another agent) manages', async () => {
    const foreign = sid();
    await sql(pgInfo.superUrl, `CREATE ROLE "jit_${foreign}" LOGIN VALID UNTIL '2000-01-01'`);
    try {
      const result = await reapOnce({
        targets: new Map([['t', roles]]),
        askLive: async () => [],
        logger: silentLogger(),
        clock: systemClock,
      });
      // Not even attempted (an attempt would show up in failed: this admin may not alter it).
      expect([...result.dropped, ...result.failed].map((d) => d.role)).not.toContain(`jit_${foreign}`);
      expect(await existing([`jit_${foreign}`])).toEqual([`jit_${foreign}`]);
    } finally {
      await sql(pgInfo.superUrl, `DROP ROLE "jit_${foreign}"`);
    }
  });

  it('without an answer from the control plane drops only expired roles', async () => {
    const expired = sid();
    const valid = sid();
    await sql(adminUrl, `CREATE ROLE "jit_${expired}" LOGIN VALID UNTIL '2000-01-01'`);
    await sql(adminUrl, `CREATE ROLE "jit_${valid}" LOGIN VALID UNTIL '2999-01-01'`);
    const result = await reapOnce({
      targets: new Map([['t', roles]]),
      askLive: async () => undefined,
      logger: silentLogger(),
      clock: systemClock,
    });
    expect(result.dropped).toContainEqual({ target: 't', role: `jit_${expired}`, reason: 'expired' });
    expect(await existing([`jit_${expired}`, `jit_${valid}`])).toEqual([`jit_${valid}`]);
    await roles.dropSessionRole(valid, 'test');
  });
});
