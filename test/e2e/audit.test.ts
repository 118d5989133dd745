/**
 * The audit trail end to end from the built binary: an acknowledged session start survives a
 * SIGKILL of `jit server`; `jit audit --follow` tails; `jit audit verify` (online and offline
 * with an export and the public key) passes on an intact log and names the tampered event with
 * exit code 9; `jit audit report` writes an HTML page that headless Chromium renders.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, loginAs, type ServerFixture, startControlPlane, type Tokens, USERS } from '../helpers/control-plane.js';
import { cliLogin } from '../helpers/e2e-stack.js';
import { runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';

const run = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
let cp: ServerFixture;
let server: SpawnedJit;
let bobHome: string;
let alice: Tokens;

async function startServerProcess(): Promise<void> {
  server = spawnJit(['server', '--config', cp.serverConfigPath, '--log-level', 'warn']);
  await server.waitForLine('stderr', /listening on/, 30_000);
}

const jit = (args: string[]) => runJit(args, { home: bobHome, timeoutMs: 60_000 });

beforeAll(async () => {
  cp = await startControlPlane({
    writeOnly: true,
    policy: {
      targets: [{ name: 'app-db', type: 'postgres', agent: 'local', database: 'app' }],
      access: [{ name: 'engineers-app', targets: ['app-db'], groups: ['engineers'], grantRoles: ['app_reader'] }],
    },
  });
  await startServerProcess();
  bobHome = await cliLogin(cp.url, 'bob', USERS.find((u) => u.username === 'bob')!.password);
  alice = await loginAs(cp.url, 'alice');
}, 90_000);

afterAll(async () => {
  server?.kill('SIGTERM');
  await server?.exited(10_000).catch(() => server.kill('SIGKILL'));
  await cp?.stop();
});

describe('durability', () => {
  it('a session start acknowledged right before SIGKILL is still in the log after restart', async () => {
    const res = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', reason: 'kill test' });
    expect(res.status).toBe(201);
    server.kill('SIGKILL');
    expect((await server.exited(10_000)).signal).toBe('SIGKILL');
    await startServerProcess();
    const r = await jit(['audit', '--session', res.body.session.id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(events.map((e) => e.type)).toContain('session.started');
    expect(events[0]).toMatchObject({ actor: 'alice', target: 'app-db', data: { reason: 'kill test' } });
    const v = await jit(['audit', 'verify']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/^✔ stream cp: \d+ events checked from the start/);
  }, 90_000);
});

describe('jit audit --follow', () => {
  it('prints new events as they arrive and stops on Ctrl-C', async () => {
    const tail = spawnJit(['audit', '--follow', '--json', '--type', 'session.'], { home: bobHome });
    await tail.waitForLine('stderr', /following the audit log/, 20_000);
    await new Promise((r) => setTimeout(r, 500));
    const res = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', reason: 'tail me' });
    const id = res.body.session.id as string;
    await tail.waitForLine('stdout', new RegExp(`"type":"session.started".*"session":"${id}"`), 15_000);
    const t0 = Date.now();
    tail.kill('SIGINT');
    expect((await tail.exited(10_000)).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
  }, 60_000);
});

describe('jit audit verify', () => {
  it('verifies an export offline with the public key, and names an edited line', async () => {
    const key = path.join(bobHome, 'pub.json');
    const file = path.join(bobHome, 'export.jsonl');
    expect((await jit(['audit', 'key', '--out', key])).code).toBe(0);
    const ex = await jit(['audit', 'export', '--out', file]);
    expect(ex.code, ex.stderr).toBe(0);
    expect(ex.stderr).toMatch(/exported \d+ events/);
    const ok = await jit(['audit', 'verify', '--file', file, '--key', key]);
    expect(ok.code, ok.stderr).toBe(0);

    const lines = readFileSync(file, 'utf8').split('\n');
    const i = lines.findIndex((l) => l.includes('"reason":"kill test"'));
    const victim = JSON.parse(lines[i]!) as { id: number };
    lines[i] = lines[i]!.replace('kill test', 'nothing to see');
    writeFileSync(file, lines.join('\n'));
    const bad = await jit(['audit', 'verify', '--file', file, '--key', key]);
    expect(bad.code).toBe(9);
    expect(bad.stderr).toContain('[JIT_AUDIT_TAMPERED]');
    expect(bad.stderr).toContain(`event ${victim.id} was altered`);
  }, 60_000);

  it('names the event changed directly in the server store, with exit code 9', async () => {
    const db = new Database(path.join(cp.dir, 'data', 'jit.db'));
    const row = db.prepare(`SELECT id FROM audit_events WHERE type = 'session.started' ORDER BY id DESC LIMIT 1`).get() as { id: number };
    db.prepare(`UPDATE audit_events SET actor = 'mallory' WHERE id = ?`).run(row.id);
    db.close();
    const r = await jit(['audit', 'verify', '--json']);
    expect(r.code).toBe(9);
    expect(JSON.parse(r.stdout).problem).toMatchObject({ kind: 'altered', eventId: row.id });
    expect(r.stderr).toContain(`event ${row.id} was altered`);
  }, 60_000);
});

describe('jit audit report', () => {
  it('writes a self-contained HTML report that Chromium renders with the sessions and timeline', async () => {
    expect(existsSync(CHROMIUM), 'chromium is missing: apt-get install -y chromium').toBe(true);
    const out = path.join(bobHome, 'report.html');
    const r = await jit(['audit', 'report', '--since', '1h', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const html = readFileSync(out, 'utf8');
    // Self-contained: no scripts, no stylesheets or images fetched from anywhere.
    expect(html).not.toMatch(/<script|<link|<img|src=|url\(/i);
    const { stdout: dom } = await run(
      CHROMIUM,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--dump-dom', `file://${out}`],
      { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 },
    );
    expect(dom).toContain('Access evidence report');
    expect(dom).toContain('Target app-db');
    expect(dom).toMatch(/<svg[^>]+class="timeline"/);
    expect(dom).toContain('tail me');
    expect(dom).toMatch(/<tr data-session="[a-z2-7]{20}"><td>alice<\/td>/);
    const json = await jit(['audit', 'report', '--since', '1h', '--format', 'json']);
    expect(JSON.parse(json.stdout).totals.sessions).toBeGreaterThanOrEqual(2);
  }, 90_000);
});
