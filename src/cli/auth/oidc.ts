/**
 * OIDC with the control plane's IdP (openid-client v6): discovery, the device authorization
 * grant (RFC 8628), refresh and revocation. openid-client is imported lazily so commands
 * that only use a cached token never load it.
 */
import type * as OpenId from 'openid-client';
import { Discovery } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { isLoopbackUrl } from '../settings/settings.js';
import type { StoredTokens } from './token-store.js';

const DISCOVERY_MAX_BYTES = 64 * 1024;
const DISCOVERY_TIMEOUT_MS = 10_000;

/** GET <server>/.well-known/jit, validated. Network failure → JIT_SERVER_UNREACHABLE. */
export async function fetchDiscovery(ctx: Pick<Ctx, 'fetch' | 'clock'>, server: string): Promise<Discovery> {
  const ac = new AbortController();
  const timer = ctx.clock.setTimeout(() => ac.abort(), DISCOVERY_TIMEOUT_MS);
  try {
    let res: Response;
    try {
      res = await ctx.fetch(`${server}/.well-known/jit`, { signal: ac.signal, headers: { accept: 'application/json' } });
    } catch (err) {
      throw new JitError('JIT_SERVER_UNREACHABLE', {
        message: `The jit server at ${server} cannot be reached`,
        detail: (err as Error)?.message,
        cause: err,
      });
    }
    const text = await res.text();
    if (!res.ok || text.length > DISCOVERY_MAX_BYTES) {
      throw new JitError('JIT_SERVER_UNREACHABLE', {
        message: `${server} did not answer like a jit server (HTTP ${res.status} for /.well-known/jit)`,
        hint: 'check --server / JIT_SERVER',
      });
    }
    let parsed: Discovery;
    try {
      parsed = Discovery.parse(JSON.parse(text));
    } catch (err) {
      throw new JitError('JIT_SERVER_UNREACHABLE', {
        message: `${server} did not answer like a jit server (bad /.well-known/jit)`,
        hint: 'check --server / JIT_SERVER',
        cause: err,
      });
    }
    assertIssuerAllowed(parsed.issuer);
    return parsed;
  } finally {
    ctx.clock.clearTimeout(timer);
  }
}

/** The IdP must be https unless it is on this machine, like the server itself. */
function assertIssuerAllowed(issuer: string): void {
  const url = new URL(issuer);
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackUrl(url))) return;
  throw new JitError('JIT_CONFIG_INVALID', {
    message: `The server names an identity provider that is not https: ${issuer.slice(0, 200)}`,
    hint: 'an administrator must configure an https issuer',
  });
}

/** What login and refresh need to talk to the IdP. */
export interface OidcClient {
  readonly lib: typeof OpenId;
  readonly config: OpenId.Configuration;
}

/** Discover the IdP's metadata; plain http is allowed only for loopback issuers. */
export async function openOidc(ctx: Pick<Ctx, 'fetch'>, issuer: string, clientId: string, timeoutSeconds = 15): Promise<OidcClient> {
  assertIssuerAllowed(issuer);
  const lib = await import('openid-client');
  const url = new URL(issuer);
  const execute = url.protocol === 'http:' ? [lib.allowInsecureRequests] : [];
  try {
    const config = await lib.discovery(url, clientId, undefined, lib.None(), {
      execute,
      // Applies to discovery and every later request made with this configuration.
      timeout: timeoutSeconds,
      [lib.customFetch]: ((input: string, init: RequestInit) => ctx.fetch(input, init)) as OpenId.CustomFetch,
    });
    return { lib, config };
  } catch (err) {
    throw new JitError('JIT_SERVER_UNREACHABLE', {
      message: `The identity provider at ${issuer} cannot be reached`,
      hint: 'check your network; an administrator can check the issuer URL',
      detail: (err as Error)?.message,
      cause: err,
    });
  }
}

/** Expiry of an access token: `expires_in`, else the JWT's `exp`, else 5 minutes. */
function expiryOf(accessToken: string, expiresIn: number | undefined, now: number): number {
  if (typeof expiresIn === 'number' && expiresIn > 0) return now + expiresIn * 1000;
  try {
    const payload = JSON.parse(Buffer.from(accessToken.split('.')[1] ?? '', 'base64url').toString('utf8'));
    if (typeof payload.exp === 'number') return payload.exp * 1000;
  } catch {
    // Opaque token: fall through.
  }
  return now + 5 * 60_000;
}

/** Turn a token endpoint response into what we store. `previous` keeps the refresh token and claims if not re-sent. */
export function toStoredTokens(
  res: OpenId.TokenEndpointResponse & OpenId.TokenEndpointResponseHelpers,
  meta: { issuer: string; clientId: string; audience: string; now: number },
  previous?: StoredTokens,
): StoredTokens {
  const idClaims = res.id_token ? res.claims() : undefined;
  const claims = idClaims
    ? {
        sub: String(idClaims.sub),
        ...(typeof idClaims['preferred_username'] === 'string' ? { username: idClaims['preferred_username'] } : {}),
        ...(typeof idClaims['email'] === 'string' ? { email: idClaims['email'] } : {}),
      }
    : previous?.claims;
  const refreshToken = res.refresh_token ?? previous?.refreshToken;
  return {
    accessToken: res.access_token,
    ...(refreshToken ? { refreshToken } : {}),
    expiresAt: expiryOf(res.access_token, res.expires_in, meta.now),
    issuer: meta.issuer,
    clientId: meta.clientId,
    audience: meta.audience,
    ...(claims ? { claims } : {}),
  };
}

/** Refresh with the stored refresh token (rotated by the IdP). Failure → JIT_AUTH_REFRESH_FAILED. */
export async function refreshTokens(ctx: Pick<Ctx, 'fetch' | 'clock'>, tokens: StoredTokens): Promise<StoredTokens> {
  if (!tokens.refreshToken) throw new JitError('JIT_AUTH_EXPIRED');
  const oidc = await openOidc(ctx, tokens.issuer, tokens.clientId);
  try {
    const res = await oidc.lib.refreshTokenGrant(oidc.config, tokens.refreshToken, { resource: tokens.audience });
    return toStoredTokens(res, { ...tokens, now: ctx.clock.now() }, tokens);
  } catch (err) {
    throw new JitError('JIT_AUTH_REFRESH_FAILED', {
      detail: (err as { error?: string })?.error ?? (err as Error)?.message,
      cause: err,
    });
  }
}

/** Revoke a refresh token at the IdP; best effort (false when it could not be done). */
export async function revokeRefreshToken(ctx: Pick<Ctx, 'fetch'>, tokens: StoredTokens, timeoutSeconds = 5): Promise<boolean> {
  if (!tokens.refreshToken) return false;
  try {
    const oidc = await openOidc(ctx, tokens.issuer, tokens.clientId, timeoutSeconds);
    if (!oidc.config.serverMetadata().revocation_endpoint) return false;
    await oidc.lib.tokenRevocation(oidc.config, tokens.refreshToken, { token_type_hint: 'refresh_token' });
    return true;
  } catch {
    return false;
  }
}
