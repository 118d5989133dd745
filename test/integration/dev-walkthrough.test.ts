/**
 * The README's walkthrough, step by step, with the built binary: `jit dev`, then in "another
 * terminal" `jit login` as alice (device code; the browser is scripted), `jit connect demo-db`,
 * psql with the printed URL, a bulk DELETE that waits for bob (`jit --profile bob deny` / `approve`),
 * demo-db-admin behind an access request, Ctrl-C, and `jit audit` as bob, the administrator. If this
 * test fails, the README is lying to newcomers.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { completeDeviceLogin } from '../helpers/idp-browser.js';
import { makeHome, runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { freePort } from '../helpers/postgres.js';

function psql(url: string, sql: string, timeout = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('psql', [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], { timeout }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: stdout.trim(), stderr }),
    );
  });
}

/** Several statements in one psql session (-c each), as typed one after another. */
function psqlScript(url: string, statements: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const args = [url, '-X', '-v', 'ON_ERROR_STOP=1', ...statements.flatMap((s) => ['-c', s])];
    execFile('psql', args, { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: stdout.trim(), stderr }),
    );
  });
}

const work = mkdtempSync(path.join(os.tmpdir(), 'jit-dev-walk-'));
chmodSync(work, 0o755);
const children: SpawnedJit[] = [];

afterAll(async () => {
  for (const c of children.reverse()) {
    if (c.child.exitCode === null) {
      c.kill('SIGINT');
      await c.exited(30_000).catch(() => c.kill('SIGKILL'));
    }
  }
  rmSync(work, { recursive: true, force: true });
});

/** `jit [--profile p] login --server url`, finishing the browser step as `user`. */
async function login(home: string, server: string, user: string, password: string, profile?: string): Promise<string> {
  const args = [...(profile ? ['--profile', profile] : []), 'login', '--server', server];
  const proc = spawnJit(args, { home });
  children.push(proc);
  const [, url] = (await proc.waitForLine('stderr', /^\s+(http:\/\/\S+)$/, 20_000)) as RegExpMatchArray;
  await completeDeviceLogin({ verificationUriComplete: url!, username: user, password });
  expect(await proc.exited(30_000)).toEqual({ code: 0, signal: null });
  return proc.stderr();
}

