/**
 * Verifies the bearer access tokens the CLI sends, for the built-in and external IdPs alike:
 * signature by the issuer's published keys (JWKS from its discovery document), issuer and
 * audience exact, asymmetric algorithms only, expiry required.
 */
import { createRemoteJWKSet, customFetch, errors as joseErrors, type FetchImplementation, type JWTPayload, jwtVerify } from 'jose';
import { JitError } from '#shared/errors/jit-error.js';

export interface Principal {
  subject: string;
  username: string;
  email?: string;
  groups: string[];
  issuer: string;
  /** Epoch ms. */
  expiresAt: number;
}

export interface VerifierOptions {
  issuer: string;
  audience: string;
  algorithms: string[];
  clockToleranceSeconds: number;
  groupsClaim: string;
  usernameClaim: string;
  /** jit's CLI client: a token whose azp / client_id names another client is refused. Absent: not checked. */
  clientId?: string;
  /** Longest lifetime a token may claim (exp − iat, and exp − now); default 24 h. */
  maxLifetimeSeconds?: number;
  fetch?: typeof fetch;
}

export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
}

/** Larger tokens are refused before any parsing. */
export const MAX_TOKEN_BYTES = 16 * 1024;
const MAX_GROUPS = 256;
const DISCOVERY_TIMEOUT_MS = 5000;

// Symmetric algorithms would let anyone holding the (public) key material mint tokens, and
// `none` needs no key at all: neither may ever be accepted, whatever the configuration says.
function safeAlgorithms(list: string[]): string[] {
  const ok = list.filter((a) => typeof a === 'string' && a !== '' && a.toLowerCase() !== 'none' && !/^HS/i.test(a));
  if (ok.length === 0) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: 'identity.algorithms allows no asymmetric signature algorithm',
      hint: 'use e.g. RS256, PS256, ES256 or EdDSA',
    });
  }
  return ok;
}

function invalid(detail: string, cause?: unknown): JitError {
  return new JitError('JIT_AUTH_INVALID_TOKEN', { detail, cause });
}

const DEFAULT_MAX_LIFETIME_S = 24 * 3600;

/**
 * The claims jose leaves to us: a token issued to another client of the same IdP (azp, or RFC 9068's
 * client_id) is not jit's; an issue time in the future beyond the leeway means a wrong clock or a
 * forgery; a lifetime nobody configures (a year) is refused whatever the signature.
 */
function checkClaims(payload: JWTPayload, opts: VerifierOptions): void {
  const now = Math.floor(Date.now() / 1000);
  const leeway = opts.clockToleranceSeconds;
  if (opts.clientId !== undefined) {
    for (const claim of ['azp', 'client_id'] as const) {
      const v = payload[claim];
      if (v !== undefined && v !== opts.clientId) throw invalid(`${claim} names another client`);
    }
  }
  if (payload.iat !== undefined) {
    if (typeof payload.iat !== 'number' || !Number.isFinite(payload.iat)) throw invalid('iat is not a number');
    if (payload.iat > now + leeway) throw invalid('iat is in the future');
  }
  const max = opts.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_S;
  const exp = payload.exp!;
  if (exp - now > max + leeway) throw invalid('exp is further ahead than any token lives');
  if (typeof payload.iat === 'number' && exp - payload.iat > max) throw invalid('the token claims a lifetime longer than any token has');
}

/** Build a verifier; the issuer's metadata and keys are fetched on first use and cached. */
export function createTokenVerifier(opts: VerifierOptions): TokenVerifier {
  const algorithms = safeAlgorithms(opts.algorithms);
  const doFetch = opts.fetch ?? globalThis.fetch;
  let jwks: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;

  async function discover(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    const url = `${opts.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    let meta: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const res = await doFetch(url, {
        headers: { accept: 'application/json' },
        redirect: 'error',
        signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      meta = (await res.json()) as typeof meta;
    } catch (err) {
      throw new JitError('JIT_AUTH_INVALID_TOKEN', {
        message: 'The identity provider cannot be reached to check the token',
        hint: 'try again; an administrator should check the issuer URL',
        detail: `discovery at ${url} failed: ${(err as Error)?.message}`,
        cause: err,
      });
    }
    // Byte for byte (OIDC Discovery §4.3): a metadata document naming another issuer is an
    // attempt to make us trust someone else's keys.
    if (meta?.issuer !== opts.issuer) {
      throw invalid(`discovery document names issuer ${String(meta?.issuer).slice(0, 200)}, expected ${opts.issuer}`);
    }
    if (typeof meta.jwks_uri !== 'string' || !/^https?:\/\//.test(meta.jwks_uri)) {
      throw invalid('discovery document has no usable jwks_uri');
    }
    return createRemoteJWKSet(new URL(meta.jwks_uri), {
      timeoutDuration: DISCOVERY_TIMEOUT_MS,
      ...(opts.fetch ? { [customFetch]: opts.fetch as FetchImplementation } : {}),
    });
  }

  function keys(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    if (!jwks) {
      jwks = discover();
      // A failed discovery must not be cached: the IdP may simply not be up yet.
      jwks.catch(() => {
        jwks = undefined;
      });
    }
    return jwks;
  }

  return {
    async verify(token: string): Promise<Principal> {
      if (typeof token !== 'string' || token.length === 0) throw invalid('empty token');
      if (Buffer.byteLength(token, 'utf8') > MAX_TOKEN_BYTES) throw invalid(`token larger than ${MAX_TOKEN_BYTES} bytes`);
      if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw invalid('not a signed JWT (compact JWS)');
      const getKey = await keys();
      let payload: JWTPayload;
      let typ: string | undefined;
      try {
        const r = await jwtVerify(token, getKey, {
          issuer: opts.issuer,
          audience: opts.audience,
          algorithms,
          clockTolerance: opts.clockToleranceSeconds,
          requiredClaims: ['exp', 'sub'],
        });
        payload = r.payload;
        typ = r.protectedHeader.typ;
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw new JitError('JIT_AUTH_EXPIRED', { detail: 'access token expired', cause: err });
        if (err instanceof JitError) throw err;
        const code = (err as { code?: string })?.code ?? 'error';
        throw invalid(`${code}: ${(err as Error)?.message}`, err);
      }
      // An ID token (typ JWT or none) could otherwise pass as an access token if some IdP gave
      // it our audience; at+jwt is the RFC 9068 type, plain JWT is what many IdPs still send.
      const t = typ?.toLowerCase();
      if (t !== 'at+jwt' && t !== 'application/at+jwt' && t !== 'jwt') throw invalid(`unexpected token type ${String(typ)}`);
      checkClaims(payload, opts);

      const subject = payload.sub!;
      const rawName = payload[opts.usernameClaim];
      const username = typeof rawName === 'string' && rawName !== '' ? rawName : subject;
      const rawGroups = payload[opts.groupsClaim];
      let groups: string[] = [];
      if (rawGroups !== undefined && rawGroups !== null) {
        if (!Array.isArray(rawGroups) || !rawGroups.every((g) => typeof g === 'string')) {
          throw invalid(`claim ${opts.groupsClaim} is not a list of strings`);
        }
        groups = rawGroups.slice(0, MAX_GROUPS) as string[];
      }
      const email = typeof payload.email === 'string' ? payload.email : undefined;
      return {
        subject,
        username,
        ...(email ? { email } : {}),
        groups,
        issuer: opts.issuer,
        expiresAt: payload.exp! * 1000,
      };
    },
  };
}
