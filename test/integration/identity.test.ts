/**
 * The built-in IdP and the token verifier, end to end: a real oidc-provider on a real socket,
 * SQLite storage in a temp dir, openid-client driving the device flow exactly as `jit login`
 * does, and a scripted browser through the IdP's pages.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { type JWTPayload, SignJWT, importJWK } from 'jose';
import { Kysely, SqliteDialect } from 'kysely';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BuiltinIdp, createBuiltinIdp } from '#control-plane/identity/builtin-idp.js';
import { hashPassword } from '#control-plane/identity/password.js';
import { createTokenVerifier, MAX_TOKEN_BYTES } from '#control-plane/identity/verifier.js';
import { silentLogger } from '#shared/log.js';
import { completeDeviceLogin } from '../helpers/idp-browser.js';

const SCOPE = 'openid profile email offline_access';
const DEVICE_UA = 'jit-test-device/7.7 <b>"x"</b>';
const DEVICE_UA_HTML = 'jit-test-device/7.7 &lt;b&gt;&quot;x&quot;&lt;/b&gt;';

let dir: string;
let server: http.Server;
let handler: BuiltinIdp['handle'];
let idp: BuiltinIdp;
let sqlite: Database.Database;
let issuer: string;
let audience: string;
let keysFile: string;
const auditEvents: { type: string; actor?: string; outcome: string; data?: Record<string, unknown> }[] = [];

async function startIdp(extra: Partial<Parameters<typeof createBuiltinIdp>[0]> = {}): Promise<BuiltinIdp> {
  sqlite = new Database(path.join(dir, 'jit.db'));
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: sqlite }) });
  return createBuiltinIdp({
    issuer,
    users: [
      {
        username: 'alice',
        passwordHash: await hashPassword('alice-password-1'),
        email: 'alice@example.com',
        name: 'Alice <Admin>',
        groups: ['dba', 'dev'],
      },
      { username: 'bob', passwordHash: await hashPassword('bob-password-1'), groups: [] },
    ],
    // biome-ignore lint/suspicious/noExplicitAny: the same cast the control plane makes
    db: db as Kysely<any>,
    keysFile,
    clientId: 'jit-cli',
    audience,
    accessTokenTtl: 600,
    refreshTokenTtl: 3600,
    logger: silentLogger(),
    audit: (e) => auditEvents.push(e),
    loginFailureDelayMs: 50,
    ...extra,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'jit-identity-'));
  keysFile = path.join(dir, 'idp-keys.json');
  server = http.createServer((req, res) => {
    if (req.url === '/oidc' || req.url?.startsWith('/oidc/') || req.url?.startsWith('/oidc?')) handler(req, res);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  audience = `http://127.0.0.1:${port}`;
  issuer = `${audience}/oidc`;
  idp = await startIdp();
  handler = idp.handle;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await idp?.close();
  sqlite?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The CLI's side: discovery as `jit login` does it, with a device that sends its own UA. */
async function cliConfig(): Promise<client.Configuration> {
  const devFetch: client.CustomFetch = (url, init) =>
    fetch(url, {
      ...init,
      headers: { ...(init.headers as Record<string, string>), 'user-agent': DEVICE_UA, 'x-forwarded-for': '6.6.6.6' },
    });
  return client.discovery(new URL(issuer), 'jit-cli', undefined, client.None(), {
    execute: [client.allowInsecureRequests],
    [client.customFetch]: devFetch,
  });
}

async function login(username: string, password: string, onConfirmPage?: (html: string) => void) {
  const config = await cliConfig();
  const device = await client.initiateDeviceAuthorization(config, { scope: SCOPE, resource: audience });
  await completeDeviceLogin({ verificationUriComplete: device.verification_uri_complete!, username, password, onConfirmPage });
  const tokens = await client.pollDeviceAuthorizationGrant(config, device);
  return { config, device, tokens };
}

function verifier(overrides: Partial<Parameters<typeof createTokenVerifier>[0]> = {}) {
  return createTokenVerifier({
    issuer,
    audience,
    algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    clockToleranceSeconds: 30,
    groupsClaim: 'groups',
    usernameClaim: 'preferred_username',
    ...overrides,
  });
}