describe('the README walkthrough', () => {
  it('login as alice, connect demo-db, query with psql, Ctrl-C, audit as bob', async () => {
    const port = await freePort();
    const server = `http://127.0.0.1:${port}`;
    const dev = spawnJit(['dev', '--dir', path.join(work, '.jit-dev'), '--port', String(port)], { cwd: work });
    children.push(dev);
    await dev.waitForLine('stderr', /Ctrl-C stops everything/, 90_000);
    const pw = (u: string) => new RegExp(`\\b${u}\\s+([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})\\s`).exec(dev.stderr())?.[1] ?? '';

    const home = makeHome();
    expect(await login(home, server, 'alice', pw('alice'))).toContain('Logged in to');

    const targets = await runJit(['targets'], { home });
    expect(targets.code).toBe(0);
    expect(targets.stdout).toContain('demo-db');

    const connect = spawnJit(['connect', 'demo-db', '--reason', 'README walkthrough'], { home });
    children.push(connect);
    const [url] = (await connect.waitForLine('stdout', /^postgresql:\/\/\S+$/, 30_000)) as RegExpMatchArray;
    expect(url).toMatch(/^postgresql:\/\/jit_[a-z0-9]{20}:[^@]+@127\.0\.0\.1:\d+\/demo\?sslmode=disable$/);

    const q = await psql(url!, 'SELECT count(*) FROM customers');
    expect(q.stderr).toBe('');
    expect(Number(q.stdout)).toBeGreaterThan(1000);
    // demo_writer: writes are allowed by the demo policy.
    expect((await psql(url!, "UPDATE orders SET status = 'shipped' WHERE id = 1")).code).toBe(0);

    // Layer 7, as the README shows it: masked columns…
    const rows = await psql(url!, 'SELECT email, card_number, phone FROM customers ORDER BY id LIMIT 3');
    expect(rows.code, rows.stderr).toBe(0);
    for (const line of rows.stdout.split('\n')) {
      const [email, card] = line.split('|');
      expect(email).toMatch(/^[a-z]\*\*\*@[a-z0-9.-]+$/);
      expect(card).toBe('****');
    }
    // …a probe that computes on a masked column is refused…
    const probe = await psql(url!, "SELECT count(*) FROM customers WHERE email LIKE 'a%'");
    expect(probe.code).not.toBe(0);
    expect(probe.stderr).toContain('customer-email');
    // …DDL is blocked, naming the rule…
    const ddl = await psql(url!, 'DROP TABLE orders');
    expect(ddl.code).not.toBe(0);
    expect(ddl.stderr).toMatch(/jit: schema and privilege changes are not allowed/);
    expect(ddl.stderr).toContain('no-ddl');
    // …and a DELETE of every customer waits for bob (README "Approvals"), in a second profile.
    await login(home, server, 'bob', pw('bob'), 'bob');
    const heldFor = async (text: string): Promise<string> => {
      for (let i = 0; i < 60; i++) {
        const r = await runJit(['--profile', 'bob', 'requests', '--to-review', '--json'], { home });
        const found = (JSON.parse(r.stdout).requests as { id: string; statement?: { sql: string } }[]).find(
          (x) => x.statement?.sql === text,
        );
        if (found) return found.id;
        await new Promise((res) => setTimeout(res, 250));
      }
      throw new Error(`no request holds ${text}`);
    };
    // (Held until bob decides: a generous timeout for a loaded machine.)
    const bulk = psql(url!, 'DELETE FROM customers', 60_000);
    const denyId = await heldFor('DELETE FROM customers');
    await connect.waitForLine(
      'stderr',
      new RegExp(`^waiting for approval of: DELETE FROM customers \\(request ${denyId}; approvers: bob\\)$`),
      15_000,
    );
    expect((await runJit(['--profile', 'bob', 'deny', denyId, '--reason', 'use a WHERE clause'], { home })).code).toBe(0);
    const refused = await bulk;
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(
      'jit: this statement needs approval (rule bulk-changes-need-approval) and bob denied it: use a WHERE clause',
    );
    expect((await psql(url!, 'SELECT count(*) FROM customers')).stdout).toBe(q.stdout);
    // Approved, it runs (in a transaction the README rolls back).
    const tx = psqlScript(url!, ['begin', 'delete from orders', 'delete from customers', 'rollback']);
    const approveId = await heldFor('delete from customers');
    expect((await runJit(['--profile', 'bob', 'approve', approveId], { home })).code).toBe(0);
    const ran = await tx;
    expect(ran.stderr).toBe('');
    expect(ran.stdout.split('\n')).toEqual(['BEGIN', expect.stringMatching(/^DELETE \d+$/), `DELETE ${q.stdout}`, 'ROLLBACK']);
    expect((await psql(url!, 'SELECT count(*) FROM customers')).stdout).toBe(q.stdout);

    // demo-db-admin opens only once bob approves the access request.
    const admin = await runJit(['connect', 'demo-db-admin', '--reason', 'INC-42', '--no-wait'], { home });
    expect(admin.code, admin.stderr).toBe(0);
    expect(admin.stderr).toContain('needs approval (rule admin-needs-bob)');
    const adminId = admin.stdout.trim();
    expect((await runJit(['--profile', 'bob', 'approve', adminId], { home })).code).toBe(0);
    const adminConnect = spawnJit(['connect', 'demo-db-admin', '--request', adminId], { home });
    children.push(adminConnect);
    const [adminUrl] = (await adminConnect.waitForLine('stdout', /^postgresql:\/\/\S+$/, 30_000)) as RegExpMatchArray;
    expect((await psql(adminUrl!, "SELECT pg_has_role('demo_admin', 'member')")).stdout).toBe('t');
    adminConnect.kill('SIGINT');
    expect((await adminConnect.exited(30_000)).code).toBe(0);

    connect.kill('SIGINT');
    expect((await connect.exited(30_000)).code).toBe(0);
    // The session's credential is gone: the same URL no longer works.
    expect((await psql(url!, 'SELECT 1')).code).not.toBe(0);

    // Alice is no administrator.
    const denied = await runJit(['audit'], { home });
    expect(denied.code).toBe(4);
    expect(denied.stderr).toContain('JIT_ADMIN_REQUIRED');

    // Bob is (logged in above, in a second profile of the same CLI).
    const audit = await runJit(['--profile', 'bob', 'audit', '--json'], { home });
    expect(audit.code).toBe(0);
    const events = audit.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; actor?: string });
    expect(events.some((e) => e.type === 'session.started' && e.actor === 'alice')).toBe(true);

    dev.kill('SIGINT');
    expect(await dev.exited(30_000)).toEqual({ code: 0, signal: null });
  }, 180_000);
});
