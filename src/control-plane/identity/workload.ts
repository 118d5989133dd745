/**
 * Machine identity without stored secrets: a CI job's own ID token (RFC 8693 token exchange) or a
 * service account's client secret (OAuth client credentials) becomes a short-lived jit access
 * token, signed by the control plane's own key with the control plane's URL as its issuer. The
 * REST API then accepts either a user IdP token or one of these (withMachineTokens), and policy
 * names machines as users `workload:<name>` / `service:<name>` or by their configured groups.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  exportJWK,
  type FetchImplementation,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';
import type { ServiceAccount, Workload } from '#shared/config/server.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { Principal, TokenVerifier } from '../auth.js';
import { verifyPassword } from './password.js';
import { MAX_TOKEN_BYTES } from './verifier.js';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** User names of machines start with these; a user IdP must never hand one out. */
export const MACHINE_PREFIXES = ['workload:', 'service:'] as const;
/** RFC 9068's type for JWT access tokens (the user IdP's tokens carry it too). */
const ACCESS_TOKEN_TYP = 'at+jwt';
const MAX_TTL_SECONDS = 15 * 60;
const DISCOVERY_TIMEOUT_MS = 5000;
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** What POST /v1/token answers (RFC 8693 §2.2.1 / RFC 6749 §5.1). */
export interface IssuedToken {
  access_token: string;
  issued_token_type: typeof ACCESS_TOKEN_TYPE;
  token_type: 'Bearer';
  expires_in: number;
}

/** A refused exchange: `reason` is one line safe to show the caller (who holds the token anyway). */
export class MachineRefused extends JitError {
  constructor(
    readonly reason: string,
    readonly oauthError: 'invalid_grant' | 'invalid_client' | 'invalid_request' | 'unsupported_token_type' | 'invalid_target',
    /** Audit data: which issuer / workload / client it was about (never the token). */
    readonly auditData: Record<string, unknown> = {},
  ) {
    super('JIT_AUTH_MACHINE_REFUSED', { message: `The CI identity was refused: ${reason}` });
  }
}

export interface MachineIdentityDeps {
  /** The control plane's public URL: the issuer of the tokens made here. */
  publicUrl: string;
  /** Audience of the tokens made here: the same audience user tokens carry. */
  audience: string;
  /** Where the signing key lives (created 0600 on first start). */
  keyFile: string;
  workloads: Workload[];
  serviceAccounts: ServiceAccount[];
  ttlSeconds: number;
  clock: Clock;
  clockToleranceSeconds?: number;
  /** For the workload issuers' discovery documents and JWKS; default: the global fetch. */
  fetch?: typeof fetch;
}

type Key = Awaited<ReturnType<typeof importJWK>>;
type RemoteKeys = ReturnType<typeof createRemoteJWKSet>;

// Symmetric algorithms let anyone holding the (public) key material mint tokens; `none` needs no key.
function asymmetricOnly(list: string[]): string[] {
  return list.filter((a) => typeof a === 'string' && a !== '' && a.toLowerCase() !== 'none' && !/^HS/i.test(a));
}

/** `value` matches `pattern`: equal, or (pattern ending in `*`) starts with the rest. */
export function claimMatches(pattern: string, value: unknown): boolean {
  if (typeof value === 'number' || typeof value === 'boolean') value = String(value);
  if (typeof value !== 'string') return false;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return value === pattern;
}

/** Token exchange, client credentials and verification of the tokens made by them. */
export class MachineIdentity {
  private readonly remote = new Map<string, Promise<RemoteKeys>>();

  private constructor(
    private readonly deps: MachineIdentityDeps,
    private readonly privateKey: Key,
    private readonly publicKey: Key,
    private readonly kid: string,
  ) {}

  /** Load (or create) the signing key and check the configuration. */
  static async load(deps: MachineIdentityDeps): Promise<MachineIdentity> {
    if (deps.ttlSeconds <= 0 || deps.ttlSeconds > MAX_TTL_SECONDS) {
      throw new JitError('JIT_CONFIG_INVALID', { message: 'machineTokenTtl must be between 1s and 15m' });
    }
    for (const w of deps.workloads) {
      if (asymmetricOnly(w.algorithms).length === 0) {
        throw new JitError('JIT_CONFIG_INVALID', { message: `workloads: ${w.name}: algorithms allows no asymmetric algorithm` });
      }
    }
    let jwk: JWK;
    if (existsSync(deps.keyFile)) {
      jwk = JSON.parse(readFileSync(deps.keyFile, 'utf8')) as JWK;
    } else {
      const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
      jwk = await exportJWK(privateKey);
      jwk.kid = `machine-${Date.now().toString(36)}`;
      writeFileSync(deps.keyFile, JSON.stringify(jwk), { mode: 0o600 });
    }
    const { d: _d, ...pub } = jwk;
    return new MachineIdentity(deps, await importJWK(jwk, 'EdDSA'), await importJWK(pub, 'EdDSA'), jwk.kid ?? 'machine');
  }

