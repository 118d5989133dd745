/**
 * The agent's PostgreSQL engine against a real PostgreSQL, driven without the control plane:
 * real TCP connections on 127.0.0.1 are handed to handlePostgresClient, and real clients
 * (node-postgres, psql) connect as jit_<sid> with the session's local secret.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { PostgresRoles } from '#agent/credentials/postgres-roles.js';
import { handlePostgresClient } from '#agent/engines/postgres.js';
import type { AgentEventInput } from '#agent/events.js';
import { StreamRegistry } from '#agent/streams.js';
import { sslRequest, startupMessage } from '#protocol/postgres/codec.js';
import { makeScramVerifier } from '#protocol/postgres/scram.js';
import { AgentPostgresTarget } from '#shared/config/agent.js';
import type { SessionInfo } from '#shared/contract/agent.js';
import { createLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { sql } from '../helpers/postgres.js';

const run = promisify(execFile);
const pgInfo = inject('pg');
const prefix = `pe${randomBytes(3).toString('hex')}`;
const ADMIN = `${prefix}_admin`;
const ADMIN_PW = randomBytes(12).toString('hex');
const READER = `${prefix}_reader`;
const DB = `${prefix}_db`;
const superIn = (db: string) => pgInfo.superUrl.replace(/\/postgres$/, `/${db}`);
const adminUrl = `postgresql://${ADMIN}:${ADMIN_PW}@127.0.0.1:${pgInfo.port}/${DB}`;

const events: AgentEventInput[] = [];
const logger = createLogger({ level: process.env['AGENT_TEST_LOG'] ?? 'silent' });
const registry = new StreamRegistry();
let roles: PostgresRoles;
let server: net.Server;
let port: number;
const sessions = new Map<string, SessionInfo>();
const target = {
  name: 'test-db',
  config: AgentPostgresTarget.parse({ type: 'postgres', host: '127.0.0.1', port: pgInfo.port, database: DB, sslmode: 'prefer' }),
};

function newSession(): { session: SessionInfo; secret: string } {
  const id = randomBytes(20)
    .toString('hex')
    .replace(/[^a-z0-9]/g, '')
    .slice(0, 20);
  const secret = randomBytes(24).toString('base64url');
  const session: SessionInfo = {
    id,
    user: 'alice',
    target: target.name,
    grantRoles: [READER],
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    localVerifier: makeScramVerifier(secret),
  };
  sessions.set(id, session);
  return { session, secret };
}

/** The listener serves the session named by the client's user (test-only routing). */
let current: SessionInfo | undefined;

function client(session: SessionInfo, password: string, extra: Partial<pg.ClientConfig> = {}): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: `jit_${session.id}`,
    password,
    database: DB,
    ...extra,
  });
  c.on('error', () => {});
  return c;
}

