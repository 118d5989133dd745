/**
 * `jit exec` end to end from the built binary, as a CI job runs it: no login, no keychain, an
 * empty HOME; the job's identity is an ID token from a real issuer (an in-test CI platform with
 * discovery and JWKS on a local socket) or a service account's secret. The command runs with the
 * session in its environment, its exit code and signals propagate, and the session and its role
 * are gone afterwards.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { hashPassword } from '#control-plane/identity/password.js';
import { api, loginAs, startControlPlane, type ServerFixture } from '../helpers/control-plane.js';
import { eventually, makeTargetDatabase } from '../helpers/e2e-stack.js';
import { makeHome, runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { sql } from '../helpers/postgres.js';
import { startTestIssuer, type TestIssuer } from '../integration/workload-issuer.js';

const pgInfo = inject('pg');
const PREFIX = 'e2e_exec';
const TARGET = 'e2e-exec-db';
/** The same database behind a target that needs an approval first. */
const GATED = 'e2e-exec-gated';
const SA_SECRET = `sa-${randomBytes(12).toString('hex')}`;
const GOOD = { repository: 'acme/app', ref: 'refs/heads/main' };

let cp: ServerFixture;
let ci: TestIssuer;
let server: SpawnedJit;
let agent: SpawnedJit;
let database: string;

/** Every file under dir (relative paths), to prove a run wrote nothing. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  }
  return out;
}

async function roleExists(role: string): Promise<boolean> {
  return (await sql(pgInfo.superUrl, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).length > 0;
}

/** Environment of a CI job: the server, the identity, nothing else of jit's. */
function ciEnv(extra: Record<string, string>): Record<string, string> {
  return { JIT_SERVER: cp.url, ...extra };
}

beforeAll(async () => {
  const target = await makeTargetDatabase(pgInfo, PREFIX);
  database = target.database;
  cp = await startControlPlane({
    writeOnly: true,
    policy: {
      targets: [
        { name: TARGET, type: 'postgres', agent: 'local', database, description: 'exec target' },
        { name: GATED, type: 'postgres', agent: 'local', database, description: 'needs approval' },
      ],
      access: [
        { name: 'deploy', targets: [TARGET, GATED], users: ['workload:ci-deploy'], grantRoles: [`${PREFIX}_reader`] },
        { name: 'nightly', targets: [TARGET], groups: ['nightly-jobs'], grantRoles: [`${PREFIX}_reader`] },
      ],
    },
    sessions: { heartbeatTimeout: '4s', heartbeatInterval: '1s' },
  });
  const policyPath = path.join(cp.dir, 'policy.yaml');
  const policy = parse(readFileSync(policyPath, 'utf8')) as Record<string, unknown>;
  policy['approvals'] = [{ name: 'gated', targets: [GATED], users: ['workload:ci-deploy'], approvers: { users: ['bob'] } }];
  writeFileSync(policyPath, stringify(policy));
  ci = await startTestIssuer({ audience: cp.url });
  ci.actionsClaims = GOOD;
  const config = parse(readFileSync(cp.serverConfigPath, 'utf8')) as Record<string, unknown>;
  config['workloads'] = [{ name: 'ci-deploy', issuer: ci.url, audience: cp.url, claims: GOOD, groups: ['ci'] }];
  config['serviceAccounts'] = [{ name: 'nightly', secretHash: await hashPassword(SA_SECRET), groups: ['nightly-jobs'] }];
  writeFileSync(cp.serverConfigPath, stringify(config));
  const agentConfigPath = path.join(cp.dir, 'agent.yaml');
  writeFileSync(
    agentConfigPath,
    stringify({
      name: 'local',
      controlPlane: cp.url,
      targets: Object.fromEntries(
        [TARGET, GATED].map((t) => [
          t,
          { type: 'postgres', host: pgInfo.host, port: pgInfo.port, database, adminUrlEnv: 'E2E_ADMIN_URL', sslmode: 'disable' },
        ]),
      ),
      reaperInterval: '2s',
    }),
  );
  server = spawnJit(['server', '--config', cp.serverConfigPath, '--log-level', 'warn'], { home: makeHome() });
  await server.waitForLine('stderr', /listening on/, 30_000);
  agent = spawnJit(['agent', '--config', agentConfigPath, '--log-level', 'warn'], {
    home: makeHome(),
    env: { JIT_AGENT_TOKEN: cp.agentToken, E2E_ADMIN_URL: target.adminUrl },
  });
  await agent.waitForLine('stderr', /agent local started/, 30_000);
}, 120_000);

