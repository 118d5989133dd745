/**
 * Machine identity at the control plane, over real sockets: a CI platform's ID token (from a real
 * issuer with discovery and JWKS) is exchanged for a jit token at POST /v1/token (RFC 8693), a
 * service account uses client credentials, and the API accepts those tokens like users' — and
 * refuses every token that should not pass, saying why.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT } from 'jose';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '#control-plane/identity/password.js';
import { startServer } from '#control-plane/main.js';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { ServerConfig } from '#shared/config/server.js';
import { silentLogger } from '#shared/log.js';
import { api, loginAs, type ServerFixture, startControlPlane } from '../helpers/control-plane.js';
import { startTestIssuer, type TestIssuer } from './workload-issuer.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const SA_SECRET = 'nightly-secret-0123456789';

let cp: ServerFixture;
let ci: TestIssuer;

async function token(body: Record<string, string>, opts: { json?: boolean; basic?: [string, string] } = {}) {
  const headers: Record<string, string> = {
    'content-type': opts.json ? 'application/json' : 'application/x-www-form-urlencoded',
  };
  if (opts.basic)
    headers['authorization'] =
      `Basic ${Buffer.from(`${encodeURIComponent(opts.basic[0])}:${encodeURIComponent(opts.basic[1])}`).toString('base64')}`;
  const res = await fetch(`${cp.url}/v1/token`, {
    method: 'POST',
    headers,
    body: opts.json ? JSON.stringify(body) : new URLSearchParams(body).toString(),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, any> };
}

const exchange = (subjectToken: string, type = ID_TOKEN) =>
  token({ grant_type: EXCHANGE, subject_token: subjectToken, subject_token_type: type });

beforeAll(async () => {
  cp = await startControlPlane({
    writeOnly: true,
    policy: {
      targets: [{ name: 'wl-db', type: 'postgres', agent: 'local', database: 'postgres' }],
      access: [
        { name: 'deployers', targets: ['wl-db'], users: ['workload:ci-deploy'] },
        { name: 'ci-group', targets: ['wl-db'], groups: ['nightly-jobs'] },
      ],
    },
  });
  ci = await startTestIssuer({ audience: cp.url });
  const config = parse(readFileSync(cp.serverConfigPath, 'utf8')) as Record<string, unknown>;
  config['workloads'] = [
    {
      name: 'ci-deploy',
      issuer: ci.url,
      audience: cp.url,
      subject: 'repo:acme/app:*',
      claims: { repository: 'acme/app', ref: 'refs/heads/main' },
      groups: ['ci'],
    },
    { name: 'ci-any-branch', issuer: ci.url, audience: 'other-aud', claims: { repository: 'acme/tools', ref: 'refs/heads/*' } },
  ];
  config['serviceAccounts'] = [{ name: 'nightly', secretHash: await hashPassword(SA_SECRET), groups: ['nightly-jobs'] }];
  writeFileSync(cp.serverConfigPath, stringify(config));
  cp.server = await startServer({
    config: loadYamlConfigFile(cp.serverConfigPath, ServerConfig),
    configDir: cp.dir,
    logger: silentLogger(),
  });
}, 60_000);

afterAll(async () => {
  await cp?.stop();
  await ci?.close();
});

const good = { repository: 'acme/app', ref: 'refs/heads/main' };

describe('token exchange (RFC 8693)', () => {
  it('exchanges a matching ID token for a short-lived jit token that the API accepts as workload:<name>', async () => {
    const r = await exchange(await ci.mint(good));
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.body).toMatchObject({
      token_type: 'Bearer',
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    });
    expect(r.body['expires_in']).toBeGreaterThan(0);
    expect(r.body['expires_in']).toBeLessThanOrEqual(900);
    const [, payload] = (r.body['access_token'] as string).split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    expect(claims).toMatchObject({
      iss: cp.url,
      aud: cp.url,
      sub: 'workload:ci-deploy',
      preferred_username: 'workload:ci-deploy',
      groups: ['ci'],
    });

    const who = await api(cp.url, r.body['access_token'], 'GET', '/v1/whoami');
    expect(who.status).toBe(200);
    expect(who.body).toMatchObject({ username: 'workload:ci-deploy', groups: ['ci'], admin: false, issuer: cp.url });
    const targets = await api(cp.url, r.body['access_token'], 'GET', '/v1/targets');
    expect(targets.body.targets.map((t: { name: string }) => t.name)).toEqual(['wl-db']);
    const session = await api(cp.url, r.body['access_token'], 'POST', '/v1/sessions', { target: 'wl-db', reason: 'deploy' });
    expect(session.status, JSON.stringify(session.body)).toBe(201);
    expect(session.body.session).toMatchObject({ user: 'workload:ci-deploy', target: 'wl-db' });
    const ended = await api(cp.url, r.body['access_token'], 'DELETE', `/v1/sessions/${session.body.session.id}`);
    expect(ended.status).toBe(200);
  });

  it('takes a JSON body and the jwt token type too; a trailing * matches a prefix', async () => {
    const r = await token(
      {
        grant_type: EXCHANGE,
        subject_token: await ci.mint({ aud: 'other-aud', repository: 'acme/tools', ref: 'refs/heads/feature-x' }),
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      },
      { json: true },
    );
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const who = await api(cp.url, r.body['access_token'], 'GET', '/v1/whoami');
    expect(who.body.username).toBe('workload:ci-any-branch');
    // Policy names neither this workload nor its groups: to it the target does not exist.
    const session = await api(cp.url, r.body['access_token'], 'POST', '/v1/sessions', { target: 'wl-db' });
    expect(session.status).toBe(404);
    expect(session.body.error.code).toBe('JIT_TARGET_NOT_FOUND');
  });

  const refusals: [string, () => Promise<string>, RegExp][] = [
    ['the wrong audience', () => ci.mint({ ...good, aud: 'https://someone-else.example' }), /audience does not match/],
    ['the wrong repository', () => ci.mint({ ...good, repository: 'evil/app' }), /repository claim does not match/],
    ['another branch', () => ci.mint({ ...good, ref: 'refs/heads/dev' }), /ref claim does not match/],
    [
      'a repository that only starts like the pinned one',
      () => ci.mint({ ...good, repository: 'acme/app-fork' }),
      /repository claim does not match/,
    ],
    ['a missing claim', () => ci.mint({ ref: 'refs/heads/main' }), /repository claim does not match/],
    ['the wrong subject', () => ci.mint({ ...good, sub: 'repo:evil/app:ref:refs/heads/main' }), /sub claim does not match/],
    [
      'an expired token',
      () => ci.mint({ ...good, iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 }),
      /expired/,
    ],
    ['a token not valid yet', () => ci.mint({ ...good, nbf: Math.floor(Date.now() / 1000) + 3600 }), /not valid yet/],
    ['a token signed by another key', () => ci.mint(good, { key: 'other' }), /signature/],
    ['an untrusted issuer', () => ci.mint({ ...good, iss: 'https://issuer.example' }), /issuer is not trusted/],
    [
      'an HS256 token keyed with the public JWKS text',
      () =>
        new SignJWT({ iss: ci.url, aud: cp.url, sub: 'repo:acme/app:x', ...good })
          .setProtectedHeader({ alg: 'HS256', kid: 'test-1' })
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(new TextEncoder().encode('a-guessable-shared-secret-of-32-bytes')),
      /algorithm is not allowed/,
    ],
    [
      'an unsigned (alg none) token',
      async () => {
        const b = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        const now = Math.floor(Date.now() / 1000);
        return `${b({ alg: 'none' })}.${b({ iss: ci.url, aud: cp.url, sub: 'repo:acme/app:x', iat: now, exp: now + 60, ...good })}.x`;
      },
      /algorithm is not allowed|cannot be verified|signature/,
    ],
  ];
  for (const [what, make, reason] of refusals) {
    it(`refuses ${what}, saying why`, async () => {
      const r = await exchange(await make());
      expect(r.status).toBe(400);
      expect(r.body['error']).toBe('invalid_grant');
      expect(r.body['error_description']).toMatch(reason);
      expect(r.body['access_token']).toBeUndefined();
    });
  }

  it('refuses malformed requests and unknown grants', async () => {
    expect((await exchange('not-a-jwt')).body['error']).toBe('invalid_request');
    expect((await exchange(await ci.mint(good), 'urn:ietf:params:oauth:token-type:access_token')).body['error']).toBe(
      'unsupported_token_type',
    );
    expect((await token({ grant_type: 'password', username: 'a', password: 'b' })).body['error']).toBe('unsupported_grant_type');
    expect((await token({ grant_type: EXCHANGE })).body['error']).toBe('invalid_request');
  });

  it('audits exchanges and refusals without the tokens', async () => {
    const bob = await loginAs(cp.url, 'bob');
    const events = (await api(cp.url, bob.accessToken, 'GET', '/v1/audit?type=workload.&limit=1000')).body.events as {
      type: string;
      actor?: string;
      data: Record<string, unknown>;
    }[];
    const exchanged = events.find((e) => e.type === 'workload.exchanged' && e.actor === 'workload:ci-deploy');
    expect(exchanged?.data).toMatchObject({
      method: 'token-exchange',
      workload: 'ci-deploy',
      issuer: ci.url,
      subject: 'repo:acme/app:ref:refs/heads/main',
    });
    const refused = events.filter((e) => e.type === 'workload.refused');
    expect(refused.map((e) => e.data['reason'])).toEqual(
      expect.arrayContaining(['its audience does not match', 'its repository claim does not match']),
    );
    expect(JSON.stringify(events)).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
  });
});

describe('client credentials (service accounts)', () => {
  it('gives a service account a jit token for HTTP Basic credentials; policy matches its groups', async () => {
    const r = await token({ grant_type: 'client_credentials' }, { basic: ['nightly', SA_SECRET] });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const who = await api(cp.url, r.body['access_token'], 'GET', '/v1/whoami');
    expect(who.body).toMatchObject({ username: 'service:nightly', groups: ['nightly-jobs'] });
    const session = await api(cp.url, r.body['access_token'], 'POST', '/v1/sessions', { target: 'wl-db' });
    expect(session.status).toBe(201);
    await api(cp.url, r.body['access_token'], 'DELETE', `/v1/sessions/${session.body.session.id}`);
  });

  it('refuses a wrong secret and an unknown client alike (401 invalid_client)', async () => {
    for (const basic of [
      ['nightly', 'wrong-secret'],
      ['nobody', SA_SECRET],
    ] as [string, string][]) {
      const r = await token({ grant_type: 'client_credentials' }, { basic });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Basic/);
      expect(r.body).toEqual({ error: 'invalid_client', error_description: 'unknown client or wrong secret' });
    }
  });
});

describe('the API with machine tokens', () => {
  it('still accepts user tokens from the built-in IdP', async () => {
    const alice = await loginAs(cp.url, 'alice');
    expect((await api(cp.url, alice.accessToken, 'GET', '/v1/whoami')).body.username).toBe('alice');
  });

  it('refuses a token that claims this server as issuer but is signed by another key', async () => {
    const { generateKeyPair } = await import('jose');
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await new SignJWT({ preferred_username: 'workload:ci-deploy', groups: ['jit-admins'] })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt' })
      .setIssuer(cp.url)
      .setAudience(cp.url)
      .setSubject('workload:ci-deploy')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    const r = await api(cp.url, forged, 'GET', '/v1/whoami');
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('JIT_AUTH_INVALID_TOKEN');
  });

  it('keeps the signing key in the data dir, owner-only', async () => {
    const { statSync } = await import('node:fs');
    expect(statSync(path.join(cp.dir, 'data', 'machine-key.json')).mode & 0o077).toBe(0);
  });
});