  /** Whether any workload or service account is configured (POST /v1/token is refused otherwise). */
  get enabled(): boolean {
    return this.deps.workloads.length + this.deps.serviceAccounts.length > 0;
  }

  /** The issuer of the tokens made here. */
  get issuer(): string {
    return this.deps.publicUrl;
  }

  /**
   * RFC 8693: verify a workload's ID token against every workload trusting its issuer and
   * audience; the first whose subject and claims all match wins.
   */
  async exchange(subjectToken: string, subjectTokenType: string): Promise<{ token: IssuedToken; workload: Workload; subject: string }> {
    if (subjectTokenType !== ID_TOKEN_TYPE && subjectTokenType !== JWT_TOKEN_TYPE) {
      throw new MachineRefused('subject_token_type must be id_token or jwt', 'unsupported_token_type');
    }
    if (Buffer.byteLength(subjectToken, 'utf8') > MAX_TOKEN_BYTES) throw new MachineRefused('the token is too large', 'invalid_request');
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(subjectToken)) {
      throw new MachineRefused('the subject token is not a signed JWT', 'invalid_request');
    }
    // Unverified: only to choose which issuer's keys to verify with.
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(subjectToken);
    } catch {
      throw new MachineRefused('the subject token is not a JWT', 'invalid_request');
    }
    const issuer = typeof unverified.iss === 'string' ? unverified.iss : '';
    const candidates = this.deps.workloads.filter((w) => w.issuer === issuer);
    const audit = { issuer: issuer.slice(0, 200) };
    if (candidates.length === 0) throw new MachineRefused('its issuer is not trusted for any workload', 'invalid_grant', audit);

    let keys: RemoteKeys;
    try {
      keys = await this.keysOf(issuer);
    } catch (err) {
      throw new MachineRefused("the issuer's keys cannot be fetched", 'invalid_grant', {
        ...audit,
        detail: (err as Error).message?.slice(0, 200),
      });
    }
    let firstReason: string | undefined;
    for (const w of candidates) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(subjectToken, keys, {
          issuer: w.issuer,
          audience: w.audience,
          algorithms: asymmetricOnly(w.algorithms),
          clockTolerance: this.deps.clockToleranceSeconds ?? 30,
          currentDate: new Date(this.deps.clock.now()),
          requiredClaims: ['exp', 'sub', 'iat'],
        }));
      } catch (err) {
        firstReason ??= joseReason(err);
        continue;
      }
      const mismatch = this.mismatch(w, payload);
      if (mismatch) {
        firstReason ??= mismatch;
        continue;
      }
      const token = await this.sign(`workload:${w.name}`, w.groups);
      return { token, workload: w, subject: String(payload.sub).slice(0, 300) };
    }
    throw new MachineRefused(firstReason ?? 'no workload matches it', 'invalid_grant', audit);
  }

  /** OAuth client credentials for a service account (a wrong id and a wrong secret look alike). */
  async clientCredentials(clientId: string, secret: string): Promise<{ token: IssuedToken; account: ServiceAccount }> {
    const account = this.deps.serviceAccounts.find((s) => s.name === clientId);
    // Hash even for an unknown client, so response time does not tell which client ids exist.
    const ok = await verifyPassword(secret, account?.secretHash ?? DUMMY_HASH);
    if (!account || !ok) {
      throw new MachineRefused('unknown client or wrong secret', 'invalid_client', { client: clientId.slice(0, 100) });
    }
    return { token: await this.sign(`service:${account.name}`, account.groups), account };
  }

  /** Verify a token made here (local key, no network). */
  async verify(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.publicKey, {
        issuer: this.deps.publicUrl,
        audience: this.deps.audience,
        algorithms: ['EdDSA'],
        typ: ACCESS_TOKEN_TYP,
        currentDate: new Date(this.deps.clock.now()),
        clockTolerance: 5,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired)
        throw new JitError('JIT_AUTH_EXPIRED', {
          message: "The CI identity's jit token has expired",
          hint: 'exchange a new one (jit exec does it on every run)',
          cause: err,
        });
      throw new JitError('JIT_AUTH_INVALID_TOKEN', { detail: `machine token: ${(err as Error)?.message}`, cause: err });
    }
    const sub = String(payload.sub);
    const name = sub.replace(/^(workload|service):/, '');
    const live =
      (sub.startsWith('workload:') && this.deps.workloads.find((w) => w.name === name)) ||
      (sub.startsWith('service:') && this.deps.serviceAccounts.find((s) => s.name === name));
    // Removing a workload from the config revokes its outstanding tokens; groups come from the
    // config as it is now, not as it was when the token was made.
    if (!live) throw new JitError('JIT_AUTH_INVALID_TOKEN', { detail: `machine ${sub} is no longer configured` });
    return { subject: sub, username: sub, groups: [...live.groups], issuer: this.deps.publicUrl, expiresAt: (payload.exp ?? 0) * 1000 };
  }

  private mismatch(w: Workload, payload: JWTPayload): string | undefined {
    if (w.subject !== undefined && !claimMatches(w.subject, payload.sub)) return 'its sub claim does not match';
    for (const [claim, pattern] of Object.entries(w.claims)) {
      if (!claimMatches(pattern, payload[claim])) return `its ${claim} claim does not match`;
    }
    return undefined;
  }

  private async sign(sub: string, groups: string[]): Promise<IssuedToken> {
    const now = Math.floor(this.deps.clock.now() / 1000);
    const ttl = Math.min(this.deps.ttlSeconds, MAX_TTL_SECONDS);
    const jwt = await new SignJWT({ preferred_username: sub, groups })
      .setProtectedHeader({ alg: 'EdDSA', kid: this.kid, typ: ACCESS_TOKEN_TYP })
      .setIssuer(this.deps.publicUrl)
      .setAudience(this.deps.audience)
      .setSubject(sub)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + ttl)
      .setJti(globalThis.crypto.randomUUID())
      .sign(this.privateKey);
    return { access_token: jwt, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: ttl };
  }

  /** The issuer's JWKS from its discovery document; cached, but a failure is not. */
  private keysOf(issuer: string): Promise<RemoteKeys> {
    let p = this.remote.get(issuer);
    if (!p) {
      p = this.discover(issuer);
      this.remote.set(issuer, p);
      p.catch(() => this.remote.delete(issuer));
    }
    return p;
  }

  private async discover(issuer: string): Promise<RemoteKeys> {
    const doFetch = this.deps.fetch ?? globalThis.fetch;
    const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const res = await doFetch(url, {
      headers: { accept: 'application/json' },
      redirect: 'error',
      signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS),
    });
    if (!res.ok) throw new Error(`discovery at ${url}: HTTP ${res.status}`);
    const meta = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
    // Byte for byte (OIDC Discovery §4.3): metadata naming another issuer would make us trust its keys.
    if (meta?.issuer !== issuer) throw new Error(`discovery document names another issuer`);
    if (typeof meta.jwks_uri !== 'string' || !/^https?:\/\//.test(meta.jwks_uri)) throw new Error('no usable jwks_uri');
    return createRemoteJWKSet(new URL(meta.jwks_uri), {
      timeoutDuration: DISCOVERY_TIMEOUT_MS,
      ...(this.deps.fetch ? { [customFetch]: this.deps.fetch as FetchImplementation } : {}),
    });
  }
}

