/**
 * Provisioning of the demo PostgreSQL, run as superuser at every start and safe to repeat:
 * the `demo` database with its seeded shop schema, the group roles policy grants
 * (`demo_reader`, `demo_writer`, `demo_admin`) and the agent's admin role `jit_admin`.
 */
import pg from 'pg';
import { makeScramVerifier, scramVerifierString } from '#protocol/postgres/scram.js';
import { quoteIdent, quoteLiteral } from '#protocol/postgres/sql-quote.js';
import { DEMO_DATABASE } from './config.js';
import { generateDemoData, ORDER_STATUSES } from './seed-data.js';

export const ADMIN_ROLE = 'jit_admin';
export const GROUP_ROLES = { reader: 'demo_reader', writer: 'demo_writer', admin: 'demo_admin' } as const;
export const DEMO_TABLES = ['customers', 'orders', 'products'] as const;

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

async function roleExists(c: pg.Client, name: string): Promise<boolean> {
  return (await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).rowCount === 1;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS customers (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text        NOT NULL,
  email       text        NOT NULL,
  phone       text        NOT NULL,
  card_number text        NOT NULL,
  created_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
  id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku   text          NOT NULL UNIQUE,
  name  text          NOT NULL,
  price numeric(10,2) NOT NULL CHECK (price >= 0)
);
CREATE TABLE IF NOT EXISTS orders (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id integer       NOT NULL REFERENCES customers (id),
  amount      numeric(10,2) NOT NULL CHECK (amount >= 0),
  status      text          NOT NULL CHECK (status IN (${ORDER_STATUSES.map((s) => quoteLiteral(s)).join(', ')})),
  created_at  timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);
`;

async function isEmpty(c: pg.Client, table: string): Promise<boolean> {
  return (await c.query(`SELECT NOT EXISTS (SELECT 1 FROM ${quoteIdent(table)}) AS empty`)).rows[0].empty === true;
}

/** Create the schema and, if the tables are empty, insert the deterministic demo rows. */
async function seed(c: pg.Client): Promise<void> {
  // One transaction: an interrupted first start leaves nothing half-seeded.
  await c.query('BEGIN');
  try {
    await c.query(SCHEMA);
    const data = generateDemoData();
    // WITH ORDINALITY + ORDER BY: identity values follow the generated order, so ids are stable.
    if (await isEmpty(c, 'customers')) {
      const cs = data.customers;
      await c.query(
        `INSERT INTO customers (name, email, phone, card_number, created_at)
         SELECT n, e, p, cn, t FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
           WITH ORDINALITY AS u(n, e, p, cn, t, i) ORDER BY i`,
        [cs.map((x) => x.name), cs.map((x) => x.email), cs.map((x) => x.phone), cs.map((x) => x.cardNumber), cs.map((x) => x.createdAt)],
      );
    }
    if (await isEmpty(c, 'products')) {
      const ps = data.products;
      await c.query(
        `INSERT INTO products (sku, name, price)
         SELECT s, n, p FROM unnest($1::text[], $2::text[], $3::numeric[]) WITH ORDINALITY AS u(s, n, p, i) ORDER BY i`,
        [ps.map((x) => x.sku), ps.map((x) => x.name), ps.map((x) => x.price)],
      );
    }
    if (await isEmpty(c, 'orders')) {
      const os = data.orders;
      await c.query(
        `INSERT INTO orders (customer_id, amount, status, created_at)
         SELECT ci, a, s, t FROM unnest($1::int[], $2::numeric[], $3::text[], $4::timestamptz[])
           WITH ORDINALITY AS u(ci, a, s, t, i) ORDER BY i`,
        [os.map((x) => x.customerId), os.map((x) => x.amount), os.map((x) => x.status), os.map((x) => x.createdAt)],
      );
    }
    const tables = DEMO_TABLES.map(quoteIdent).join(', ');
    await c.query(`GRANT SELECT ON ${tables} TO ${quoteIdent(GROUP_ROLES.reader)}`);
    await c.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${tables} TO ${quoteIdent(GROUP_ROLES.writer)}`);
    // demo-db-admin (needs approval): every table privilege, TRUNCATE included.
    await c.query(`GRANT ALL PRIVILEGES ON ${tables} TO ${quoteIdent(GROUP_ROLES.admin)}`);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

export interface ProvisionResult {
  /** Connection URL of jit_admin on the demo database, for the agent's config only. */
  adminUrl: string;
}

/**
 * Make the demo database, roles and rows exist. `adminPassword` becomes jit_admin's password
 * (new at every start, so it is never stored); it is sent as a SCRAM verifier, so the
 * plaintext never reaches PostgreSQL's logs.
 */
export async function provisionDemoDb(opts: {
  superUrl: (database?: string) => string;
  port: number;
  adminPassword: string;
}): Promise<ProvisionResult> {
  await withClient(opts.superUrl('postgres'), async (c) => {
    const exists = (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [DEMO_DATABASE])).rowCount === 1;
    if (!exists) await c.query(`CREATE DATABASE ${quoteIdent(DEMO_DATABASE)}`);
    for (const role of [GROUP_ROLES.reader, GROUP_ROLES.writer, GROUP_ROLES.admin]) {
      if (!(await roleExists(c, role))) await c.query(`CREATE ROLE ${quoteIdent(role)} NOLOGIN`);
    }
    const verifier = scramVerifierString(makeScramVerifier(opts.adminPassword));
    const admin = quoteIdent(ADMIN_ROLE);
    if (!(await roleExists(c, ADMIN_ROLE))) await c.query(`CREATE ROLE ${admin} LOGIN CREATEROLE`);
    await c.query(`ALTER ROLE ${admin} WITH LOGIN CREATEROLE NOSUPERUSER PASSWORD ${quoteLiteral(verifier)}`);
    await c.query(`GRANT pg_signal_backend TO ${admin}`);
    // PostgreSQL 16+: a CREATEROLE role may grant membership only in roles it holds WITH ADMIN OPTION.
    await c.query(
      `GRANT ${quoteIdent(GROUP_ROLES.reader)}, ${quoteIdent(GROUP_ROLES.writer)}, ${quoteIdent(GROUP_ROLES.admin)} TO ${admin} WITH ADMIN OPTION`,
    );
  });
  await withClient(opts.superUrl(DEMO_DATABASE), seed);
  return {
    adminUrl: `postgresql://${ADMIN_ROLE}:${encodeURIComponent(opts.adminPassword)}@127.0.0.1:${opts.port}/${DEMO_DATABASE}?sslmode=disable`,
  };
}
