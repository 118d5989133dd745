/**
 * A tiny but real OIDC issuer for tests, standing in for a CI platform (GitHub Actions and the
 * like): an RS256 key, `/.well-known/openid-configuration` and a JWKS served on a local socket,
 * and ID tokens signed with whatever claims a test needs. Also serves the GitHub Actions ID token
 * request endpoint (`/actions-token?audience=…`, bearer-protected).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';

export interface TestIssuer {
  url: string;
  /** Sign an ID token; `claims` override the defaults (iss, aud, sub, iat, exp). */
  mint(claims: JWTPayload & Record<string, unknown>, opts?: { alg?: string; key?: 'own' | 'other'; typ?: string }): Promise<string>;
  /** The GitHub Actions-style request endpoint and its bearer token. */
  actions: { url: string; requestToken: string; audiences: string[] };
  /** Claims put in tokens handed out by the actions endpoint. */
  actionsClaims: Record<string, unknown>;
  close(): Promise<void>;
}

/** Start an issuer on 127.0.0.1 (port 0). */
export async function startTestIssuer(defaults: { audience: string; sub?: string }): Promise<TestIssuer> {
  const own = await generateKeyPair('RS256', { extractable: true });
  const other = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(own.publicKey)), kid: 'test-1', alg: 'RS256', use: 'sig' };
  const requestToken = `req-${Math.random().toString(36).slice(2)}`;
  const audiences: string[] = [];
  let url = '';
  const issuer: TestIssuer = {
    url: '',
    actions: { url: '', requestToken, audiences },
    actionsClaims: {},
    async mint(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const body = {
        iss: url,
        aud: defaults.audience,
        sub: defaults.sub ?? 'repo:acme/app:ref:refs/heads/main',
        iat: now,
        exp: now + 300,
        ...claims,
      };
      const key = opts.key === 'other' ? other.privateKey : own.privateKey;
      return new SignJWT(body).setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: 'test-1', typ: opts.typ ?? 'JWT' }).sign(key);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', url);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (u.pathname === '/.well-known/openid-configuration') {
      return json(200, { issuer: url, jwks_uri: `${url}/jwks`, id_token_signing_alg_values_supported: ['RS256'] });
    }
    if (u.pathname === '/jwks') return json(200, { keys: [jwk] });
    if (u.pathname === '/actions-token') {
      if (req.headers.authorization !== `Bearer ${requestToken}`) return json(401, { message: 'bad request token' });
      const aud = u.searchParams.get('audience') ?? 'default-audience';
      audiences.push(aud);
      void issuer.mint({ aud, ...issuer.actionsClaims }).then((value) => json(200, { value }));
      return;
    }
    json(404, {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer.url = url;
  issuer.actions.url = `${url}/actions-token?api-version=2.0`;
  return issuer;
}