function joseReason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'it has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'its audience does not match';
    if (err.claim === 'nbf' || err.claim === 'iat') return 'it is not valid yet';
    if (err.claim === 'iss') return 'its issuer does not match';
    return `its ${err.claim} claim is missing or invalid`;
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'its signature algorithm is not allowed';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JWKSNoMatchingKey) {
    return "its signature does not verify with the issuer's keys";
  }
  return 'it cannot be verified';
}

/**
 * The REST API's verifier: tokens whose (unverified) issuer is this control plane are machine
 * tokens, checked with the local key; everything else goes to the user IdP's verifier, which
 * must never yield a machine's user name.
 */
export function withMachineTokens(users: TokenVerifier, machines: MachineIdentity): TokenVerifier {
  return {
    async verify(token: string): Promise<Principal> {
      let iss: unknown;
      let typ: unknown;
      try {
        iss = decodeJwt(token).iss;
        typ = decodeProtectedHeader(token).typ;
      } catch {
        iss = undefined;
      }
      if (iss === machines.issuer && typeof typ === 'string' && typ.toLowerCase() === ACCESS_TOKEN_TYP) {
        return machines.verify(token);
      }
      const p = await users.verify(token);
      if (MACHINE_PREFIXES.some((prefix) => p.username.startsWith(prefix) || p.subject.startsWith(prefix))) {
        throw new JitError('JIT_AUTH_INVALID_TOKEN', {
          detail: `the user IdP issued a token for a machine name (${p.username.slice(0, 100)})`,
        });
      }
      return p;
    },
  };
}