function decode(jwt: string): { header: Record<string, unknown>; payload: JWTPayload } {
  const [h, p] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p!, 'base64url').toString()),
  };
}

/** Sign with the IdP's own private key (from keysFile), so only the claim under test is wrong. */
async function forge(payload: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  const keys = JSON.parse(readFileSync(keysFile, 'utf8')) as { jwks: { keys: (Record<string, unknown> & { kid: string })[] } };
  const jwk = keys.jwks.keys[0]!;
  const key = await importJWK(jwk as Parameters<typeof importJWK>[0], 'RS256');
  return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: jwk.kid, ...header }).sign(key);
}

function realKid(): string {
  return (JSON.parse(readFileSync(keysFile, 'utf8')) as { jwks: { keys: { kid: string }[] } }).jwks.keys[0]!.kid;
}

function validClaims(): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return { iss: issuer, aud: audience, sub: 'alice', preferred_username: 'alice', groups: ['dba'], iat: now, exp: now + 300 };
}

describe('built-in IdP: device login', () => {
  let first: Awaited<ReturnType<typeof login>>;
  let confirmHtml = '';

  beforeAll(async () => {
    first = await login('alice', 'alice-password-1', (html) => {
      confirmHtml = html;
    });
  });

  it('serves discovery, jwks and the device endpoints under the issuer path', async () => {
    const meta = first.config.serverMetadata();
    expect(meta.issuer).toBe(issuer);
    for (const k of ['jwks_uri', 'token_endpoint', 'device_authorization_endpoint', 'revocation_endpoint'] as const) {
      expect(meta[k], k).toMatch(new RegExp(`^${issuer}/`));
    }
    expect(first.device.verification_uri).toBe(`${issuer}/device`);
    expect(meta.grant_types_supported).toContain('urn:ietf:params:oauth:grant-type:device_code');
  });

  it('issues a JWT access token for the audience that the verifier accepts, with groups and email', async () => {
    const at = first.tokens.access_token;
    const { header, payload } = decode(at);
    expect(header.typ).toBe('at+jwt');
    expect(header.alg).toBe('RS256');
    expect(payload).toMatchObject({
      iss: issuer,
      aud: audience,
      sub: 'alice',
      preferred_username: 'alice',
      email: 'alice@example.com',
      groups: ['dba', 'dev'],
    });
    expect(payload.exp! - payload.iat!).toBe(600);
    const principal = await verifier().verify(at);
    expect(principal).toEqual({
      subject: 'alice',
      username: 'alice',
      email: 'alice@example.com',
      groups: ['dba', 'dev'],
      issuer,
      expiresAt: payload.exp! * 1000,
    });
    expect(first.tokens.refresh_token).toBeTruthy();
  });

  it('puts the profile claims and groups in the ID token', () => {
    const claims = first.tokens.claims()!;
    expect(claims).toMatchObject({
      sub: 'alice',
      preferred_username: 'alice',
      email: 'alice@example.com',
      name: 'Alice <Admin>',
      groups: ['dba', 'dev'],
    });
  });

  it('shows the client, the code and the requesting device on the confirm page (RFC 8628 §5)', () => {
    expect(confirmHtml).toContain('jit CLI');
    expect(confirmHtml).toContain('jit-cli');
    expect(confirmHtml).toMatch(/<dd class="device-ip">(::ffff:)?127\.0\.0\.1<\/dd>/);
    expect(confirmHtml).toContain(`<dd class="device-ua">${DEVICE_UA_HTML}</dd>`);
    expect(confirmHtml).not.toContain('<b>');
    // The device's own X-Forwarded-For is not trusted.
    expect(confirmHtml).not.toContain('6.6.6.6');
    expect(confirmHtml).toContain(first.device.user_code);
    // No external assets, nothing unescaped from the request.
    expect(confirmHtml).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)/);
  });

  it('audits the successful login with the username', () => {
    expect(auditEvents).toContainEqual(expect.objectContaining({ type: 'login.succeeded', actor: 'alice', outcome: 'success' }));
    expect(JSON.stringify(auditEvents)).not.toContain('alice-password-1');
  });

  it('refreshes with rotation; reusing the old refresh token fails and revokes the login', async () => {
    const { config, tokens } = await login('alice', 'alice-password-1');
    const old = tokens.refresh_token!;
    const refreshed = await client.refreshTokenGrant(config, old, { resource: audience });
    expect(refreshed.refresh_token).toBeTruthy();
    expect(refreshed.refresh_token).not.toBe(old);
    const p = await verifier().verify(refreshed.access_token);
    expect(p.groups).toEqual(['dba', 'dev']);

    await expect(client.refreshTokenGrant(config, old, { resource: audience })).rejects.toMatchObject({ error: 'invalid_grant' });
    // Reuse of a rotated token means it leaked: the whole grant is gone, the new token too.
    await expect(client.refreshTokenGrant(config, refreshed.refresh_token!, { resource: audience })).rejects.toMatchObject({
      error: 'invalid_grant',
    });
  });

  it('refresh without a resource parameter still yields an audience-bound JWT', async () => {
    const refreshed = await client.refreshTokenGrant(first.config, first.tokens.refresh_token!);
    expect(decode(refreshed.access_token).payload.aud).toBe(audience);
    first = { ...first, tokens: refreshed };
  });

  it('revocation makes the refresh token useless', async () => {
    const { config, tokens } = await login('bob', 'bob-password-1');
    const p = await verifier().verify(tokens.access_token);
    expect(p).toMatchObject({ subject: 'bob', username: 'bob', groups: [] });
    expect(p.email).toBeUndefined();
    await client.tokenRevocation(config, tokens.refresh_token!, { token_type_hint: 'refresh_token' });
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!, { resource: audience })).rejects.toMatchObject({
      error: 'invalid_grant',
    });
  });

  it('a wrong password fails in the browser, is audited, and gives the device no token', async () => {
    const config = await cliConfig();
    const device = await client.initiateDeviceAuthorization(config, { scope: SCOPE, resource: audience });
    await expect(
      completeDeviceLogin({ verificationUriComplete: device.verification_uri_complete!, username: 'alice', password: 'wrong-password' }),
    ).rejects.toThrow(/login failed for alice: .*Wrong username or password/);
    await expect(
      client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:device_code', { device_code: device.device_code }),
    ).rejects.toMatchObject({ error: 'authorization_pending' });
    expect(auditEvents).toContainEqual(expect.objectContaining({ type: 'login.failed', actor: 'alice', outcome: 'failure' }));
    expect(JSON.stringify(auditEvents)).not.toContain('wrong-password');
    // Unknown users fail the same way.
    const d2 = await client.initiateDeviceAuthorization(config, { scope: SCOPE, resource: audience });
    await expect(
      completeDeviceLogin({ verificationUriComplete: d2.verification_uri_complete!, username: 'mallory', password: 'x' }),
    ).rejects.toThrow(/login failed/);
  });

  it('serves its own pages: code entry, expired interaction, unknown paths', async () => {
    const entry = await fetch(`${issuer}/device`);
    expect(entry.status).toBe(200);
    const html = await entry.text();
    expect(html).toContain('Enter the code shown by');
    expect(html).toContain('id="op.deviceInputForm"');
    expect(html).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)/); // no external assets (fonts, CSS)
    expect(entry.headers.get('content-type')).toMatch(/text\/html/);

    const wrong = await fetch(`${issuer}/device`, {
      method: 'POST',
      body: 'user_code=BCDF-GHJK&xsrf=nope',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(wrong.status).toBeGreaterThanOrEqual(400);

    const stale = await fetch(`${issuer}/interaction/abcdef123456`);
    expect(stale.status).toBe(400);
    expect(await stale.text()).toContain('This sign-in has expired');

    expect((await fetch(`${issuer}/interaction/abcdef123456/login`)).status).toBe(405);
    expect((await fetch(`${issuer}/nope`)).status).toBe(404);
  });

  it('limits code entries and password attempts per source: 429 over the limit, one aggregated audit event', async () => {
    const limited = await startIdp({ attemptsPerSource: { max: 3, windowMs: 60_000 } });
    const srv = http.createServer((req, res) => limited.handle(req, res));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      // the IdP pins Host to its issuer, so the path is all that matters here
      const base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/oidc`;
      const guess = () =>
        fetch(`${base}/device`, {
          method: 'POST',
          body: `user_code=BCDF-GHJK&xsrf=nope`,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        });
      const before = auditEvents.length;
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await guess()).status);
      expect(statuses.slice(0, 3).every((s) => s !== 429)).toBe(true);
      expect(statuses.slice(3)).toEqual([429, 429, 429]);
      const limitedEvents = auditEvents.slice(before).filter((e) => e.type === 'login.rate_limited');
      expect(limitedEvents).toHaveLength(1);
      expect(limitedEvents[0]!.data).toMatchObject({ what: 'device code entries', limit: 3 });
      // password attempts are counted apart
      const pw = await fetch(`${base}/interaction/abcdef123456/login`, { method: 'POST', body: 'username=bob&password=x' });
      expect(pw.status).not.toBe(429);
    } finally {
      srv.close();
      await limited.close();
    }
  });

  it('keeps its keys in a 0600 file', () => {
    expect(statSync(keysFile).mode & 0o777).toBe(0o600);
  });

  it('tokens survive an IdP restart with the same database and keys file', async () => {
    const before = first.tokens.refresh_token!;
    await idp.close();
    sqlite.close();
    idp = await startIdp();
    handler = idp.handle;
    // Access tokens issued before the restart still verify against the published keys.
    await expect(verifier().verify(first.tokens.access_token)).resolves.toMatchObject({ username: 'alice' });
    const config = await cliConfig();
    const refreshed = await client.refreshTokenGrant(config, before, { resource: audience });
    // A fresh verifier (empty JWKS cache) accepts it: same signing key after restart.
    expect(await verifier().verify(refreshed.access_token)).toMatchObject({ username: 'alice', groups: ['dba', 'dev'] });
  });
});

describe('token verifier refuses', () => {
  it('a token that expired (beyond the clock tolerance)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const t = await forge({ ...validClaims(), iat: now - 1000, exp: now - 120 });
    await expect(verifier().verify(t)).rejects.toMatchObject({ code: 'JIT_AUTH_EXPIRED' });
    // Within tolerance it is still accepted: the check above failed for the expiry, nothing else.
    const t2 = await forge({ ...validClaims(), iat: now - 1000, exp: now - 5 });
    await expect(verifier().verify(t2)).resolves.toMatchObject({ username: 'alice' });
  });

  it('a token issued to another client of the same IdP (azp or client_id), while jit’s own passes', async () => {
    const v = verifier({ clientId: 'jit-cli' });
    for (const claim of ['azp', 'client_id']) {
      const t = await forge({ ...validClaims(), [claim]: 'some-other-app' });
      await expect(v.verify(t), claim).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN', detail: `${claim} names another client` });
    }
    await expect(v.verify(await forge({ ...validClaims(), azp: 'jit-cli', client_id: 'jit-cli' }))).resolves.toMatchObject({
      username: 'alice',
    });
  });

  it('an issue time in the future beyond the clock tolerance, and lifetimes no token has', async () => {
    const now = Math.floor(Date.now() / 1000);
    const v = verifier();
    await expect(v.verify(await forge({ ...validClaims(), iat: now + 600 }))).rejects.toMatchObject({ detail: 'iat is in the future' });
    await expect(v.verify(await forge({ ...validClaims(), iat: now + 10 }))).resolves.toMatchObject({ username: 'alice' });
    await expect(v.verify(await forge({ ...validClaims(), exp: now + 365 * 86400 }))).rejects.toMatchObject({
      detail: 'exp is further ahead than any token lives',
    });
    await expect(v.verify(await forge({ ...validClaims(), iat: now - 3 * 86400, exp: now + 300 }))).rejects.toMatchObject({
      detail: 'the token claims a lifetime longer than any token has',
    });
  });

  it('a token signed by another key that claims the same kid', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const t = await new SignJWT(validClaims()).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: realKid() }).sign(privateKey);
    await expect(verifier().verify(t)).rejects.toMatchObject({
      code: 'JIT_AUTH_INVALID_TOKEN',
      detail: expect.stringMatching(/signature/i),
    });
  });

  it('a token for another audience', async () => {
    const t = await forge({ ...validClaims(), aud: 'https://other.example' });
    await expect(verifier().verify(t)).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN', detail: expect.stringMatching(/aud/) });
  });

  it('a token from another issuer', async () => {
    const t = await forge({ ...validClaims(), iss: `${audience}/evil` });
    await expect(verifier().verify(t)).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN', detail: expect.stringMatching(/iss/) });
  });

  it('an IdP whose discovery document names another issuer', async () => {
    // Same server, but reached as "localhost": the document says 127.0.0.1, so no match.
    const v = verifier({ issuer: issuer.replace('127.0.0.1', 'localhost') });
    const t = await forge({ ...validClaims(), iss: issuer.replace('127.0.0.1', 'localhost') });
    await expect(v.verify(t)).rejects.toMatchObject({
      code: 'JIT_AUTH_INVALID_TOKEN',
      detail: expect.stringMatching(/discovery document names issuer/),
    });
  });

  it('alg none', async () => {
    const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid: realKid() })).toString('base64url');
    const p = Buffer.from(JSON.stringify(validClaims())).toString('base64url');
    await expect(verifier().verify(`${h}.${p}.`)).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN' });
    await expect(verifier({ algorithms: ['none', 'RS256'] }).verify(`${h}.${p}.AAAA`)).rejects.toMatchObject({
      code: 'JIT_AUTH_INVALID_TOKEN',
      detail: expect.stringMatching(/ALG_NOT_ALLOWED|alg/i),
    });
  });

  it('HS256 signed with the public key as the secret, even if HS256 is configured', async () => {
    const keys = JSON.parse(readFileSync(keysFile, 'utf8')) as { jwks: { keys: Record<string, unknown>[] } };
    const pub = createPublicKey(createPrivateKey({ key: keys.jwks.keys[0] as never, format: 'jwk' }));
    for (const secret of [pub.export({ type: 'spki', format: 'pem' }) as string, JSON.stringify(pub.export({ format: 'jwk' }))]) {
      const t = await new SignJWT(validClaims())
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: realKid() })
        .sign(new TextEncoder().encode(secret));
      for (const v of [verifier(), verifier({ algorithms: ['HS256', 'RS256'] })]) {
        await expect(v.verify(t)).rejects.toMatchObject({
          code: 'JIT_AUTH_INVALID_TOKEN',
          detail: expect.stringMatching(/ALG_NOT_ALLOWED/),
        });
      }
    }
  });

  it('a configuration that allows only symmetric algorithms or none', () => {
    expect(() => verifier({ algorithms: ['HS256', 'none'] })).toThrow(expect.objectContaining({ code: 'JIT_CONFIG_INVALID' }));
  });

  it('an ID token or other JWT type', async () => {
    const t = await forge(validClaims(), { typ: 'id+jwt' });
    await expect(verifier().verify(t)).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN', detail: expect.stringMatching(/type/) });
  });

  it('garbage', async () => {
    for (const g of ['', 'garbage', 'a.b.c', 'a.b', '....', '{"alg":"none"}', 'eyJ.eyJ.x']) {
      await expect(verifier().verify(g), g).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN' });
    }
  });

  it('an oversized token before parsing it, even if correctly signed', async () => {
    const t = await forge({ ...validClaims(), pad: 'x'.repeat(MAX_TOKEN_BYTES) });
    await expect(verifier().verify(t)).rejects.toMatchObject({
      code: 'JIT_AUTH_INVALID_TOKEN',
      detail: expect.stringMatching(/larger than/),
    });
  });

  it('accepts a missing groups claim as no groups and falls back to sub for the username', async () => {
    const { preferred_username: _u, groups: _g, ...rest } = validClaims();
    const p = await verifier().verify(await forge(rest));
    expect(p).toMatchObject({ subject: 'alice', username: 'alice', groups: [] });
  });
});
