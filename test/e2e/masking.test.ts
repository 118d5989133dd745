/**
 * Masking by provenance end to end from the built binary (issue 12): `jit exec` runs psql through
 * the real control plane and agent against the suite's PostgreSQL, where the database has a view
 * over a masked column and a function that reads it. psql's own output is the ground truth.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { USERS } from '../helpers/control-plane.js';
import { cliLogin, type Stack, startStack } from '../helpers/e2e-stack.js';
import { runJit } from '../helpers/jit-cli.js';
import { sql } from '../helpers/postgres.js';

const pgInfo = inject('pg');
const TARGET = 'e2e-mask-db';
let stack: Stack;
let home: string;

beforeAll(async () => {
  stack = await startStack(pgInfo, 'e2e_mask', { masking: [{ name: 'pii', columns: ['people.email'], style: 'partial' }] });
  const db = pgInfo.superUrl.replace(/\/postgres$/, `/${stack.database}`);
  for (const q of [
    'CREATE TABLE people (id int PRIMARY KEY, email text)',
    "INSERT INTO people VALUES (1, 'alice@example.com')",
    'CREATE VIEW people_view AS SELECT id, email AS contact FROM people',
    'CREATE FUNCTION people_leak() RETURNS text LANGUAGE sql AS $$ SELECT email FROM people WHERE id = 1 $$',
    'GRANT SELECT ON people, people_view TO e2e_mask_reader',
  ])
    await sql(db, q);
  home = await cliLogin(stack.url, 'alice', USERS.find((u) => u.username === 'alice')!.password);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const psql = (q: string) => runJit(['exec', TARGET, '--', 'psql', '-X', '-At', '-c', q], { home, timeoutMs: 60_000 });

describe('masking follows where data comes from (built binary)', () => {
  it('masks a view column over a masked column', async () => {
    const r = await psql('select contact from people_view');
    expect(r.stdout.trim()).toBe('a***@example.com');
    expect(r.code).toBe(0);
  });

  it('refuses a function that reads the masked column, saying why', async () => {
    const r = await psql('select people_leak()');
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('alice@example.com');
    expect(r.stderr).toMatch(/people_leak\(\) may return masked data: it reads masked data \(rule pii\)/);
  });
});
