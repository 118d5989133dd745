/**
 * Statement approvals end to end from the built binary: alice's `jit connect` session runs a
 * DELETE that a require-approval guardrail holds in the agent; the client simply waits while
 * `jit connect` says what waits; bob decides with `jit approve` / `jit deny` from his own HOME,
 * and the held statement runs (or fails with his reason). An approval of one statement never
 * runs another; an undecided one expires; a session-kind approval lets the same shape through.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { USERS } from '../helpers/control-plane.js';
import { cliLogin, eventually, type Stack, startStack } from '../helpers/e2e-stack.js';
import { runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { sql } from '../helpers/postgres.js';

const TARGET = 'e2e-stap-db';
const pgInfo = inject('pg');
let stack: Stack;
let aliceHome: string;
let bobHome: string;
let connect: SpawnedJit;
let url: string;
let sessionId: string;

const dbUrl = () => pgInfo.superUrl.replace(/\/postgres$/, `/${stack.database}`);
const password = (u: string) => USERS.find((x) => x.username === u)!.password;

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** Bob's pending statement requests of alice's session, via `jit requests --to-review --json`. */
async function pendingForBob(): Promise<any[]> {
  const r = await runJit(['requests', '--to-review', '--json'], { home: bobHome });
  expect(r.code, r.stderr).toBe(0);
  const parsed = JSON.parse(r.stdout);
  const list = (Array.isArray(parsed) ? parsed : parsed.requests) as any[];
  return list.filter((x) => x.kind === 'statement' && x.session === sessionId && x.state === 'pending');
}

/** The one pending request holding `sqlText` (waits for the agent to file it). */
async function heldRequest(sqlText: string): Promise<string> {
  let id: string | undefined;
  const ok = await eventually(async () => {
    id = (await pendingForBob()).find((x) => x.statement?.sql === sqlText)?.id;
    return id !== undefined;
  }, 20_000);
  expect(ok, `no pending request for ${sqlText}`).toBe(true);
  return id!;
}

async function audit(type: string): Promise<any[]> {
  const r = await runJit(['audit', '--type', type, '--session', sessionId, '--json'], { home: bobHome });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Settles to the query's result or error, so a pending query can be asserted on later. */
function settle<T>(p: Promise<T>): Promise<{ ok: T } | { err: any }> {
  return p.then(
    (ok) => ({ ok }),
    (err) => ({ err }),
  );
}

/** True when `p` is still pending after `ms`. */
async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol('pending');
  return (await Promise.race([p, new Promise((r) => setTimeout(() => r(marker), ms))])) === marker;
}

beforeAll(async () => {
  stack = await startStack(pgInfo, 'e2e_stap', {
    guardrails: [
      { name: 'deletes-need-bob', match: { kinds: ['delete'] }, action: 'require-approval', approvers: { users: ['bob'], timeout: '10m' } },
      // Quick expiry for the "nobody decides" case.
      {
        name: 'renames-need-bob-fast',
        match: { kinds: ['update'] },
        action: 'require-approval',
        approvers: { users: ['bob'], timeout: '2s' },
      },
    ],
  });
  await sql(dbUrl(), 'GRANT DELETE, UPDATE ON items TO e2e_stap_reader');
  [aliceHome, bobHome] = await Promise.all([cliLogin(stack.url, 'alice', password('alice')), cliLogin(stack.url, 'bob', password('bob'))]);
  connect = spawnJit(['connect', TARGET, '--reason', 'INC-9: clean up items', '--json'], { home: aliceHome });
  await connect.waitForLine('stdout', /^\}$/, 30_000);
  const ready = JSON.parse(connect.stdout()) as { session: { id: string }; url: string };
  url = ready.url;
  sessionId = ready.session.id;
}, 120_000);

afterAll(async () => {
  if (connect && connect.child.exitCode === null) {
    connect.kill('SIGINT');
    await connect.exited(20_000).catch(() => connect.kill('SIGKILL'));
  }
  await stack?.stop();
});

