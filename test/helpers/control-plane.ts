/**
 * A real control plane for integration tests: config files in a temp dir, the built-in IdP with
 * test users, started in-process with startServer, plus a fast login that plays the device flow
 * through the IdP's real pages and token endpoint.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { hashPassword } from '#control-plane/identity/password.js';
import { type RunningServer, startServer } from '#control-plane/main.js';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { ServerConfig } from '#shared/config/server.js';
import { silentLogger } from '#shared/log.js';
import { completeDeviceLogin } from './idp-browser.js';
import { freePort } from './postgres.js';

export interface TestUser {
  username: string;
  password: string;
  groups: string[];
}

export const USERS: TestUser[] = [
  { username: 'alice', password: 'alice-password-1', groups: ['engineers'] },
  { username: 'bob', password: 'bob-password-1', groups: ['engineers', 'jit-admins'] },
  { username: 'mallory', password: 'mallory-password-1', groups: [] },
];

export interface ServerFixture {
  dir: string;
  url: string;
  port: number;
  agentToken: string;
  serverConfigPath: string;
  server?: RunningServer;
  stop(): Promise<void>;
}

export interface FixtureOptions {
  policy: Record<string, unknown>;
  sessions?: Record<string, unknown>;
  agentName?: string;
  /** Write the config only; the caller starts the server (e.g. as a child process). */
  writeOnly?: boolean;
}

/** Write server config + policy in a fresh temp dir and (unless writeOnly) start the server. */
export async function startControlPlane(opts: FixtureOptions): Promise<ServerFixture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-cp-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const agentToken = `jat_${randomBytes(24).toString('base64url')}`;
  const users = await Promise.all(
    USERS.map(async (u) => ({
      username: u.username,
      passwordHash: await hashPassword(u.password),
      email: `${u.username}@example.com`,
      groups: u.groups,
    })),
  );
  writeFileSync(path.join(dir, 'policy.yaml'), stringify(opts.policy));
  const serverConfigPath = path.join(dir, 'server.yaml');
  writeFileSync(
    serverConfigPath,
    stringify({
      listen: `127.0.0.1:${port}`,
      dataDir: './data',
      identity: { builtin: { users } },
      admins: { groups: ['jit-admins'] },
      agents: [{ name: opts.agentName ?? 'local', tokenHash: `sha256:${createHash('sha256').update(agentToken).digest('hex')}` }],
      sessions: opts.sessions ?? { heartbeatTimeout: '5s', heartbeatInterval: '1s' },
      policy: 'policy.yaml',
    }),
  );
  const fixture: ServerFixture = {
    dir,
    url: `http://127.0.0.1:${port}`,
    port,
    agentToken,
    serverConfigPath,
    async stop() {
      await fixture.server?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (!opts.writeOnly) {
    fixture.server = await startServer({
      config: loadYamlConfigFile(serverConfigPath, ServerConfig),
      configDir: dir,
      logger: silentLogger(),
    });
  }
  return fixture;
}

export interface Tokens {
  accessToken: string;
  refreshToken?: string;
}

/**
 * Log in through the built-in IdP the way the CLI does (device authorization grant with the
 * resource indicator), the user's part played through the real pages; polls without the 5 s wait.
 */
export async function loginAs(serverUrl: string, username: string): Promise<Tokens> {
  const user = USERS.find((u) => u.username === username);
  if (!user) throw new Error(`no test user ${username}`);
  const disco = (await (await fetch(`${serverUrl}/.well-known/jit`)).json()) as {
    issuer: string;
    clientId: string;
    audience: string;
    scopes: string[];
  };
  const form = (o: Record<string, string>) => new URLSearchParams(o).toString();
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  const auth = (await (
    await fetch(`${disco.issuer}/device/auth`, {
      method: 'POST',
      headers,
      body: form({ client_id: disco.clientId, scope: disco.scopes.join(' '), resource: disco.audience }),
    })
  ).json()) as { device_code: string; verification_uri_complete: string };
  await completeDeviceLogin({
    verificationUriComplete: auth.verification_uri_complete,
    username: user.username,
    password: user.password,
  });
  const res = await fetch(`${disco.issuer}/token`, {
    method: 'POST',
    headers,
    body: form({
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: auth.device_code,
      client_id: disco.clientId,
      resource: disco.audience,
    }),
  });
  const body = (await res.json()) as { access_token?: string; refresh_token?: string; error?: string };
  if (!body.access_token) throw new Error(`login of ${username} failed: ${body.error}`);
  return { accessToken: body.access_token, refreshToken: body.refresh_token };
}

/** Call the REST API as a user. */
export async function api(
  serverUrl: string,
  token: string | undefined,
  method: string,
  pathname: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${serverUrl}${pathname}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
