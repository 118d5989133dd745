/**
 * A whole jit stack for end-to-end tests, every part a real process started from the BUILT
 * binary: `jit server` (built-in IdP) and `jit agent` in front of the suite's real PostgreSQL,
 * with a database, an admin role and a grant role of the test's own. Users log in with
 * `jit login`, their browser part played through the IdP's pages.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { startControlPlane, type ServerFixture } from './control-plane.js';
import { completeDeviceLogin } from './idp-browser.js';
import { makeHome, type SpawnedJit, spawnJit } from './jit-cli.js';
import { sql } from './postgres.js';

export interface PgInfo {
  host: string;
  port: number;
  superUrl: string;
}

export interface Stack {
  cp: ServerFixture;
  url: string;
  database: string;
  adminUrl: string;
  server: SpawnedJit;
  agent: SpawnedJit;
  agentConfigPath: string;
  startAgent(): Promise<SpawnedJit>;
  stop(): Promise<void>;
}

/** Database objects for one test file: `<prefix>` database, `<prefix>_admin`, `<prefix>_reader`, table `items`. */
export async function makeTargetDatabase(pg: PgInfo, prefix: string): Promise<{ database: string; adminUrl: string }> {
  const adminPassword = randomBytes(12).toString('hex');
  const su = pg.superUrl;
  await sql(su, `DROP DATABASE IF EXISTS ${prefix} WITH (FORCE)`);
  await sql(su, `CREATE DATABASE ${prefix}`);
  await sql(
    su,
    `DO $$ BEGIN
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${prefix}_admin') THEN
         CREATE ROLE ${prefix}_admin LOGIN CREATEROLE PASSWORD '${adminPassword}';
       ELSE ALTER ROLE ${prefix}_admin PASSWORD '${adminPassword}'; END IF;
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${prefix}_reader') THEN
         CREATE ROLE ${prefix}_reader NOLOGIN;
       END IF;
     END $$`,
  );
  await sql(su, `GRANT pg_signal_backend TO ${prefix}_admin`);
  await sql(su, `GRANT ${prefix}_reader TO ${prefix}_admin WITH ADMIN OPTION`);
  await sql(su, `GRANT CONNECT ON DATABASE ${prefix} TO ${prefix}_reader`);
  const dbUrl = su.replace(/\/postgres$/, `/${prefix}`);
  await sql(dbUrl, 'CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
  await sql(dbUrl, "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g");
  await sql(dbUrl, `GRANT SELECT ON items TO ${prefix}_reader`);
  await sql(dbUrl, 'CREATE TABLE secrets (v text)');
  return {
    database: prefix,
    adminUrl: `postgresql://${prefix}_admin:${adminPassword}@${pg.host}:${pg.port}/${prefix}`,
  };
}

export async function startStack(
  pg: PgInfo,
  prefix: string,
  opts: {
    sessions?: Record<string, unknown>;
    approvals?: Record<string, unknown>[];
    guardrails?: Record<string, unknown>[];
    masking?: Record<string, unknown>[];
  } = {},
): Promise<Stack> {
  const { database, adminUrl } = await makeTargetDatabase(pg, prefix);
  const target = `${prefix.replace(/_/g, '-')}-db`;
  const cp = await startControlPlane({
    writeOnly: true,
    policy: {
      targets: [{ name: target, type: 'postgres', agent: 'local', database, description: 'e2e target' }],
      access: [{ name: 'engineers', targets: [target], groups: ['engineers'], grantRoles: [`${prefix}_reader`] }],
      ...(opts.approvals ? { approvals: opts.approvals } : {}),
      ...(opts.guardrails ? { guardrails: opts.guardrails } : {}),
      ...(opts.masking ? { masking: opts.masking } : {}),
    },
    sessions: opts.sessions ?? { heartbeatTimeout: '4s', heartbeatInterval: '1s' },
  });
  const agentConfigPath = path.join(cp.dir, 'agent.yaml');
  writeFileSync(
    agentConfigPath,
    stringify({
      name: 'local',
      controlPlane: cp.url,
      targets: {
        [target]: { type: 'postgres', host: pg.host, port: pg.port, database, adminUrlEnv: 'E2E_ADMIN_URL', sslmode: 'disable' },
      },
      reaperInterval: '2s',
    }),
  );
  const server = spawnJit(['server', '--config', cp.serverConfigPath, '--log-level', 'warn'], { home: makeHome() });
  await server.waitForLine('stderr', /listening on/, 30_000);
  const stack: Stack = {
    cp,
    url: cp.url,
    database,
    adminUrl,
    server,
    agent: undefined as unknown as SpawnedJit,
    agentConfigPath,
    async startAgent() {
      const agent = spawnJit(['agent', '--config', agentConfigPath, '--log-level', 'warn'], {
        home: makeHome(),
        env: { JIT_AGENT_TOKEN: cp.agentToken, E2E_ADMIN_URL: adminUrl },
      });
      await agent.waitForLine('stderr', /agent local started/, 30_000);
      stack.agent = agent;
      return agent;
    },
    async stop() {
      for (const p of [stack.agent, server]) {
        p?.kill('SIGTERM');
        await p?.exited(10_000).catch(() => p.kill('SIGKILL'));
      }
      await cp.stop();
    },
  };
  await stack.startAgent();
  return stack;
}

/** `jit login` as a test user in a fresh HOME; returns that HOME. */
export async function cliLogin(serverUrl: string, username: string, password: string): Promise<string> {
  const home = makeHome();
  const login = spawnJit(['login', '--server', serverUrl], { home });
  const [, url] = await login.waitForLine('stderr', /^\s+(https?:\/\/\S+)\s*$/, 20_000);
  await completeDeviceLogin({ verificationUriComplete: url!, username, password });
  const { code } = await login.exited(30_000);
  if (code !== 0) throw new Error(`jit login as ${username} exited ${code}: ${login.stderr()}`);
  return home;
}

/** Poll until fn returns true or the time is up. */
export async function eventually(fn: () => Promise<boolean>, timeoutMs: number, stepMs = 250): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return fn();
}
