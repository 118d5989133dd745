/**
 * Masking follows where data comes from (issue 12, item 1), against a real PostgreSQL through the
 * inspecting engine: views, views over views, materialised views, child tables, serialising
 * functions, SQL-executing functions, planner statistics and the database's own functions
 * (SQL, PL/pgSQL, SECURITY DEFINER, dynamic SQL) — each tried as an attacker would. Every byte
 * returned is scanned for the raw masked values, and functions with a side effect show that a
 * refused statement never ran (their log table stays empty).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../helpers/postgres.js';
import { DEFAULT_RULES, type Harness, startInspectHarness } from './inspect-harness.js';
import { fcall, RawClient } from './raw-client.js';

/** Values the demo rules mask (customers.email partial, card_number full): none may ever come back. */
const RAW = [
  'alice@example.com',
  'bob@example.org',
  'ALICE@EXAMPLE.COM',
  '4111 1111 1111 1111',
  '5500 0000 0000 0004',
  'alice',
  'archived@example.com',
];

const SETUP = [
  `CREATE TABLE leak_log (fn text)`,
  `CREATE VIEW v_customers AS SELECT id, name, email, card_number FROM customers`,
  `CREATE VIEW v_contact AS SELECT id, upper(email) AS contact, name FROM customers`,
  `CREATE VIEW v_nested AS SELECT id, email AS e FROM v_customers`,
  `CREATE VIEW v_names AS SELECT id, name FROM customers`,
  `CREATE VIEW v_json AS SELECT id, row_to_json(c) AS doc FROM customers c`,
  `CREATE MATERIALIZED VIEW mv_customers AS SELECT id, email FROM customers`,
  `CREATE TABLE customers_archive () INHERITS (customers)`,
  `INSERT INTO customers_archive VALUES (9, 'Old', 'archived@example.com', '4111 1111 1111 1111', null)`,
  `CREATE FUNCTION leak_sql(i int) RETURNS text LANGUAGE sql AS $$ INSERT INTO leak_log VALUES ('leak_sql'); SELECT email FROM customers WHERE id = i $$`,
  `CREATE FUNCTION leak_pl() RETURNS SETOF text LANGUAGE plpgsql AS $$ BEGIN INSERT INTO leak_log VALUES ('leak_pl'); RETURN QUERY SELECT email FROM customers; END $$`,
  `CREATE FUNCTION leak_definer() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT card_number FROM customers WHERE id = 1 $$`,
  `CREATE FUNCTION leak_dynamic() RETURNS text LANGUAGE plpgsql AS $$ DECLARE r text; BEGIN INSERT INTO leak_log VALUES ('leak_dynamic'); EXECUTE 'select em' || 'ail from customers where id = 1' INTO r; RETURN r; END $$`,
  `CREATE FUNCTION leak_rows() RETURNS SETOF customers LANGUAGE sql AS $$ SELECT * FROM customers $$`,
  `CREATE FUNCTION leak_via() RETURNS text LANGUAGE sql AS $$ SELECT leak_sql(1) $$`,
  `CREATE FUNCTION leak_view() RETURNS text LANGUAGE sql AS $$ SELECT e FROM v_nested WHERE id = 1 $$`,
  `CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE sql AS $$ SELECT i + 1 $$`,
  `CREATE FUNCTION customer_name(i int) RETURNS text LANGUAGE sql AS $$ SELECT name FROM customers WHERE id = i $$`,
  `CREATE FUNCTION leak_op(a int, b int) RETURNS text LANGUAGE sql AS $$ SELECT email FROM customers WHERE id = a $$`,
  `CREATE OPERATOR <~~> (FUNCTION = leak_op, LEFTARG = int, RIGHTARG = int)`,
  `CREATE VIEW v_calls AS SELECT id, leak_definer() AS x FROM orders`,
  `ANALYZE customers`,
];

const run = promisify(execFile);
let h: Harness;

beforeAll(async () => {
  h = await startInspectHarness('mp', SETUP);
  await sql(h.superDbUrl, `GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC`);
});
afterAll(async () => {
  await h?.close();
});

