/**
 * The spine, end to end from the built binary: jit login → jit connect → psql through a
 * per-session role that dies with the command, also when the CLI is killed or the agent dies.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { SignJWT, importJWK, type JWK } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { tokenPaths } from '#cli/auth/token-store.js';
import { USERS } from '../helpers/control-plane.js';
import { cliLogin, eventually, type Stack, startStack } from '../helpers/e2e-stack.js';
import { makeHome, runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { sql } from '../helpers/postgres.js';

const run = promisify(execFile);
const TARGET = 'e2e-spine-db';
const pgInfo = inject('pg');
let stack: Stack;
let aliceHome: string;
let bobHome: string;

const password = (u: string) => USERS.find((x) => x.username === u)!.password;

async function roleExists(role: string): Promise<boolean> {
  return (await sql(pgInfo.superUrl, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).length > 0;
}

async function psql(url: string, query: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('psql', [url, '-X', '-At', '-c', query], { timeout: 20_000, env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
    return { code: 0, stdout: r.stdout.trim(), stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** Start `jit connect` and wait until it prints its JSON line. */
async function connect(home: string, extra: string[] = []): Promise<{ proc: SpawnedJit; url: string; sessionId: string; role: string }> {
  const proc = spawnJit(['connect', TARGET, '--json', ...extra], { home });
  // --json prints one JSON document once the port is ready.
  await proc.waitForLine('stdout', /^\}$/, 30_000);
  const ready = JSON.parse(proc.stdout()) as { session: { id: string; dbUser: string }; url: string };
  return { proc, url: ready.url, sessionId: ready.session.id, role: ready.session.dbUser };
}

async function auditTypes(sessionId: string): Promise<string[]> {
  const r = await runJit(['audit', '--session', sessionId, '--json'], { home: bobHome });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { type: string }).type);
}

beforeAll(async () => {
  stack = await startStack(pgInfo, 'e2e_spine');
  [aliceHome, bobHome] = await Promise.all([cliLogin(stack.url, 'alice', password('alice')), cliLogin(stack.url, 'bob', password('bob'))]);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('login and discovery', () => {
  it('whoami and targets work with the stored login', async () => {
    const who = await runJit(['whoami', '--json'], { home: aliceHome });
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout)).toMatchObject({ username: 'alice', groups: ['engineers'] });
    const targets = await runJit(['targets', '--json'], { home: aliceHome });
    expect(JSON.parse(targets.stdout).targets).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: TARGET, type: 'postgres', online: true })]),
    );
  });

  it('an unknown target is refused with the access-denied exit code', async () => {
    const r = await runJit(['connect', 'no-such-db'], { home: aliceHome });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('JIT_TARGET_NOT_FOUND');
  });
});

describe('connect', () => {
  it('psql runs queries as the session role; Ctrl-C drops the role; the audit tells the story', async () => {
    const c = await connect(aliceHome, ['--reason', 'e2e check']);
    expect(c.role).toBe(`jit_${c.sessionId}`);
    expect(c.url).toMatch(/^postgresql:\/\/jit_[a-z0-9]{20}:[^@]+@127\.0\.0\.1:\d+\/e2e_spine\?sslmode=disable$/);

    const who = await psql(c.url, 'select current_user');
    expect(who).toMatchObject({ code: 0, stdout: c.role });
    expect((await psql(c.url, 'select count(*) from items')).stdout).toBe('100');
    // The policy grants the reader role only: other tables stay closed.
    const denied = await psql(c.url, 'select * from secrets');
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('permission denied');
    expect(await roleExists(c.role)).toBe(true);

    c.proc.kill('SIGINT');
    expect((await c.proc.exited(15_000)).code).toBe(0);
    expect(await eventually(async () => !(await roleExists(c.role)), 10_000)).toBe(true);

    const types = await auditTypes(c.sessionId);
    expect(types).toEqual(expect.arrayContaining(['session.started', 'credential.created', 'session.ended', 'credential.destroyed']));
    expect(types.indexOf('session.started')).toBeLessThan(types.indexOf('credential.created'));

    // The owner replays the session as a timeline; so can an admin.
    const replay = await runJit(['replay', c.sessionId], { home: aliceHome });
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toContain(`session ${c.sessionId}  alice → ${TARGET}`);
    expect(replay.stdout).toMatch(/\+00:\d\d\.\d{3}\s+credential\.created\s+jit_/);
    expect((await runJit(['replay', c.sessionId], { home: bobHome })).code).toBe(0);
  });

  it('refuses a local connection that does not present the session secret', async () => {
    const c = await connect(aliceHome);
    try {
      const wrong = c.url.replace(/:([^:@/]+)@/, ':not-the-secret@');
      const r = await psql(wrong, 'select 1');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('password authentication failed');
      // And no role was made for a connection that never authenticated.
      expect(await roleExists(c.role)).toBe(false);
    } finally {
      c.proc.kill('SIGTERM');
      await c.proc.exited(15_000);
    }
  });

  it('carries 50 concurrent connections through one session', async () => {
    const c = await connect(aliceHome);
    try {
      const clients = Array.from({ length: 50 }, () => new pg.Client({ connectionString: c.url }));
      await Promise.all(clients.map((cl) => cl.connect()));
      const rows = await Promise.all(clients.map((cl, i) => cl.query('select $1::int + count(*) as n from items', [i])));
      expect(rows.map((r) => Number(r.rows[0].n))).toEqual(Array.from({ length: 50 }, (_, i) => i + 100));
      await Promise.all(clients.map((cl) => cl.end()));
    } finally {
      c.proc.kill('SIGINT');
      await c.proc.exited(15_000);
    }
  });

  it('SIGKILL of the CLI: the role is dropped within the heartbeat timeout', async () => {
    const c = await connect(aliceHome);
    expect((await psql(c.url, 'select current_user')).stdout).toBe(c.role);
    c.proc.kill('SIGKILL');
    await c.proc.exited(5_000);
    // heartbeatTimeout is 4 s in this stack; allow the sweep and the teardown on top.
    expect(await eventually(async () => !(await roleExists(c.role)), 12_000)).toBe(true);
    expect(await auditTypes(c.sessionId)).toEqual(expect.arrayContaining(['session.ended', 'credential.destroyed']));
    const sessions = await runJit(['sessions', '--json'], { home: aliceHome });
    const list = (JSON.parse(sessions.stdout) as { sessions: { id: string; endReason?: string }[] }).sessions;
    const s = list.find((x) => x.id === c.sessionId);
    expect(s?.endReason).toBe('heartbeat-lost');
  });

  it('agent killed mid-session: the client gets a clear error and the reaper leaves no orphan role', async () => {
    const c = await connect(aliceHome);
    const client = new pg.Client({ connectionString: c.url });
    await client.connect();
    expect((await client.query('select current_user as u')).rows[0].u).toBe(c.role);
    client.on('error', () => {});

    stack.agent.kill('SIGKILL');
    await stack.agent.exited(5_000);
    // The open connection breaks with an error rather than hanging…
    await expect(client.query('select 1')).rejects.toThrow();
    // …and a new one is refused in the client's own protocol, saying why.
    const fresh = await psql(c.url, 'select 1');
    expect(fresh.code).not.toBe(0);
    expect(fresh.stderr).toMatch(/agent serving .* is not connected|JIT_AGENT_UNAVAILABLE/);

    // The user ends the session while the agent is away: the role is left behind for now…
    c.proc.kill('SIGINT');
    expect((await c.proc.exited(15_000)).code).toBe(0);
    expect(await roleExists(c.role)).toBe(true);
    // …and the restarted agent's reaper removes it.
    await stack.startAgent();
    expect(await eventually(async () => !(await roleExists(c.role)), 15_000)).toBe(true);
    await client.end().catch(() => {});
  });
});

