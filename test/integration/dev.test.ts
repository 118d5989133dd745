/**
 * `jit dev` as a newcomer runs it: the built binary in a child process, its own dev folder, a
 * free port. Checks what a user would: the banner, the seeded demo database (with psql, as the
 * superuser whose password lives in the dev folder), the control plane's /healthz, a clean exit
 * on Ctrl-C that leaves no PostgreSQL behind, and a second start that keeps passwords and data.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { freePort } from '../helpers/postgres.js';

function psql(url: string, sql: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('psql', [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], { timeout: 15_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`psql failed: ${stderr || err.message}`)) : resolve(stdout.trim()),
    );
  });
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

interface Banner {
  serverUrl: string;
  pgPort: number;
  passwords: Record<string, string>;
}

function parseBanner(stderr: string): Banner {
  const serverUrl = /Control plane\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1];
  const pgPort = /PostgreSQL\s+127\.0\.0\.1:(\d+)/.exec(stderr)?.[1];
  const passwords: Record<string, string> = {};
  for (const m of stderr.matchAll(/^\s+(?:Dev users\s+)?(alice|bob)\s+([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})\s/gm)) passwords[m[1]!] = m[2]!;
  if (!serverUrl || !pgPort) throw new Error(`banner not understood:\n${stderr}`);
  return { serverUrl, pgPort: Number(pgPort), passwords };
}

const work = mkdtempSync(path.join(os.tmpdir(), 'jit-dev-e2e-'));
// Run as root (CI), PostgreSQL runs as the postgres OS user, which must be able to enter it.
chmodSync(work, 0o755);
const dir = path.join(work, '.jit-dev');
let running: SpawnedJit | undefined;

afterAll(async () => {
  // A failed assertion must not leave jit dev (and its PostgreSQL) running.
  if (running && running.child.exitCode === null) {
    running.kill('SIGINT');
    await running.exited(30_000).catch(() => running?.kill('SIGKILL'));
  }
  rmSync(work, { recursive: true, force: true });
});

async function startDev(port: number): Promise<{ dev: SpawnedJit; banner: Banner }> {
  const dev = spawnJit(['dev', '--dir', dir, '--port', String(port), '--heartbeat-timeout', '5s'], { cwd: work });
  running = dev;
  await dev.waitForLine('stderr', /jit dev is running/, 90_000);
  // The banner is written in one piece; give the last lines a moment to arrive.
  await dev.waitForLine('stderr', /Ctrl-C stops everything/, 5_000);
  return { dev, banner: parseBanner(dev.stderr()) };
}

describe('jit dev', () => {
  let firstPasswords: Record<string, string> = {};

  it('starts everything, seeds the demo database and stops cleanly on Ctrl-C', async () => {
    const port = await freePort();
    const started = Date.now();
    const { dev, banner } = await startDev(port);
    const startSeconds = (Date.now() - started) / 1000;

    expect(banner.serverUrl).toBe(`http://127.0.0.1:${port}`);
    expect(Object.keys(banner.passwords).sort()).toEqual(['alice', 'bob']);
    firstPasswords = banner.passwords;
    const err = dev.stderr();
    expect(err).toContain(`jit login --server http://127.0.0.1:${port}`);
    expect(err).toContain('jit connect demo-db');
    expect(err).not.toContain('the agent has not connected yet');
    // First run includes initdb; still "a few seconds" on a 2-core box.
    expect(startSeconds).toBeLessThan(30);

    // The control plane answers.
    const health = await fetch(`${banner.serverUrl}/healthz`);
    expect(health.status).toBe(200);

    // The demo PostgreSQL, as its superuser: seeded tables, roles for the agent and the policy.
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { pgSuperPassword: string; pgPort: number };
    expect(state.pgPort).toBe(banner.pgPort);
    const su = `postgresql://postgres:${encodeURIComponent(state.pgSuperPassword)}@127.0.0.1:${banner.pgPort}/demo?sslmode=disable`;
    expect(
      await psql(su, 'SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), (SELECT count(*) > 0 FROM products)'),
    ).toBe('3000|10000|t');
    // Card numbers pass the Luhn check (what masking detectors look for).
    const luhnFailures = await psql(
      su,
      `SELECT count(*) FROM customers c WHERE (
         SELECT sum(CASE WHEN i % 2 = 0 THEN (d * 2) / 10 + (d * 2) % 10 ELSE d END) % 10
         FROM (SELECT substr(reverse(c.card_number), i, 1)::int AS d, i FROM generate_series(1, length(c.card_number)) AS i) x
       ) <> 0`,
    );
    expect(luhnFailures).toBe('0');
    expect(
      await psql(
        su,
        `SELECT r.rolname, r.rolcanlogin, r.rolcreaterole, r.rolsuper FROM pg_roles r
         WHERE r.rolname IN ('jit_admin', 'demo_reader', 'demo_writer') ORDER BY 1`,
      ),
    ).toBe('demo_reader|f|f|f\ndemo_writer|f|f|f\njit_admin|t|t|f');
    expect(
      await psql(
        su,
        `SELECT g.rolname || ':' || m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
         JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'jit_admin' ORDER BY 1`,
      ),
    ).toBe('demo_admin:true\ndemo_reader:true\ndemo_writer:true\npg_signal_backend:false');
    expect(
      await psql(
        su,
        "SELECT has_table_privilege('demo_writer', 'orders', 'INSERT'), has_table_privilege('demo_reader', 'orders', 'INSERT')",
      ),
    ).toBe('t|f');
    // Loopback only.
    expect(await psql(su, 'SHOW listen_addresses')).toBe('127.0.0.1');

    // Secrets: the folder is private, passwords are in the config only as hashes.
    expect(statSync(dir).mode & 0o066).toBe(0);
    expect(statSync(path.join(dir, 'dev-users.json')).mode & 0o777).toBe(0o600);
    const serverYaml = readFileSync(path.join(dir, 'server.yaml'), 'utf8');
    for (const pw of Object.values(banner.passwords)) expect(serverYaml).not.toContain(pw);
    expect(serverYaml).toMatch(/tokenHash: sha256:[0-9a-f]{64}/);
    expect(serverYaml).toContain('heartbeatTimeout: 5s');

    dev.kill('SIGINT');
    const exit = await dev.exited(30_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(dev.stderr()).toContain('jit dev stopped');
    expect(await tcpOpen(banner.pgPort)).toBe(false);
    expect(await tcpOpen(port)).toBe(false);
  });

  it('keeps passwords and data on the next start, and stops on SIGTERM too', async () => {
    const port = await freePort();
    const { dev, banner } = await startDev(port);
    expect(banner.passwords).toEqual(firstPasswords);
    expect(dev.stderr()).not.toContain('initialising PostgreSQL');
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { pgSuperPassword: string };
    const su = `postgresql://postgres:${encodeURIComponent(state.pgSuperPassword)}@127.0.0.1:${banner.pgPort}/demo?sslmode=disable`;
    // Seeding did not run twice.
    expect(
      await psql(
        su,
        'SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), (SELECT min(name) FROM customers WHERE id = 1)',
      ),
    ).toBe('3000|10000|Grace Adeyemi');
    dev.kill('SIGTERM');
    expect(await dev.exited(30_000)).toEqual({ code: 0, signal: null });
    expect(await tcpOpen(banner.pgPort)).toBe(false);
  });

  it('says the port is taken and how to pick another', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const res = await runJit(['dev', '--dir', path.join(work, 'busy'), '--port', String(port)], { cwd: work, timeoutMs: 30_000 });
      expect(res.code).toBe(2);
      expect(res.stderr).toContain(`Port ${port} on 127.0.0.1 is already in use`);
      expect(res.stderr).toContain('[JIT_PORT_IN_USE]');
      expect(res.stderr).toMatch(/hint: .*--port/);
    } finally {
      busy.close();
    }
  });

  it('refuses to reset a folder that is not a jit dev folder', async () => {
    const res = await runJit(['dev', '--dir', work, '--reset', '--port', '0'], { cwd: work, timeoutMs: 30_000 });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('is not a jit dev folder');
    // The first test's dev folder and everything else in `work` survived.
    expect(statSync(path.join(dir, 'state.json')).isFile()).toBe(true);
  });
});