async function client(rules?: unknown): Promise<pg.Client> {
  const s = h.newSession(rules);
  const c = new pg.Client({ connectionString: h.url(s) });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** No raw masked value anywhere in what came back. */
function noRaw(rows: unknown): void {
  const text = JSON.stringify(rows);
  for (const v of RAW) expect(text.includes(v), `raw value ${v} in ${text}`).toBe(false);
}

async function refused(c: pg.Client, q: string, message: RegExp): Promise<void> {
  const err = await c.query(q).then(
    (r) => {
      noRaw(r.rows);
      throw new Error(`not refused: ${q} → ${JSON.stringify(r.rows)}`);
    },
    (e: { code?: string; message: string }) => e,
  );
  expect(err.code, `${q}: ${err.message}`).toBe('42501');
  expect(err.message).toMatch(message);
}

async function leakLog(): Promise<string[]> {
  return (await sql(h.superDbUrl, 'select fn from leak_log')).map((r) => String(r['fn']));
}

describe('views carry the masking of the columns they show', () => {
  it('masks a view, a view over a view, a computed view column, a materialised view and a child table', async () => {
    const c = await client();
    try {
      const v = await c.query('select * from v_customers where id = 1');
      expect(v.rows).toEqual([{ id: 1, name: 'Alice', email: 'a***@example.com', card_number: '****' }]);
      const nested = await c.query('select e from v_nested where id = 1');
      expect(nested.rows).toEqual([{ e: 'a***@example.com' }]);
      const contact = await c.query('select contact, name from v_contact where id = 1');
      expect(contact.rows[0].name).toBe('Alice');
      noRaw(contact.rows);
      const mv = await c.query('select email from mv_customers where id = 2');
      expect(mv.rows).toEqual([{ email: 'b***@example.org' }]);
      const child = await c.query('select email, card_number from customers_archive');
      expect(child.rows).toEqual([{ email: 'a***@example.com', card_number: '****' }]);
      const prepared = await c.query('select email from v_customers where id = $1', [2]);
      expect(prepared.rows).toEqual([{ email: 'b***@example.org' }]);
      const json = await c.query('select doc from v_json where id = 1');
      noRaw(json.rows);
      // a view column computed by a function that reads masked data is masked (text: by the rule's style)
      const calls = await c.query('select x from v_calls limit 1');
      noRaw(calls.rows);
      // a view of unmasked columns stays in clear
      expect((await c.query('select name from v_names where id = 1')).rows).toEqual([{ name: 'Alice' }]);
    } finally {
      await c.end();
    }
  });

  it('refuses computing on a masked view column and using a view row whole', async () => {
    const c = await client();
    try {
      await refused(c, 'select lower(email) from v_customers', /masked column/);
      await refused(c, "select id from v_nested where e like 'a%'", /masked column/);
      await refused(c, 'select v from v_customers v', /masked column/);
      await refused(c, 'select md5(contact) from v_contact', /masked column/);
    } finally {
      await c.end();
    }
  });

  it('masks or refuses COPY of a view query, never passes it in clear (psql)', async () => {
    const s = h.newSession();
    const env = { ...process.env, PGCONNECT_TIMEOUT: '10' };
    const copy = (q: string) =>
      run('/usr/bin/psql', [h.url(s), '-Atc', q], { env }).then(
        (r) => r.stdout,
        (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`,
      );
    const masked = await copy('COPY (SELECT id, email FROM v_customers ORDER BY id) TO STDOUT');
    noRaw(masked);
    expect(masked.split('\n')[0]).toBe('1\ta***@example.com');
    const star = await copy('COPY (SELECT * FROM v_nested) TO STDOUT');
    noRaw(star);
    const csv = await copy('COPY (SELECT e FROM v_nested) TO STDOUT WITH (FORMAT csv)');
    noRaw(csv);
  });

  it('a view created after the session started is refused or masked, never in clear', async () => {
    const c = await client();
    try {
      await sql(h.superDbUrl, 'CREATE VIEW v_late AS SELECT id, email FROM customers');
      await sql(h.superDbUrl, 'GRANT SELECT ON v_late TO PUBLIC');
      const first = await c.query('select email from v_late where id = 1').then(
        (r) => r.rows,
        (e: { code: string }) => e.code,
      );
      if (typeof first !== 'string') noRaw(first);
      // the catalog is read again before the next statement: now it is masked like the table
      const second = await c.query('select email from v_late where id = 1');
      expect(second.rows).toEqual([{ email: 'a***@example.com' }]);
    } finally {
      await c.end();
    }
  });
});

describe('functions that serialise or run SQL', () => {
  it('refuses table, schema and database serialisers over masked data; allows them over clear data', async () => {
    const c = await client();
    try {
      await refused(c, "select table_to_xml('customers', true, false, '')", /masked column/);
      await refused(c, `select table_to_xml('public."customers"'::regclass, true, false, '')`, /masked column/);
      await refused(c, "select schema_to_xml('public', true, false, '')", /cannot trace/);
      await refused(c, "select database_to_xml(true, false, '')", /cannot trace/);
    } finally {
      await c.end();
    }
    // a bare column rule (card_number) may name a column of any table; with table-qualified rules only
    const qualified = await client({ ...DEFAULT_RULES, masking: [{ name: 'mask-email', columns: ['customers.email'] }] });
    try {
      const ok = await qualified.query("select table_to_xml('orders', true, false, '')::text as x");
      expect(ok.rows[0].x).toContain('<amount>');
    } finally {
      await qualified.end();
    }
  });

  it('judges constant SQL text given to query_to_xml / ts_stat as if sent; refuses SQL text built at run time', async () => {
    const c = await client();
    try {
      await refused(c, "select query_to_xml('select email from customers', true, false, '')", /masked column/);
      await refused(c, "select * from ts_stat('select to_tsvector(email) from customers')", /masked column/);
      await refused(c, "select query_to_xml('select em' || 'ail from customers', true, false, '')", /cannot judge/);
      await refused(c, "select query_to_xml(current_setting('application_name'), true, false, '')", /cannot judge/);
      await refused(c, "select query_to_xml('drop table orders', true, false, '')", /dropping/);
      const ok = await c.query("select query_to_xml('select name from customers where id = 1', true, false, '')::text as xml_out");
      expect(ok.rows[0].xml_out).toContain('Alice');
    } finally {
      await c.end();
    }
  });

  it('refuses planner statistics, which hold sample values of masked columns', async () => {
    const c = await client();
    try {
      await refused(c, "select most_common_vals::text from pg_stats where tablename = 'customers'", /sample values/);
      await refused(c, 'select * from pg_catalog.pg_stats', /sample values/);
      await refused(c, 'select * from pg_stats_ext', /sample values/);
    } finally {
      await c.end();
    }
  });
});

describe("the database's own functions", () => {
  it('refuses functions whose body reads masked data (SQL, PL/pgSQL, SECURITY DEFINER, through another function or a view) — and they never run', async () => {
    const c = await client();
    try {
      await refused(c, 'select leak_sql(1)', /leak_sql\(\) may return masked data/);
      await refused(c, 'select * from leak_pl()', /may return masked data/);
      await refused(c, 'select leak_definer()', /may return masked data/);
      await refused(c, 'select * from leak_rows()', /may return masked data/);
      await refused(c, 'select leak_via()', /calls leak_sql/);
      await refused(c, 'select leak_view()', /may return masked data/);
      await refused(c, 'select leak_dynamic()', /dynamic SQL/);
      await refused(c, 'select 1 <~~> 1', /operator <~~> runs public.leak_op/);
      await refused(c, 'select 1 OPERATOR(public.<~~>) 2', /operator public.<~~> runs/);
      const r = await c.query({ text: 'select leak_sql($1)', values: [1] }).catch((e: { code: string }) => e.code);
      expect(r).toBe('42501');
      expect(await leakLog()).toEqual([]);
    } finally {
      await c.end();
    }
  });

  it('refuses them through the FunctionCall protocol message too (they never run)', async () => {
    const oid = Number((await sql(h.superDbUrl, "select 'leak_sql'::regproc::oid::int as o"))[0]!['o']);
    const raw = await RawClient.connect(h);
    try {
      raw.send(fcall(oid, ['1']));
      const got = await raw.untilReady();
      const err = got.find((m) => m.type === 'E');
      expect(err?.body.toString()).toMatch(/leak_sql\(\) may return masked data/);
      noRaw(got.map((m) => m.body.toString('latin1')));
      expect(await leakLog()).toEqual([]);
    } finally {
      raw.end();
    }
  });

  it('lets functions that read no masked data run', async () => {
    const c = await client();
    try {
      expect((await c.query('select add_one(1) as n')).rows).toEqual([{ n: 2 }]);
      expect((await c.query('select customer_name(1) as n')).rows).toEqual([{ n: 'Alice' }]);
    } finally {
      await c.end();
    }
  });

  it('a function created after the session started is looked up before it is judged (and refused, it reads masked data)', async () => {
    const c = await client();
    try {
      await sql(h.superDbUrl, `CREATE FUNCTION leak_late() RETURNS text LANGUAGE sql AS $$ SELECT email FROM customers WHERE id = 1 $$`);
      await refused(c, 'select leak_late()', /leak_late\(\) may return masked data/);
      await refused(c, 'select no_such_function()', /does not know function no_such_function/);
    } finally {
      await c.end();
    }
  });

  it('refuses creating a function or a view over masked columns in the session itself', async () => {
    const c = await client();
    try {
      await refused(c, 'create function mine() returns text language sql as $$ select email from customers $$', /masked column/);
      await refused(c, 'create view mine as select email from customers', /masked column/);
    } finally {
      await c.end();
    }
  });
});
