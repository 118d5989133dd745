/**
 * Shared set-up for the inspecting engine's integration tests: an own database with demo tables,
 * an admin role, a session with inspection rules, and a TCP listener that hands each connection to
 * handlePostgresClient (no control plane). Audit events land in `events`; `recorder.ready`
 * stands for the control channel's state.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { inject } from 'vitest';
import { Catalog } from '#agent/catalog.js';
import { PostgresRoles } from '#agent/credentials/postgres-roles.js';
import type { AwaitApproval } from '#agent/engines/inspect/approval.js';
import { handlePostgresClient } from '#agent/engines/postgres.js';
import type { AgentEventInput } from '#agent/events.js';
import { StreamRegistry } from '#agent/streams.js';
import { loadSqlParser } from '#protocol/postgres/classify.js';
import { parseStartupPacket } from '#protocol/postgres/codec.js';
import { makeScramVerifier } from '#protocol/postgres/scram.js';
import { AgentPostgresTarget } from '#shared/config/agent.js';
import { InspectionRules, type SessionInfo } from '#shared/contract/agent.js';
import { createLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { sql } from '../helpers/postgres.js';

export interface Harness {
  db: string;
  port: number;
  events: AgentEventInput[];
  recorder: { ready: boolean };
  superDbUrl: string;
  /** A new session (own role) with the harness rules; connections made after this use it. */
  newSession(rules?: unknown): { session: SessionInfo; secret: string; user: string };
  /** libpq-style URL for the session. */
  url(s: { user: string; secret: string }): string;
  close(): Promise<void>;
}

export const DEFAULT_RULES = {
  guardrails: [
    {
      name: 'no-drop',
      match: { kinds: ['drop', 'truncate'] },
      action: 'block',
      message: 'dropping or truncating tables is not allowed here',
    },
    { name: 'no-kill', match: { functions: ['pg_terminate_backend'] }, action: 'block' },
    { name: 'no-unbounded-delete', match: { kinds: ['delete'], withoutWhere: true }, action: 'block' },
    { name: 'approve-alter', match: { kinds: ['alter'] }, action: 'require-approval' },
  ],
  masking: [
    { name: 'mask-email', columns: ['customers.email'], style: 'partial' },
    { name: 'mask-card', columns: ['card_number'], style: 'full' },
  ],
  maskedComputation: 'refuse',
};

/** Demo tables every inspect test can use. */
const SETUP = [
  `CREATE TABLE customers (id int primary key, name text, email text, card_number text, notes varchar(200))`,
  `INSERT INTO customers VALUES
     (1, 'Alice', 'alice@example.com', '4111 1111 1111 1111', 'vip'),
     (2, 'Bob', 'bob@example.org', '5500 0000 0000 0004', null),
     (3, 'Carol', null, null, 'mail me at carol@example.net')`,
  `CREATE TABLE orders (id serial primary key, customer int, amount numeric)`,
  `INSERT INTO orders (customer, amount) VALUES (1, 10), (1, 20), (2, 5)`,
];

