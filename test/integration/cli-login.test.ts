/**
 * `jit login`, silent refresh and `jit logout` against the real built-in IdP (oidc-provider on a
 * real socket, SQLite storage) with a scripted browser. The server around it serves only what
 * login needs: /.well-known/jit, /oidc and a /v1/whoami that verifies the access token.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliServices } from '#cli/api/services.js';
import { refreshTokens } from '#cli/auth/oidc.js';
import { run } from '#cli/main.js';
import { type BuiltinIdp, createBuiltinIdp } from '#control-plane/identity/builtin-idp.js';
import { hashPassword } from '#control-plane/identity/password.js';
import { createTokenVerifier } from '#control-plane/identity/verifier.js';
import { silentLogger } from '#shared/log.js';
import { createSystemCtx } from '#shared/runtime/ctx.js';
import { completeDeviceLogin } from '../helpers/idp-browser.js';

let dir: string;
let server: http.Server;
let idp: BuiltinIdp;
let sqlite: Database.Database;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'jit-cli-login-'));
  let handle: BuiltinIdp['handle'] = (_q, r) => r.end();
  let verify: (t: string) => Promise<unknown> = async () => ({});
  server = http.createServer(async (req, res) => {
    const url = req.url ?? '/';
    if (url === '/oidc' || url.startsWith('/oidc/') || url.startsWith('/oidc?')) return handle(req, res);
    res.setHeader('content-type', 'application/json');
    if (url === '/.well-known/jit') {
      return res.end(
        JSON.stringify({
          issuer: `${base}/oidc`,
          clientId: 'jit-cli',
          audience: base,
          scopes: ['openid', 'profile', 'email', 'offline_access'],
          apiBase: `${base}/v1`,
          version: '0.1.0',
        }),
      );
    }
    if (url === '/v1/whoami') {
      try {
        const p = (await verify((req.headers.authorization ?? '').replace(/^Bearer /, ''))) as Record<string, unknown>;
        return res.end(JSON.stringify({ ...p, admin: false, expiresAt: new Date(p['expiresAt'] as number).toISOString() }));
      } catch {
        res.statusCode = 401;
        return res.end(JSON.stringify({ error: { code: 'JIT_AUTH_INVALID_TOKEN', message: 'The access token was refused' } }));
      }
    }
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  sqlite = new Database(path.join(dir, 'jit.db'));
  idp = await createBuiltinIdp({
    issuer: `${base}/oidc`,
    users: [{ username: 'alice', passwordHash: await hashPassword('alice-password-1'), email: 'alice@example.com', groups: ['dba'] }],
    // biome-ignore lint/suspicious/noExplicitAny: the same cast the control plane makes
    db: new Kysely<any>({ dialect: new SqliteDialect({ database: sqlite }) }),
    keysFile: path.join(dir, 'idp-keys.json'),
    clientId: 'jit-cli',
    audience: base,
    accessTokenTtl: 600,
    refreshTokenTtl: 3600,
    logger: silentLogger(),
    loginFailureDelayMs: 50,
  });
  handle = idp.handle;
  const verifier = createTokenVerifier({
    issuer: `${base}/oidc`,
    audience: base,
    algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    clockToleranceSeconds: 30,
    groupsClaim: 'groups',
    usernameClaim: 'preferred_username',
  });
  verify = (t) => verifier.verify(t);
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await idp?.close();
  sqlite?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

class Capture extends PassThrough {
  text = '';
  constructor() {
    super();
    this.on('data', (c: Buffer) => {
      this.text += c.toString();
    });
  }
}

function harness() {
  const home = mkdtempSync(path.join(dir, 'home-'));
  const env = { JIT_KEYRING: 'file', XDG_CONFIG_HOME: path.join(home, 'config'), NO_COLOR: '1' };
  const stdout = new Capture();
  const stderr = new Capture();
  const ctx = createSystemCtx({ io: { stdin: new PassThrough(), stdout, stderr }, env, homedir: home, logger: silentLogger() });
  return { ctx, env, stdout, stderr, run: (...args: string[]) => run(['node', 'jit', ...args], ctx) };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('jit login / refresh / logout with the built-in IdP', () => {
  it('without a TTY prints the complete URL and code, logs in, remembers the server, refreshes, logs out', async () => {
    const h = harness();
    const exit = h.run('login', '--server', base);
    await until(() => /code [A-Z0-9-]+ /.test(h.stderr.text) && h.stderr.text.includes('Waiting'));
    const complete = h.stderr.text.match(/^ {2}(http\S+)$/m)?.[1];
    const code = h.stderr.text.match(/shows the code (\S+) /)?.[1];
    expect(complete).toContain('user_code=');
    expect(decodeURIComponent(complete!)).toContain(code!);
    await completeDeviceLogin({ verificationUriComplete: complete!, username: 'alice', password: 'alice-password-1' });
    expect(await exit).toBe(0);
    expect(h.stderr.text.replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT').replaceAll(code!, 'CODE')).toMatchInlineSnapshot(`
        "To log in to http://127.0.0.1:PORT, open this URL in a browser:
          http://127.0.0.1:PORT/oidc/device?user_code=CODE
        and check that it shows the code CODE (or enter it at http://127.0.0.1:PORT/oidc/device).
        Waiting for you to finish in the browser; the code expires in 10 min.
        Logged in to http://127.0.0.1:PORT as alice
        "
      `);

    // The server is remembered for the profile; tokens are in a 0600 file and never printed.
    const config = readFileSync(path.join(h.env.XDG_CONFIG_HOME, 'jit', 'config.yaml'), 'utf8');
    expect(config).toContain(base);
    const s = cliServices(h.ctx, {});
    expect(s.settings.server).toBe(base);
    const tokens = (await s.store.get())!;
    expect(tokens.refreshToken).toBeTruthy();
    expect(tokens.claims?.username).toBe('alice');
    expect(h.stderr.text + h.stdout.text).not.toContain(tokens.accessToken);
    const tokenDir = path.join(h.env.XDG_CONFIG_HOME, 'jit', 'tokens');
    expect(statSync(tokenDir).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(tokenDir).filter((n) => n.endsWith('.json'))) {
      expect(statSync(path.join(tokenDir, f)).mode & 0o777).toBe(0o600);
    }

    // whoami with the real JWT access token.
    expect(await h.run('whoami', '--json')).toBe(0);
    expect(JSON.parse(h.stdout.text)).toMatchObject({ username: 'alice', groups: ['dba'] });

    // Silent refresh: a token with < 60 s left is replaced, and the refresh token rotates.
    await s.store.set({ ...tokens, expiresAt: Date.now() + 10_000 });
    const fresh = await s.auth.getAccessToken();
    expect(fresh).not.toBe(tokens.accessToken);
    const after = (await s.store.get())!;
    expect(after.refreshToken).not.toBe(tokens.refreshToken);

    // Logout revokes at the IdP: the refresh token no longer works there.
    expect(await h.run('logout')).toBe(0);
    expect(h.stderr.text).toContain(`Logged out of ${base}\n`);
    expect(await s.store.get()).toBeNull();
    await expect(refreshTokens(h.ctx, after)).rejects.toMatchObject({ code: 'JIT_AUTH_REFRESH_FAILED' });
  });

  it('a server that is not a jit server → exit 7 with the URL in the message', async () => {
    const h = harness();
    expect(await h.run('login', '--server', `${base}/nothing-here`)).toBe(7);
    expect(h.stderr.text).toContain(`${base}/nothing-here did not answer like a jit server`);
  });

  it('a plain-http non-loopback server is refused before any request (exit 2)', async () => {
    const h = harness();
    expect(await h.run('login', '--server', 'http://jit.example.com')).toBe(2);
    expect(h.stderr.text).toContain('--server: plain http is allowed only for this machine');
  });
});
