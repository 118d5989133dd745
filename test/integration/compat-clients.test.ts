/**
 * Real clients through the inspecting engine: pgbench in simple, extended and prepared mode,
 * postgres.js (pipelining, prepared statements, binary-free defaults), and the throughput of
 * pgbench -S against the blind relay of the same engine.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../helpers/postgres.js';
import { DEFAULT_RULES, type Harness, startInspectHarness } from './inspect-harness.js';

const run = promisify(execFile);
let h: Harness;

beforeAll(async () => {
  h = await startInspectHarness('cc');
  const url = new URL(h.superDbUrl);
  await run('/usr/bin/pgbench', ['-i', '-q', '-s', '1', h.superDbUrl], {
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
  });
  await sql(h.superDbUrl, 'grant all on all tables in schema public to public');
});
afterAll(async () => {
  await h?.close();
});

async function pgbench(url: string, args: string[]): Promise<{ tps: number; failed: number; out: string }> {
  const { stdout } = await run('/usr/bin/pgbench', [...args, '-n', url], {
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    timeout: 60_000,
  });
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? 'NaN');
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? '0');
  return { tps, failed, out: stdout };
}

describe('pgbench', () => {
  for (const mode of ['simple', 'extended', 'prepared']) {
    it(`runs the TPC-B-like script with -M ${mode} without errors`, async () => {
      const s = h.newSession();
      const r = await pgbench(h.url(s), ['-M', mode, '-c', '2', '-T', '2']);
      expect(r.failed).toBe(0);
      expect(r.tps).toBeGreaterThan(10);
      const executed = h.events.filter((e) => e.session === s.session.id && e.event === 'statement.executed');
      expect(executed.length).toBeGreaterThan(50);
      if (mode !== 'simple')
        expect(executed.find((e) => String(e.data?.['sql']).startsWith('UPDATE pgbench_accounts'))?.data?.['params']).toHaveLength(2);
    });
  }

  it('pgbench -S through the inspecting engine vs the blind relay (throughput ratio, logged)', async () => {
    const blind = h.newSession(null);
    const blindUrl = h.url(blind);
    const inspected = h.newSession(DEFAULT_RULES);
    const inspectedUrl = h.url(inspected);
    const runs: Record<string, number[]> = { blind: [], inspected: [] };
    // Interleaved rounds: the machine's load moves during a run.
    for (let i = 0; i < 2; i++) {
      for (const [name, url] of [
        ['blind', blindUrl],
        ['inspected', inspectedUrl],
      ] as const) {
        const r = await pgbench(url, ['-S', '-M', 'prepared', '-c', '4', '-j', '2', '-T', '3']);
        expect(r.failed).toBe(0);
        runs[name]!.push(r.tps);
      }
    }
    const best = (xs: number[]) => Math.max(...xs);
    const ratio = best(runs['inspected']!) / best(runs['blind']!);
    console.log(
      `pgbench -S -M prepared -c4: blind ${runs['blind']!.map(Math.round)} tps, inspected ${runs['inspected']!.map(Math.round)} tps, ratio ${ratio.toFixed(2)}`,
    );
    expect(ratio).toBeGreaterThan(0.5);
  });
});

describe('postgres.js', () => {
  it('queries, prepared statements, pipelined queries (one blocked), masking, and a transaction', async () => {
    const s = h.newSession();
    const db = postgres(h.url(s), { max: 1, onnotice: () => {} });
    try {
      const [one] = await db`select ${1}::int + 1 as two`;
      expect(one).toEqual({ two: 2 });
      const rows = await db`select id, email, card_number from customers where id <= ${2} order by id`;
      expect(rows.map((r) => ({ ...r }))).toEqual([
        { id: 1, email: 'a***@example.com', card_number: '****' },
        { id: 2, email: 'b***@example.org', card_number: '****' },
      ]);
      // Several queries in flight on one connection: postgres.js pipelines them.
      const results = await Promise.allSettled([db`select 1 as a`, db`select pg_terminate_backend(${12345})`, db`select 3 as c`]);
      expect(results[0]).toMatchObject({ status: 'fulfilled' });
      expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: '42501' } });
      expect(results[2]).toMatchObject({ status: 'fulfilled' });
      await db
        .begin(async (tx) => {
          await tx`insert into orders (customer, amount) values (${77}, ${1})`;
          await expect(tx`drop table orders`).rejects.toMatchObject({ code: '42501' });
        })
        .catch(() => {});
      const [count] = await db`select count(*)::int as n from orders where customer = 77`;
      expect(count?.['n']).toBe(0);
      const unsafe = await db.unsafe('select name from customers where id = $1', [3], { prepare: true });
      expect(unsafe[0]).toEqual({ name: 'Carol' });
    } finally {
      await db.end();
    }
    const executed = h.events.filter((e) => e.session === s.session.id && e.event === 'statement.executed');
    expect(executed.find((e) => e.data?.['sql'] === 'select name from customers where id = $1')?.data?.['params']).toEqual(['3']);
  });
});
