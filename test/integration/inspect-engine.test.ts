/**
 * The inspecting PostgreSQL engine against a real PostgreSQL: guardrails block statements with
 * the rule in the error and the session stays usable with exact transaction semantics, results
 * are masked, every statement is recorded before it runs, and nothing runs when recording is down.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../helpers/postgres.js';
import { type Harness, startInspectHarness } from './inspect-harness.js';

const run = promisify(execFile);
let h: Harness;

beforeAll(async () => {
  h = await startInspectHarness('ie');
});
afterAll(async () => {
  await h?.close();
});

async function connect(extra: Partial<pg.ClientConfig> = {}): Promise<{ c: pg.Client; sid: string }> {
  const s = h.newSession();
  const c = new pg.Client({ connectionString: h.url(s), ...extra });
  c.on('error', () => {});
  await c.connect();
  return { c, sid: s.session.id };
}

const tableExists = async (t: string) => (await sql(h.superDbUrl, 'select 1 from pg_class where relname = $1', [t])).length > 0;

describe('guardrails', () => {
  it('blocks DROP and TRUNCATE by kind with the rule in the error; the session stays usable', async () => {
    const { c, sid } = await connect();
    try {
      await expect(c.query('drop table orders')).rejects.toMatchObject({
        code: '42501',
        message: 'jit: dropping or truncating tables is not allowed here',
        detail: 'rule: no-drop',
      });
      await expect(c.query('truncate orders')).rejects.toMatchObject({ code: '42501', detail: 'rule: no-drop' });
      expect(await tableExists('orders')).toBe(true);
      expect((await c.query('select count(*)::int as n from orders')).rows[0].n).toBe(3);
    } finally {
      await c.end();
    }
    const blocked = h.events.filter((e) => e.event === 'statement.blocked' && e.session === sid);
    expect(blocked.map((e) => e.data)).toMatchObject([
      { sql: 'drop table orders', rule: 'no-drop', kind: 'drop' },
      { sql: 'truncate orders', rule: 'no-drop', kind: 'truncate' },
    ]);
  });

  it('blocks pg_terminate_backend, also hidden in a multi-statement query (blocked whole)', async () => {
    const { c } = await connect();
    try {
      const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p;
      await expect(c.query(`select pg_terminate_backend(${pid})`)).rejects.toMatchObject({ code: '42501', detail: 'rule: no-kill' });
      await expect(
        c.query(`insert into orders (customer, amount) values (3, 1); select pg_terminate_backend(${pid})`),
      ).rejects.toMatchObject({
        code: '42501',
      });
      // The harmless first statement did not run either.
      expect((await c.query('select count(*)::int as n from orders where customer = 3')).rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
  });

  it('blocks DELETE without WHERE and allows it with one', async () => {
    const { c } = await connect();
    try {
      await expect(c.query('delete from orders')).rejects.toMatchObject({ code: '42501', detail: 'rule: no-unbounded-delete' });
      await c.query('begin');
      const r = await c.query('delete from orders where id = 1');
      expect(r.rowCount).toBe(1);
      await c.query('rollback');
    } finally {
      await c.end();
    }
  });

  it('inside a transaction a blocked statement aborts it exactly like a server error (25P02 until ROLLBACK)', async () => {
    const { c } = await connect();
    try {
      await c.query('begin');
      await c.query(`insert into orders (customer, amount) values (9, 1)`);
      await expect(c.query('drop table orders')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('select 1')).rejects.toMatchObject({ code: '25P02' });
      await c.query('rollback');
      expect((await c.query('select count(*)::int as n from orders where customer = 9')).rows[0].n).toBe(0);
      // And outside a transaction, right after a block.
      await expect(c.query('drop table customers')).rejects.toMatchObject({ code: '42501' });
      expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('blocks a parameterized (extended protocol) statement; the connection keeps working', async () => {
    const { c } = await connect();
    try {
      await expect(c.query('select pg_terminate_backend($1::int)', [1])).rejects.toMatchObject({ code: '42501', detail: 'rule: no-kill' });
      expect((await c.query('select $1::int + 1 as x', [41])).rows[0].x).toBe(42);
      await expect(c.query({ name: 'del-all', text: 'delete from orders' })).rejects.toMatchObject({ code: '42501' });
      expect(
        (await c.query({ name: 'cnt', text: 'select count(*)::int as n from orders where customer = $1', values: [1] })).rows[0].n,
      ).toBe(2);
      expect(
        (await c.query({ name: 'cnt', text: 'select count(*)::int as n from orders where customer = $1', values: [2] })).rows[0].n,
      ).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('refuses a statement that needs approval when the agent has no approval workflow, and records why', async () => {
    const { c, sid } = await connect();
    try {
      await expect(c.query('alter table orders add column x int')).rejects.toMatchObject({
        code: '42501',
        message: 'jit: this statement needs approval (rule approve-alter) and no approval workflow is available on this agent',
      });
      expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    } finally {
      await c.end();
    }
    expect(h.events.find((e) => e.event === 'statement.blocked' && e.session === sid)?.data).toMatchObject({
      rule: 'approve-alter',
      reason: expect.stringContaining('no approval workflow is available'),
    });
  });

  it('refuses every statement with 57P03 while the control channel is down, and recovers', async () => {
    const { c, sid } = await connect();
    try {
      h.recorder.ready = false;
      await expect(c.query('insert into orders (customer, amount) values (7, 7)')).rejects.toMatchObject({
        code: '57P03',
        message: 'jit cannot record statements right now',
      });
      await expect(c.query('select $1::int as x', [1])).rejects.toMatchObject({ code: '57P03' });
      h.recorder.ready = true;
      expect((await c.query('select count(*)::int as n from orders where customer = 7')).rows[0].n).toBe(0);
    } finally {
      h.recorder.ready = true;
      await c.end();
    }
    expect(
      h.events.some((e) => e.session === sid && e.event === 'statement.executed' && String(e.data?.['sql']).includes('values (7, 7)')),
    ).toBe(false);
  });
});

describe('audit', () => {
  it('records statement.executed before and statement.completed after, with Bind parameters for prepared statements', async () => {
    const { c, sid } = await connect();
    try {
      await c.query('select id from customers where id < 3');
      await c.query({ name: 'by-id', text: 'select name from customers where id = $1 and name <> $2', values: [2, 'x'] });
      await expect(c.query('select 1/0')).rejects.toMatchObject({ code: '22012' });
    } finally {
      await c.end();
    }
    const mine = h.events.filter((e) => e.session === sid && e.event.startsWith('statement.'));
    const executed = mine.filter((e) => e.event === 'statement.executed').map((e) => e.data!);
    expect(executed).toMatchObject([
      { sql: 'select id from customers where id < 3', protocol: 'simple', kind: 'select' },
      { sql: 'select name from customers where id = $1 and name <> $2', protocol: 'extended', statementName: 'by-id', params: ['2', 'x'] },
      { sql: 'select 1/0', protocol: 'simple' },
    ]);
    const completed = mine.filter((e) => e.event === 'statement.completed').map((e) => e.data!);
    expect(completed).toMatchObject([
      { ref: executed[0]!['seq'], rows: 2, command: 'SELECT', durationMs: expect.any(Number) },
      { ref: executed[1]!['seq'], rows: 1, command: 'SELECT' },
      { ref: executed[2]!['seq'], sqlstate: '22012' },
    ]);
    // Each executed event comes before its completion.
    const idx = (seq: unknown, ev: string) => mine.findIndex((e) => e.event === ev && (e.data?.['seq'] ?? e.data?.['ref']) === seq);
    for (const x of executed) expect(idx(x['seq'], 'statement.executed')).toBeLessThan(idx(x['seq'], 'statement.completed'));
  });
});

describe('masking', () => {
  it('masks email (partial) and card_number (full) in text results, aliases and SELECT *', async () => {
    const { c, sid } = await connect();
    try {
      const r = await c.query('select id, name, email, card_number from customers order by id');
      expect(r.rows).toEqual([
        { id: 1, name: 'Alice', email: 'a***@example.com', card_number: '****' },
        { id: 2, name: 'Bob', email: 'b***@example.org', card_number: '****' },
        { id: 3, name: 'Carol', email: null, card_number: null },
      ]);
      const aliased = await c.query('select email as e, card_number as "c" from customers where id = $1', [1]);
      expect(aliased.rows).toEqual([{ e: 'a***@example.com', c: '****' }]);
      const star = await c.query('select * from customers where id = 2');
      expect(star.rows[0]).toMatchObject({ email: 'b***@example.org', card_number: '****', notes: null });
    } finally {
      await c.end();
    }
    const masked = h.events.filter((e) => e.session === sid && e.event === 'result.masked');
    expect(masked).toHaveLength(3);
    expect(masked[0]!.data).toMatchObject({ columns: ['email', 'card_number'], rule: 'mask-email,mask-card' });
  });

  it('refuses computing on a masked column (maskedComputation: refuse)', async () => {
    const { c } = await connect();
    try {
      await expect(c.query('select upper(email) from customers')).rejects.toMatchObject({ code: '42501' });
      expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('masks COPY customers TO STDOUT (psql) and lets COPY FROM STDIN through', async () => {
    const s = h.newSession();
    const env = { ...process.env, PGCONNECT_TIMEOUT: '10' };
    const { stdout } = await run('/usr/bin/psql', [h.url(s), '-Atc', 'COPY customers TO STDOUT'], { env });
    expect(stdout.trim().split('\n')).toEqual([
      '1\tAlice\ta***@example.com\t****\tvip',
      '2\tBob\tb***@example.org\t****\t\\N',
      '3\tCarol\t\\N\t\\N\tmail me at carol@example.net',
    ]);
    const csv = await run('/usr/bin/psql', [h.url(s), '-Atc', 'COPY customers (email, name) TO STDOUT WITH (FORMAT csv)'], { env });
    expect(csv.stdout.trim().split('\n')[0]).toBe('a***@example.com,Alice');
    const child = execFile('/usr/bin/psql', [h.url(s), '-Atc', '\\copy orders (customer, amount) from stdin'], { env });
    child.stdin!.end('42\t1.5\n42\t2.5\n');
    await new Promise((resolve, reject) =>
      child.on('exit', (code) => (code === 0 ? resolve(null) : reject(new Error(`psql exited ${code}`)))),
    );
    const rows = await sql(h.superDbUrl, 'select count(*)::int as n from orders where customer = 42');
    expect(rows[0]!['n']).toBe(2);
  });

  it('psql meta-commands \\d and \\dt work through the inspecting engine', async () => {
    const s = h.newSession();
    const env = { ...process.env, PGCONNECT_TIMEOUT: '10' };
    const d = await run('/usr/bin/psql', [h.url(s), '-c', '\\d customers'], { env });
    expect(d.stdout).toContain('card_number');
    const dt = await run('/usr/bin/psql', [h.url(s), '-Atc', '\\dt'], { env });
    expect(dt.stdout).toContain('customers');
    expect(dt.stdout).toContain('orders');
  });
});

describe('cancel', () => {
  it('cancels a running query through our own backend key', async () => {
    const { c } = await connect();
    try {
      const started = Date.now();
      const q = c.query('select pg_sleep(30)');
      await new Promise((r) => setTimeout(r, 300));
      const canceller = new pg.Client({ connectionString: h.url({ user: c.user!, secret: c.password as string }) });
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
});
