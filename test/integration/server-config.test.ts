/**
 * How the control plane listens and whom it trusts: TLS with its own certificate, plain HTTP only
 * on loopback, and an external OIDC issuer (discovery + JWKS) instead of the built-in IdP.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { startServer } from '#control-plane/main.js';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { ServerConfig } from '#shared/config/server.js';
import { JitError } from '#shared/errors/jit-error.js';
import { silentLogger } from '#shared/log.js';
import { api, loginAs, type ServerFixture, startControlPlane } from '../helpers/control-plane.js';

const POLICY = {
  targets: [{ name: 'app-db', type: 'postgres', agent: 'local' }],
  access: [{ name: 'eng', targets: ['app-db'], groups: ['engineers'] }],
};
const fixtures: ServerFixture[] = [];
afterAll(async () => {
  for (const f of fixtures) await f.stop();
});

function rewriteConfig(f: ServerFixture, change: (c: Record<string, unknown>) => void): void {
  const c = parse(readFileSync(f.serverConfigPath, 'utf8')) as Record<string, unknown>;
  change(c);
  writeFileSync(f.serverConfigPath, stringify(c));
}

function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('listening', () => {
  it('serves HTTPS with its certificate, with the built-in issuer under the https URL', async () => {
    const f = await startControlPlane({ policy: POLICY, writeOnly: true });
    fixtures.push(f);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        path.join(f.dir, 'key.pem'),
        '-out',
        path.join(f.dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    rewriteConfig(f, (c) => {
      c['tls'] = { cert: 'cert.pem', key: 'key.pem' };
    });
    f.server = await startServer({
      config: loadYamlConfigFile(f.serverConfigPath, ServerConfig),
      configDir: f.dir,
      logger: silentLogger(),
    });
    expect(f.server.url).toBe(`https://127.0.0.1:${f.port}`);
    const ca = readFileSync(path.join(f.dir, 'cert.pem'), 'utf8');
    const health = await httpsGet(`${f.server.url}/healthz`, ca);
    expect(health.status).toBe(200);
    const disco = JSON.parse((await httpsGet(`${f.server.url}/.well-known/jit`, ca)).body);
    expect(disco.issuer).toBe(`https://127.0.0.1:${f.port}/oidc`);
    // Without trusting the certificate, a client refuses the server.
    await expect(httpsGet(`${f.server.url}/healthz`, '')).rejects.toThrow();
  });

  it('refuses plain HTTP on a non-loopback address', async () => {
    const f = await startControlPlane({ policy: POLICY, writeOnly: true });
    fixtures.push(f);
    rewriteConfig(f, (c) => {
      c['listen'] = `0.0.0.0:${f.port}`;
    });
    const err = await startServer({
      config: loadYamlConfigFile(f.serverConfigPath, ServerConfig),
      configDir: f.dir,
      logger: silentLogger(),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(JitError);
    expect((err as JitError).code).toBe('JIT_CONFIG_INVALID');
    expect((err as JitError).message).toMatch(/plain HTTP is allowed only on loopback/);
  });

  it('names the file, line and field of a bad setting', async () => {
    const f = await startControlPlane({ policy: POLICY, writeOnly: true });
    fixtures.push(f);
    rewriteConfig(f, (c) => {
      c['sessions'] = { heartbeatTimeout: 'soon' };
    });
    expect(() => loadYamlConfigFile(f.serverConfigPath, ServerConfig)).toThrow(
      /server\.yaml:\d+: sessions\.heartbeatTimeout: not a duration/,
    );
  });
});

describe('an external OIDC issuer', () => {
  it('trusts tokens from the configured issuer (discovery + JWKS) and nothing else', async () => {
    // The "external" IdP: another control plane's built-in provider.
    const idp = await startControlPlane({ policy: POLICY });
    fixtures.push(idp);
    const f = await startControlPlane({ policy: POLICY, writeOnly: true });
    fixtures.push(f);
    rewriteConfig(f, (c) => {
      c['identity'] = { oidc: { issuer: `${idp.url}/oidc`, clientId: 'jit-cli', audience: idp.url } };
    });
    f.server = await startServer({
      config: loadYamlConfigFile(f.serverConfigPath, ServerConfig),
      configDir: f.dir,
      logger: silentLogger(),
    });
    const disco = (await api(f.url, undefined, 'GET', '/.well-known/jit')).body;
    expect(disco).toMatchObject({ issuer: `${idp.url}/oidc`, clientId: 'jit-cli', audience: idp.url, apiBase: f.url });

    const tokens = await loginAs(f.url, 'alice');
    const who = await api(f.url, tokens.accessToken, 'GET', '/v1/whoami');
    expect(who.body).toMatchObject({ username: 'alice', groups: ['engineers'], issuer: `${idp.url}/oidc` });
    expect((await api(f.url, tokens.accessToken, 'GET', '/v1/targets')).body.targets).toHaveLength(1);

    // A token of a third issuer is refused.
    const other = await startControlPlane({ policy: POLICY });
    fixtures.push(other);
    const foreign = await loginAs(other.url, 'alice');
    const res = await api(f.url, foreign.accessToken, 'GET', '/v1/whoami');
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('JIT_AUTH_INVALID_TOKEN');
  });
});
