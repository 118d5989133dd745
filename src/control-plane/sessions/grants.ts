/**
 * Session grants: EdDSA JWTs signed by the control plane, audience "relay", bound to one session,
 * user and target. A grant alone opens nothing: the relay also requires the session row to be
 * active and owned by the grant's subject.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, importJWK, type JWK, jwtVerify, SignJWT } from 'jose';
import { GRANT_AUDIENCE, GrantClaims } from '#shared/contract/grant.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';

type Key = Awaited<ReturnType<typeof importJWK>>;

export class GrantSigner {
  private constructor(
    private readonly privateKey: Key,
    private readonly publicKey: Key,
    private readonly kid: string,
    private readonly issuer: string,
    private readonly clock: Clock,
  ) {}

  /** Load the signing key from keyFile, creating it (0600) on first start. */
  static async load(keyFile: string, issuer: string, clock: Clock): Promise<GrantSigner> {
    let jwk: JWK;
    if (existsSync(keyFile)) {
      jwk = JSON.parse(readFileSync(keyFile, 'utf8')) as JWK;
    } else {
      const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
      jwk = await exportJWK(privateKey);
      jwk.kid = `grant-${Date.now().toString(36)}`;
      writeFileSync(keyFile, JSON.stringify(jwk), { mode: 0o600 });
    }
    const { d: _d, ...pub } = jwk;
    const privateKey = await importJWK(jwk, 'EdDSA');
    const publicKey = await importJWK(pub, 'EdDSA');
    return new GrantSigner(privateKey, publicKey, jwk.kid ?? 'grant', issuer, clock);
  }

  /** Sign a grant for a session that expires at expiresAt (epoch ms). */
  async sign(claims: { sub: string; sid: string; tgt: string; expiresAt: number; jti: string }): Promise<string> {
    const now = Math.floor(this.clock.now() / 1000);
    return new SignJWT({ sid: claims.sid, tgt: claims.tgt })
      .setProtectedHeader({ alg: 'EdDSA', kid: this.kid, typ: 'jit-grant+jwt' })
      .setIssuer(this.issuer)
      .setAudience(GRANT_AUDIENCE)
      .setSubject(claims.sub)
      .setIssuedAt(now)
      .setJti(claims.jti)
      .setExpirationTime(Math.floor(claims.expiresAt / 1000))
      .sign(this.privateKey);
  }

  /** Verify a grant's signature, audience, issuer and expiry. */
  async verify(token: string): Promise<GrantClaims> {
    if (token.length > 4096) throw new JitError('JIT_GRANT_INVALID', { detail: 'grant too long' });
    try {
      const { payload } = await jwtVerify(token, this.publicKey, {
        algorithms: ['EdDSA'],
        audience: GRANT_AUDIENCE,
        issuer: this.issuer,
        typ: 'jit-grant+jwt',
        currentDate: new Date(this.clock.now()),
        clockTolerance: 5,
      });
      return GrantClaims.parse(payload);
    } catch (cause) {
      throw new JitError('JIT_GRANT_INVALID', { detail: (cause as Error).message, cause });
    }
  }
}