afterAll(async () => {
  for (const p of [agent, server]) {
    p?.kill('SIGTERM');
    await p?.exited(10_000).catch(() => p.kill('SIGKILL'));
  }
  await cp?.stop();
  await ci?.close();
});

describe('jit exec with a CI identity', () => {
  it('runs psql as the session role with only JIT_ID_TOKEN: no login, no keychain, nothing written under HOME', async () => {
    const home = makeHome();
    const before = filesUnder(home);
    const r = await runJit(['exec', TARGET, '--reason', 'ci deploy', '--', 'psql', '-X', '-At', '-c', 'select current_user'], {
      home,
      env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD), JIT_KEYRING: 'file' }),
    });
    expect(r.code, r.stderr).toBe(0);
    // stdout is the child's alone; jit's status lines are on stderr.
    expect(r.stdout).toMatch(/^jit_[a-z0-9]{20}\n$/);
    expect(r.stderr).toMatch(/session [a-z0-9]{20} on e2e-exec-db ready; running psql/);
    expect(filesUnder(home)).toEqual(before);
    const role = r.stdout.trim();
    // The session was ended when psql exited, so the role goes at once (not at heartbeat timeout).
    expect(await eventually(async () => !(await roleExists(role)), 10_000)).toBe(true);
  });

  it("gives the child the connection in PG* and DATABASE_URL, the secret only in a 0600 pgpass file removed at exit, and none of jit's own secrets", async () => {
    const script =
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
      'printf "%s|%s|%s|%s|%s|%s|%s\\n" "$PGHOST" "$PGPORT" "$PGUSER" "$PGDATABASE" "$PGSSLMODE" "${JIT_ID_TOKEN:-none}" "$JIT_SESSION_ID"; ' +
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
      'test -z "${PGPASSWORD:-}" && stat -c %a "$PGPASSFILE" >&2 && echo "$PGPASSFILE $DATABASE_URL" >&2 && psql "$DATABASE_URL" -X -At -c "select count(*) from items"';
    const r = await runJit(['exec', TARGET, '--', 'sh', '-c', script], {
      env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD), PGHOSTADDR: '10.9.9.9' }),
    });
    expect(r.code, r.stderr).toBe(0);
    const [vars, count] = r.stdout.trim().split('\n');
    const [host, port, user, db, sslmode, token, sid] = vars!.split('|');
    expect({ host, db, sslmode, token }).toEqual({ host: '127.0.0.1', db: database, sslmode: 'disable', token: 'none' });
    expect(Number(port)).toBeGreaterThan(0);
    expect(user).toBe(`jit_${sid}`);
    expect(count).toBe('100');
    const [mode, passLine] = r.stderr.split('\n').filter((l) => /^\d{3}$|pgpass/.test(l));
    expect(mode).toBe('600');
    const [passfile, dbUrl] = passLine!.split(' ');
    expect(new URL(dbUrl!).password).toBe('');
    expect(existsSync(passfile!)).toBe(false); // removed when jit exec ended
    const withSecret = await runJit(
      ['exec', TARGET, '--secret-in-env', '--', 'sh', '-c', 'test -n "$PGPASSWORD" && psql -X -At -c "select 1"'],
      {
        env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }),
      },
    );
    expect(withSecret.code, withSecret.stderr).toBe(0);
  });

  it('--env-prefix prefixes the names and leaves PGHOST alone', async () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a template
    const r = await runJit(
      [
        'exec',
        TARGET,
        '--env-prefix',
        'SRC_',
        '--',
        'sh',
        '-c',
        'echo "${PGHOST:-unset} $SRC_PGHOST"; psql "$SRC_DATABASE_URL" -X -At -c "select 1"',
      ],
      {
        env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }),
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('unset 127.0.0.1\n1\n');
  });

  it("exits with the child's exit code (7 → 7), and 127 for a command that does not exist", async () => {
    const seven = await runJit(['exec', TARGET, '--', 'sh', '-c', 'exit 7'], { env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }) });
    expect(seven.code, seven.stderr).toBe(7);
    const missing = await runJit(['exec', TARGET, '--', 'no-such-command-jit'], { env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }) });
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/cannot run no-such-command-jit: command not found/);
  });

  it('--quiet (or JIT_QUIET=1) leaves stderr to the child', async () => {
    const r = await runJit(['exec', '--quiet', TARGET, '--', 'sh', '-c', 'echo child-err >&2'], {
      env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }),
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('child-err\n');
    const env = await runJit(['exec', TARGET, '--', 'sh', '-c', 'echo child-err >&2'], {
      env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD), JIT_QUIET: '1' }),
    });
    expect(env.stderr).toBe('child-err\n');
  });

  it('files an access request when the target needs approval, waits on plain stderr lines, and runs once approved', async () => {
    const noReason = await runJit(['exec', GATED, '--', 'true'], { env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }) });
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/A reason is required .*\n {2}hint: pass --reason/);

    const proc = spawnJit(['exec', GATED, '--reason', 'ship it', '--', 'psql', '-X', '-At', '-c', 'select current_user'], {
      env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }),
    });
    const [, id] = await proc.waitForLine('stderr', /request ([a-z0-9]{20}) filed/, 30_000);
    await proc.waitForLine('stderr', /^Approvers: bob; waiting up to/, 10_000);
    const bob = await loginAs(cp.url, 'bob');
    const approved = await api(cp.url, bob.accessToken, 'POST', `/v1/requests/${id}/approve`, { comment: 'go' });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    const { code } = await proc.exited(30_000);
    expect(code, proc.stderr()).toBe(0);
    expect(proc.stdout()).toMatch(/^jit_[a-z0-9]{20}\n$/);
    // No terminal: no ink frames, no escape sequences on stderr.
    expect(proc.stderr()).not.toMatch(/\x1b\[/);
    expect(proc.stderr()).toMatch(/Approved by bob \(1 of 1\): "go"/);
  });

  it('forwards SIGTERM to the child, exits 143 and ends the session', async () => {
    // psql first, so the role exists (it is made on the session's first connection).
    const script =
      'trap "echo child-got-TERM >&2; trap - TERM; kill -TERM $$" TERM; psql -X -At -c "select current_user"; while :; do sleep 0.1; done';
    const proc = spawnJit(['exec', TARGET, '--', 'sh', '-c', script], { env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }) });
    const [, role] = await proc.waitForLine('stdout', /^(jit_[a-z0-9]{20})$/, 30_000);
    expect(await roleExists(role!)).toBe(true);
    proc.kill('SIGTERM');
    const { code } = await proc.exited(20_000);
    expect(code, proc.stderr()).toBe(143);
    expect(proc.stderr()).toMatch(/child-got-TERM/);
    expect(proc.stderr()).toMatch(/Session [a-z0-9]{20} ended; its credential is being destroyed/);
    expect(await eventually(async () => !(await roleExists(role!)), 10_000)).toBe(true);
  });

  it('stops the child and exits 8 when the server ends the session under it', async () => {
    const proc = spawnJit(['exec', TARGET, '--', 'sh', '-c', 'echo "$JIT_SESSION_ID"; exec sleep 60'], {
      env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }),
    });
    const [, sid] = await proc.waitForLine('stdout', /^([a-z0-9]{20})$/, 30_000);
    // The same workload ends it from elsewhere (as an operator's jit disconnect would).
    const other = await runJit(['disconnect', sid!], { env: ciEnv({ JIT_ID_TOKEN: await ci.mint(GOOD) }) });
    expect(other.code, other.stderr).toBe(0);
    const started = Date.now();
    const { code } = await proc.exited(20_000);
    expect(code, proc.stderr()).toBe(8);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(proc.stderr()).toMatch(
      /ended while the command ran: it was disconnected {2}\[JIT_SESSION_ENDED\]\n {2}hint: jit exec again opens a new session/,
    );
  });

  const refusals: [string, () => Promise<string>, RegExp][] = [
    ['the wrong audience', () => ci.mint({ ...GOOD, aud: 'https://other.example' }), /audience does not match/],
    ['the wrong repository', () => ci.mint({ ...GOOD, repository: 'evil/app' }), /repository claim does not match/],
    [
      'an expired token',
      () => ci.mint({ ...GOOD, iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 }),
      /expired/,
    ],
  ];
  for (const [what, make, reason] of refusals) {
    it(`refuses ${what} with exit 3 and one line saying why, before running anything`, async () => {
      const r = await runJit(['exec', TARGET, '--', 'sh', '-c', 'echo ran'], { env: ciEnv({ JIT_ID_TOKEN: await make() }) });
      expect(r.code).toBe(3);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(reason);
      expect(r.stderr).toMatch(/^✘ The jit server refused JIT_ID_TOKEN: .*\[JIT_AUTH_MACHINE_REFUSED\]\n {2}hint: .*docs\/ci\.md/);
    });
  }

  it('reads the ID token from --id-token-file', async () => {
    const home = makeHome();
    const file = path.join(home, 'id-token');
    writeFileSync(file, `${await ci.mint(GOOD)}\n`);
    const r = await runJit(['--id-token-file', file, 'exec', TARGET, '--', 'psql', '-X', '-At', '-c', 'select 1'], {
      home,
      env: ciEnv({}),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('1\n');
  });

  it("asks GitHub Actions for an ID token with the server's audience and exchanges it", async () => {
    const r = await runJit(['exec', TARGET, '--', 'psql', '-X', '-At', '-c', 'select 1'], {
      env: ciEnv({ ACTIONS_ID_TOKEN_REQUEST_URL: ci.actions.url, ACTIONS_ID_TOKEN_REQUEST_TOKEN: ci.actions.requestToken }),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(ci.actions.audiences.at(-1)).toBe(cp.url);
  });

  it("uses a service account's client credentials", async () => {
    const r = await runJit(['exec', TARGET, '--', 'psql', '-X', '-At', '-c', 'select current_user'], {
      env: ciEnv({ JIT_CLIENT_ID: 'nightly', JIT_CLIENT_SECRET: SA_SECRET }),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^jit_[a-z0-9]{20}\n$/);
    const wrong = await runJit(['whoami'], { env: ciEnv({ JIT_CLIENT_ID: 'nightly', JIT_CLIENT_SECRET: 'wrong' }) });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/refused service account nightly \(JIT_CLIENT_ID\): unknown client or wrong secret/);
  });

  it('takes a jit token as it is from JIT_TOKEN, and JIT_JSON=1 gives JSON', async () => {
    const res = await fetch(`${cp.url}/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: await ci.mint(GOOD),
        subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
      }).toString(),
    });
    const { access_token } = (await res.json()) as { access_token: string };
    const who = await runJit(['whoami'], { env: ciEnv({ JIT_TOKEN: access_token, JIT_JSON: '1' }) });
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout)).toMatchObject({ username: 'workload:ci-deploy', groups: ['ci'] });
    const bad = await runJit(['whoami'], { env: ciEnv({ JIT_TOKEN: `${access_token.slice(0, -4)}AAAA` }) });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/refused JIT_TOKEN/);
  });
});