describe('tokens the CLI holds', () => {
  async function withStoredAccessToken(token: string): Promise<{ code: number | null; stderr: string }> {
    const home = makeHome();
    const disco = (await (await fetch(`${stack.url}/.well-known/jit`)).json()) as { issuer: string; audience: string };
    const { dir, file } = tokenPaths(path.join(home, '.config', 'jit'), 'default', stack.url);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(
      file,
      JSON.stringify({
        accessToken: token,
        expiresAt: Date.now() + 3600_000,
        issuer: disco.issuer,
        clientId: 'jit-cli',
        audience: disco.audience,
      }),
      { mode: 0o600 },
    );
    return runJit(['targets', '--server', stack.url], { home });
  }

  async function idpKey(): Promise<{ key: Awaited<ReturnType<typeof importJWK>>; kid: string | undefined }> {
    const keys = JSON.parse(readFileSync(path.join(stack.cp.dir, 'data', 'idp-keys.json'), 'utf8')) as { jwks: { keys: JWK[] } };
    const jwk = keys.jwks.keys.find((k) => k.kty === 'RSA') ?? keys.jwks.keys[0]!;
    return { key: await importJWK(jwk, jwk.alg ?? 'RS256'), kid: jwk.kid };
  }

  async function sign(claims: { aud: string; exp: number; iss?: string }): Promise<string> {
    const { key, kid } = await idpKey();
    return new SignJWT({ preferred_username: 'alice', groups: ['engineers'] })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', ...(kid ? { kid } : {}) })
      .setIssuer(claims.iss ?? `${stack.url}/oidc`)
      .setAudience(claims.aud)
      .setSubject('alice')
      .setIssuedAt()
      .setExpirationTime(claims.exp)
      .sign(key);
  }

  it('a token signed with the real key is accepted (the control for the cases below)', async () => {
    const r = await withStoredAccessToken(await sign({ aud: stack.url, exp: Math.floor(Date.now() / 1000) + 300 }));
    expect(r.code, r.stderr).toBe(0);
  });

  it.each([
    ['expired', async () => sign({ aud: stack.url, exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['wrong audience', async () => sign({ aud: 'https://elsewhere.example', exp: Math.floor(Date.now() / 1000) + 300 })],
    [
      'forged (another key)',
      async () => {
        const { generateKeyPair } = await import('jose');
        const { privateKey } = await generateKeyPair('RS256');
        return new SignJWT({ preferred_username: 'alice' })
          .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: (await idpKey()).kid ?? 'x' })
          .setIssuer(`${stack.url}/oidc`)
          .setAudience(stack.url)
          .setSubject('alice')
          .setExpirationTime('5m')
          .sign(privateKey);
      },
    ],
    [
      'alg none',
      async () => {
        const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        return `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ sub: 'alice', aud: stack.url, iss: `${stack.url}/oidc`, exp: Math.floor(Date.now() / 1000) + 300 })}.`;
      },
    ],
  ])('%s token → refused with the login-needed exit code', async (_name, make) => {
    const r = await withStoredAccessToken(await make());
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain('jit login');
  });
});