describe('a statement that needs approval', () => {
  it('waits (psql-style client, other connections unaffected) until bob approves with jit approve, then runs', async () => {
    const c = await client();
    const other = await client();
    try {
      const stmt = 'DELETE FROM items WHERE id > 95';
      const del = settle(c.query(stmt));
      const id = await heldRequest(stmt);
      // jit connect says what waits, with the request id.
      await connect.waitForLine(
        'stderr',
        new RegExp(`^waiting for approval of: DELETE FROM items WHERE id > 95 \\(request ${id}; approvers: bob\\)$`),
        15_000,
      );
      // The approver sees the statement exactly as it will run.
      const show = await runJit(['requests', id], { home: bobHome });
      expect(show.stdout).toContain('statement (held in the session until decided)');
      expect(show.stdout).toMatch(/^ {2}DELETE FROM items WHERE id > 95$/m);
      // Held: nothing ran, the client still waits, and another connection of the session works.
      expect(await stillPending(del, 500)).toBe(true);
      expect((await other.query('select count(*)::int as n from items')).rows[0].n).toBe(100);

      const ok = await runJit(['approve', id, '--comment', 'fine'], { home: bobHome });
      expect(ok.code, ok.stderr).toBe(0);
      const res = await del;
      expect('ok' in res && res.ok.rowCount).toBe(5);
      expect((await c.query('select count(*)::int as n from items')).rows[0].n).toBe(95);
      await connect.waitForLine('stderr', new RegExp(`^request ${id} approved by bob; the statement runs$`), 15_000);

      // Audit: the executed statement names the approval it ran under.
      const executed = await audit('statement.executed');
      expect(executed.find((e) => e.data.sql === stmt)?.data).toMatchObject({
        approval: id,
        approvalScope: 'statement',
        rule: 'deletes-need-bob',
      });
    } finally {
      await c.end();
      await other.end();
    }
  });

  it('denied: the client gets bob and his reason with the rule; inside a transaction it is aborted; the session works on', async () => {
    const c = await client();
    try {
      await c.query('BEGIN');
      await c.query('SELECT 1');
      const stmt = 'DELETE FROM items WHERE id = 1';
      const del = settle(c.query(stmt));
      const id = await heldRequest(stmt);
      // (jit connect reports a decision only for a request it has seen waiting.)
      await connect.waitForLine('stderr', new RegExp(`^waiting for approval of: ${stmt} \\(request ${id};`), 15_000);
      const no = await runJit(['deny', id, '--reason', 'not during the freeze'], { home: bobHome });
      expect(no.code, no.stderr).toBe(0);
      const res = await del;
      expect('err' in res && res.err).toMatchObject({
        code: '42501',
        message: 'jit: this statement needs approval (rule deletes-need-bob) and bob denied it: not during the freeze',
        detail: `rule: deletes-need-bob; request: ${id}`,
      });
      // Exactly like any error in a transaction: aborted until ROLLBACK.
      await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
      await c.query('ROLLBACK');
      expect((await c.query('select count(*)::int as n from items where id = 1')).rows[0].n).toBe(1);
      await connect.waitForLine('stderr', new RegExp(`^request ${id} denied by bob: not during the freeze$`), 15_000);
      const blocked = await audit('statement.blocked');
      expect(blocked.find((e) => e.data.approval === id)?.data).toMatchObject({
        rule: 'deletes-need-bob',
        reason: expect.stringContaining('bob denied it'),
      });
    } finally {
      await c.end();
    }
  });

  it('an approval of statement X never runs statement Y: Y waits for its own request', async () => {
    const c = await client();
    try {
      const x = 'DELETE FROM items WHERE id = 2';
      const first = settle(c.query(x));
      const idX = await heldRequest(x);
      expect((await runJit(['approve', idX], { home: bobHome })).code).toBe(0);
      const rx = await first;
      expect('ok' in rx && rx.ok.rowCount).toBe(1);

      // Same session, same rule, different statement: held again under a new request.
      const y = 'DELETE FROM items WHERE id = 3';
      const second = settle(c.query(y));
      const idY = await heldRequest(y);
      expect(idY).not.toBe(idX);
      expect(await stillPending(second, 300)).toBe(true);
      // Approving X again is refused (decisions are final), and Y still waits.
      const again = await runJit(['approve', idX], { home: bobHome });
      expect(again.code).not.toBe(0);
      expect(await stillPending(second, 300)).toBe(true);
      expect((await runJit(['deny', idY, '--reason', 'one is enough'], { home: bobHome })).code).toBe(0);
      expect(await second).toMatchObject({ err: { code: '42501' } });
      expect((await c.query('select count(*)::int as n from items where id = 3')).rows[0].n).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('nobody decides in time: the statement fails with the reason and the session works on', async () => {
    const c = await client();
    try {
      const started = Date.now();
      await expect(c.query("UPDATE items SET name = 'renamed' WHERE id = 4")).rejects.toMatchObject({
        code: '42501',
        message: 'jit: this statement needs approval (rule renames-need-bob-fast) and nobody decided in time',
      });
      expect(Date.now() - started).toBeLessThan(15_000);
      expect((await c.query('select name from items where id = 4')).rows[0].name).toBe('item 4');
    } finally {
      await c.end();
    }
  });

  it('a session-kind approval lets later statements of the same shape through, not other shapes', async () => {
    const c = await client();
    try {
      const first = 'DELETE FROM items WHERE id = 10';
      const p = settle(c.query(first));
      const id = await heldRequest(first);
      const ok = await runJit(['approve', id, '--scope', 'session-kind', '--for', '10m'], { home: bobHome });
      expect(ok.code, ok.stderr).toBe(0);
      expect(await p).toMatchObject({ ok: { rowCount: 1 } });
      // Same fingerprint (literals differ): runs at once, without a request, recorded under bob's approval.
      const r = await c.query('DELETE FROM items WHERE id = 11');
      expect(r.rowCount).toBe(1);
      const executed = await audit('statement.executed');
      expect(executed.find((e) => e.data.sql === 'DELETE FROM items WHERE id = 11')?.data).toMatchObject({
        approval: id,
        approvalScope: 'session-kind',
      });
      expect((await pendingForBob()).length).toBe(0);
      // Another shape needs its own approval.
      const other = settle(c.query("DELETE FROM items WHERE name = 'item 12'"));
      const idOther = await heldRequest("DELETE FROM items WHERE name = 'item 12'");
      expect(idOther).not.toBe(id);
      expect((await runJit(['deny', idOther, '--reason', 'no'], { home: bobHome })).code).toBe(0);
      expect(await other).toMatchObject({ err: { code: '42501' } });
    } finally {
      await c.end();
    }
  });

  it('the client leaving while its statement waits cancels the request', async () => {
    const c = await client();
    // (A shape the session-kind approval above does not cover.)
    const stmt = "DELETE FROM items WHERE id = 20 AND name <> ''";
    void c.query(stmt).catch(() => {});
    const id = await heldRequest(stmt);
    await c.end().catch(() => {});
    const cancelled = await eventually(async () => {
      const r = await runJit(['requests', id, '--json'], { home: bobHome });
      const parsed = JSON.parse(r.stdout);
      return (parsed.request ?? parsed).state === 'cancelled';
    }, 15_000);
    expect(cancelled).toBe(true);
    expect((await sql(dbUrl(), 'select count(*)::int as n from items where id = 20'))[0]?.n).toBe(1);
  });
});