async function roleExists(role: string): Promise<boolean> {
  return (await sql(pgInfo.superUrl, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).length > 0;
}

beforeAll(async () => {
  await sql(pgInfo.superUrl, `CREATE ROLE ${ADMIN} LOGIN PASSWORD '${ADMIN_PW}' CREATEROLE`);
  await sql(pgInfo.superUrl, `GRANT pg_signal_backend TO ${ADMIN}`);
  await sql(pgInfo.superUrl, `CREATE ROLE ${READER} NOLOGIN`);
  await sql(pgInfo.superUrl, `GRANT ${READER} TO ${ADMIN} WITH ADMIN OPTION`);
  await sql(pgInfo.superUrl, `CREATE DATABASE ${DB}`);
  const s = superIn(DB);
  await sql(s, 'CREATE TABLE allowed (x int); INSERT INTO allowed VALUES (1), (2)');
  await sql(s, 'CREATE TABLE secret (x int); INSERT INTO secret VALUES (42)');
  await sql(s, `GRANT SELECT ON allowed TO ${READER}`);
  await sql(s, `GRANT USAGE, CREATE ON SCHEMA public TO ${READER}`);
  roles = new PostgresRoles({
    target: target.name,
    config: target.config,
    adminUrl,
    emit: (e) => events.push(e),
    logger: logger,
    clock: systemClock,
    random: randomBytes,
  });
  server = net.createServer((sock) => {
    // Route by peeking nothing: tests set `current` before connecting.
    const session = current!;
    void handlePostgresClient(sock, session, target, {
      roles,
      registry,
      emit: (e) => events.push(e),
      logger: logger,
      clock: systemClock,
      random: randomBytes,
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  registry.closeAll();
  server?.close();
  for (const id of sessions.keys()) await roles?.dropSessionRole(id, 'test cleanup').catch(() => {});
  await roles?.close();
});

describe('postgres engine', () => {
  it('logs the client in as jit_<sid> with the grant role, and no more', async () => {
    const { session, secret } = newSession();
    current = session;
    const c = client(session, secret, { application_name: 'engine-test' });
    await c.connect();
    try {
      const who = await c.query('select current_user as u, current_database() as d, pg_backend_pid() as pid');
      expect(who.rows[0]).toMatchObject({ u: `jit_${session.id}`, d: DB });
      // The client got our own backend key, not the server's.
      expect((c as unknown as { processID: number }).processID).not.toBe(who.rows[0].pid);
      const app = await c.query('show application_name');
      expect(app.rows[0].application_name).toBe('engine-test');
      expect((await c.query('select count(*)::int as n from allowed')).rows[0].n).toBe(2);
      await expect(c.query('select * from secret')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
    await expect
      .poll(() => events.find((e) => e.event === 'connection.closed' && e.session === session.id))
      .toMatchObject({
        data: { bytesIn: expect.any(Number), bytesOut: expect.any(Number) },
      });
    const closed = events.find((e) => e.event === 'connection.closed' && e.session === session.id)!;
    expect(closed.data!['bytesIn']).toBeGreaterThan(100);
    expect(closed.data!['bytesOut']).toBeGreaterThan(100);
    const created = events.filter((e) => e.event === 'credential.created' && e.session === session.id);
    expect(created).toHaveLength(1);
    expect(created[0]!.data).toMatchObject({ role: `jit_${session.id}` });
    // VALID UNTIL is the role lease (60 s ahead by default, renewed while the session lives), not the session's expiry
    expect(Date.parse(String(created[0]!.data?.['validUntil'])) - Date.now()).toBeLessThanOrEqual(60_000);
    expect(JSON.stringify(events)).not.toContain(secret);
  });

  it('refuses a wrong secret with 28P01 and creates no role', async () => {
    const { session } = newSession();
    current = session;
    const c = client(session, 'not-the-secret');
    await expect(c.connect()).rejects.toMatchObject({
      code: '28P01',
      message: `password authentication failed for user "jit_${session.id}"`,
    });
    expect(await roleExists(`jit_${session.id}`)).toBe(false);
    expect(events.some((e) => e.event === 'local-auth.failed' && e.session === session.id)).toBe(true);
  });

  it('refuses another user name with 28000', async () => {
    const { session, secret } = newSession();
    current = session;
    const c = client(session, secret, { user: ADMIN });
    await expect(c.connect()).rejects.toMatchObject({ code: '28000' });
    expect(await roleExists(`jit_${session.id}`)).toBe(false);
  });

  it('refuses another database on the same server (42501), touching neither the role nor the target', async () => {
    const { session, secret } = newSession();
    current = session;
    const c = client(session, secret, { database: 'postgres' });
    await expect(c.connect()).rejects.toMatchObject({ code: '42501', message: `this jit session is for database "${DB}", not "postgres"` });
    expect(await roleExists(`jit_${session.id}`)).toBe(false);
  });

  it('refuses replication connections', async () => {
    const { session, secret } = newSession();
    current = session;
    const c = client(session, secret, { replication: 'database' } as Partial<pg.ClientConfig>);
    await expect(c.connect()).rejects.toMatchObject({ code: '42501' });
  });

  it('with sslmode=require fails closed when the target will not encrypt', async () => {
    const { session, secret } = newSession();
    const strict = { name: target.name, config: { ...target.config, sslmode: 'require' as const } };
    const srv = net.createServer(
      (sock) =>
        void handlePostgresClient(sock, session, strict, {
          roles,
          registry,
          emit: (e) => events.push(e),
          logger,
          clock: systemClock,
          random: randomBytes,
        }),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: (srv.address() as net.AddressInfo).port,
        user: `jit_${session.id}`,
        password: secret,
        database: DB,
      });
      c.on('error', () => {});
      await expect(c.connect()).rejects.toMatchObject({ code: '08001', message: 'jit: The target cannot be reached right now' });
    } finally {
      srv.close();
    }
  });

  it('refuses bytes sent ahead of the answer to SSLRequest (no N, protocol error)', async () => {
    const { session } = newSession();
    current = session;
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (b: Buffer) => chunks.push(b));
    await new Promise((r) => sock.once('connect', r));
    sock.write(Buffer.concat([sslRequest(), startupMessage({ user: `jit_${session.id}` })]));
    await new Promise((r) => sock.once('close', r));
    const answer = Buffer.concat(chunks);
    expect(String.fromCharCode(answer[0]!)).toBe('E');
    expect(answer.toString('latin1')).toContain('08P01');
  });

  it('works with psql and sslmode=prefer (SSLRequest answered N)', async () => {
    const { session, secret } = newSession();
    current = session;
    const { stdout } = await run(
      '/usr/bin/psql',
      [
        `host=127.0.0.1 port=${port} user=jit_${session.id} dbname=${DB} sslmode=prefer`,
        '-Atc',
        'select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()',
      ],
      { env: { ...process.env, PGPASSWORD: secret, PGCONNECT_TIMEOUT: '10' } },
    );
    // The session role is logged in; the upstream leg is encrypted only if the server has TLS (it has not here).
    expect(stdout.trim()).toBe(`jit_${session.id}|f`);
  });

  it('cancels a running query through our own backend key', async () => {
    const { session, secret } = newSession();
    current = session;
    const c = client(session, secret);
    await c.connect();
    try {
      const started = Date.now();
      const q = c.query('select pg_sleep(30)');
      await new Promise((r) => setTimeout(r, 300));
      const canceller = client(session, secret);
      (canceller as unknown as { cancel(c: pg.Client, q: unknown): void }).cancel(
        c,
        (c as unknown as { activeQuery: unknown }).activeQuery,
      );
      await expect(q).rejects.toMatchObject({ code: '57014' });
      expect(Date.now() - started).toBeLessThan(5_000);
      expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('a cancel key of another session does nothing', async () => {
    const a = newSession();
    current = a.session;
    const c = client(a.session, a.secret);
    await c.connect();
    try {
      const q = c.query('select pg_sleep(1.5) as done');
      await new Promise((r) => setTimeout(r, 200));
      const b = newSession();
      current = b.session;
      const canceller = client(b.session, b.secret);
      (canceller as unknown as { cancel(c: pg.Client, q: unknown): void }).cancel(
        c,
        (c as unknown as { activeQuery: unknown }).activeQuery,
      );
      await expect(q).resolves.toMatchObject({ rowCount: 1 });
    } finally {
      await c.end();
    }
  });

  it('20 concurrent first connections create the role exactly once', async () => {
    const { session, secret } = newSession();
    current = session;
    const clients = Array.from({ length: 20 }, () => client(session, secret));
    try {
      const users = await Promise.all(
        clients.map(async (c) => {
          await c.connect();
          return (await c.query('select current_user as u')).rows[0].u;
        }),
      );
      expect(new Set(users)).toEqual(new Set([`jit_${session.id}`]));
      expect(registry.count(session.id)).toBe(20);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
    }
    expect(events.filter((e) => e.event === 'credential.created' && e.session === session.id)).toHaveLength(1);
  });

  it('dropSessionRole terminates open connections, survives owned objects and is idempotent', async () => {
    const { session, secret } = newSession();
    current = session;
    const c = client(session, secret);
    await c.connect();
    await c.query('create table made_in_session (x int)');
    const role = `jit_${session.id}`;
    const gone = new Promise<void>((r) => c.once('end', () => r()));
    expect(await roles.dropSessionRole(session.id, 'session ended')).toBe(true);
    await gone;
    await expect(c.query('select 1')).rejects.toThrow();
    expect(await roleExists(role)).toBe(false);
    const owner = await sql(superIn(DB), "select tableowner from pg_tables where tablename = 'made_in_session'");
    expect(owner).toEqual([{ tableowner: ADMIN }]);
    expect(await roles.dropSessionRole(session.id, 'session ended')).toBe(false);
    expect(events.filter((e) => e.event === 'credential.destroyed' && e.session === session.id)).toMatchObject([
      { outcome: 'success', data: { role, reason: 'session ended' } },
    ]);
    // An ended session never gets its role back.
    const again = client(session, secret);
    await expect(again.connect()).rejects.toMatchObject({ code: '08004' });
    expect(await roleExists(role)).toBe(false);
  });

  it('a role that exists already (agent restarted) is re-keyed, not an error', async () => {
    const { session, secret } = newSession();
    current = session;
    const role = `jit_${session.id}`;
    // As the previous agent run would have left it: created by the same admin, password unknown now.
    await sql(adminUrl, `CREATE ROLE ${role} LOGIN PASSWORD 'stale'`);
    const c = client(session, secret);
    await c.connect();
    try {
      expect((await c.query('select count(*)::int as n from allowed')).rows[0].n).toBe(2);
    } finally {
      await c.end();
    }
    const until = await sql<{ v: Date }>(pgInfo.superUrl, 'select rolvaliduntil as v from pg_roles where rolname = $1', [role]);
    // re-keyed with a fresh lease
    const ahead = new Date(until[0]!.v).getTime() - Date.now();
    expect(ahead).toBeGreaterThan(50_000);
    expect(ahead).toBeLessThanOrEqual(60_000);
  });
});