export async function startInspectHarness(
  prefixHint: string,
  extraSetup: string[] = [],
  opts: { approve?: AwaitApproval; maxFrontendMessage?: number } = {},
): Promise<Harness> {
  await loadSqlParser();
  const pgInfo = inject('pg');
  const prefix = `${prefixHint}${randomBytes(3).toString('hex')}`;
  const ADMIN = `${prefix}_admin`;
  const ADMIN_PW = randomBytes(12).toString('hex');
  const ROLE = `${prefix}_rw`;
  const db = `${prefix}_db`;
  const superDbUrl = pgInfo.superUrl.replace(/\/postgres$/, `/${db}`);
  const adminUrl = `postgresql://${ADMIN}:${ADMIN_PW}@127.0.0.1:${pgInfo.port}/${db}`;
  await sql(pgInfo.superUrl, `CREATE ROLE ${ADMIN} LOGIN PASSWORD '${ADMIN_PW}' CREATEROLE`);
  await sql(pgInfo.superUrl, `GRANT pg_signal_backend TO ${ADMIN}`);
  await sql(pgInfo.superUrl, `CREATE ROLE ${ROLE} NOLOGIN`);
  await sql(pgInfo.superUrl, `GRANT ${ROLE} TO ${ADMIN} WITH ADMIN OPTION`);
  await sql(pgInfo.superUrl, `CREATE DATABASE ${db}`);
  for (const q of [...SETUP, ...extraSetup]) await sql(superDbUrl, q);
  await sql(superDbUrl, `GRANT ALL ON ALL TABLES IN SCHEMA public TO ${ROLE}`);
  await sql(superDbUrl, `GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${ROLE}`);
  await sql(superDbUrl, `GRANT USAGE, CREATE ON SCHEMA public TO ${ROLE}`);

  const events: AgentEventInput[] = [];
  const recorder = { ready: true };
  const logger = createLogger({ level: process.env['AGENT_TEST_LOG'] ?? 'silent' });
  const registry = new StreamRegistry();
  const target = {
    name: 'inspect-db',
    config: AgentPostgresTarget.parse({ type: 'postgres', host: '127.0.0.1', port: pgInfo.port, database: db, sslmode: 'disable' }),
  };
  const emit = (e: AgentEventInput) => events.push(e);
  const roles = new PostgresRoles({
    target: target.name,
    config: target.config,
    adminUrl,
    emit,
    logger,
    clock: systemClock,
    random: randomBytes,
  });
  const catalog = new Catalog({ adminUrl, target: target.name, logger, clock: systemClock });
  const sessions: SessionInfo[] = [];
  let current: SessionInfo | undefined;
  const byUser = new Map<string, SessionInfo>();
  const server = net.createServer((sock) => {
    // Route by the startup packet's user (peeked, then pushed back); anything else goes to the newest session.
    sock.once('data', (first: Buffer) => {
      sock.pause();
      sock.unshift(first);
      let session = current!;
      try {
        const p = parseStartupPacket(first);
        const user = p?.packet.kind === 'startup' ? p.packet.params.get('user') : undefined;
        if (user && byUser.has(user)) session = byUser.get(user)!;
      } catch {}
      serve(sock, session);
    });
  });
  const serve = (sock: net.Socket, session: SessionInfo) => {
    void handlePostgresClient(sock, session, target, {
      roles,
      registry,
      emit,
      logger,
      clock: systemClock,
      random: randomBytes,
      catalog,
      recorderReady: () => recorder.ready,
      approve: opts.approve,
      ...(opts.maxFrontendMessage ? { maxFrontendMessage: opts.maxFrontendMessage } : {}),
    });
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;

  return {
    db,
    port,
    events,
    recorder,
    superDbUrl,
    newSession(rules: unknown = DEFAULT_RULES) {
      const id = randomBytes(20)
        .toString('hex')
        .replace(/[^a-z0-9]/g, '')
        .slice(0, 20);
      const secret = randomBytes(24).toString('base64url');
      const session: SessionInfo = {
        id,
        user: 'alice',
        target: target.name,
        grantRoles: [ROLE],
        expiresAt: new Date(Date.now() + 3600_000).toISOString(),
        localVerifier: makeScramVerifier(secret),
        inspection: rules === null ? undefined : InspectionRules.parse(rules),
      };
      sessions.push(session);
      byUser.set(`jit_${id}`, session);
      current = session;
      return { session, secret, user: `jit_${id}` };
    },
    url: (s) => `postgresql://${s.user}:${encodeURIComponent(s.secret)}@127.0.0.1:${port}/${db}?sslmode=disable`,
    async close() {
      registry.closeAll();
      server.close();
      for (const s of sessions) await roles.dropSessionRole(s.id, 'test cleanup').catch(() => {});
      await roles.close();
      await catalog.close();
    },
  };
}
