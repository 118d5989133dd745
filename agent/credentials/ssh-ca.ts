/**
 * SSH session certificates: per session a fresh Ed25519 key pair that lives only in this
 * process, and an OpenSSH user certificate for it signed by the agent's user CA (sshd trusts the
 * CA with TrustedUserCAKeys). Validity: one minute before now (clock skew) … the session's
 * expiry; principals: the login policy decided; extensions: permit-pty (+ port forwarding when
 * policy allows it); never agent or X11 forwarding, never permit-user-rc. The key is forgotten
 * when the session ends; the certificate's expiry is the backstop for a crash.
 */
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { ed25519SignatureBlob, SSH_CERT_TYPE_USER, signCertificate } from '#protocol/ssh/cert.js';
import { ED25519, encodeOpenSshEd25519PrivateKey } from '#protocol/ssh/keys.js';
import type { AgentSshTarget } from '#shared/config/agent.js';
import type { SessionInfo, SshSessionRules } from '#shared/contract/agent.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { EmitEvent } from '../events.js';

type ParsedKey = ssh2.ParsedKey;

/** The user CA: an Ed25519 private key in OpenSSH format. */
export class SshCa {
  private constructor(
    private readonly key: ParsedKey,
    /** The CA's public key blob (string "ssh-ed25519", string key). */
    readonly publicBlob: Buffer,
    /** Private seed material, only to derive stable per-target keys (see bridgeHostKey). */
    private readonly secret: Buffer,
  ) {}

  /** Parse the CA key text; fails with JIT_CONFIG_INVALID naming `where`. */
  static fromText(text: string, where: string): SshCa {
    const key = ssh2.utils.parseKey(text);
    if (key instanceof Error || !key.isPrivateKey()) {
      throw new JitError('JIT_CONFIG_INVALID', { message: `${where}: not an unencrypted OpenSSH private key` });
    }
    if (key.type !== ED25519) {
      throw new JitError('JIT_CONFIG_INVALID', { message: `${where}: the SSH user CA must be an Ed25519 key (ssh-keygen -t ed25519)` });
    }
    const jwk = createPrivateKey(key.getPrivatePEM()).export({ format: 'jwk' });
    return new SshCa(key, key.getPublicSSH(), Buffer.from(jwk.d ?? '', 'base64url'));
  }

  /** Load from caKeyFile or the variable named by caKeyEnv. */
  static load(name: string, t: AgentSshTarget, env: Readonly<Record<string, string | undefined>>): SshCa {
    if (t.caKeyFile) {
      let text: string;
      try {
        text = readFileSync(t.caKeyFile, 'utf8');
      } catch (err) {
        throw new JitError('JIT_CONFIG_INVALID', {
          message: `target ${name}: cannot read caKeyFile ${t.caKeyFile}`,
          detail: (err as Error).message,
        });
      }
      return SshCa.fromText(text, `target ${name}: caKeyFile`);
    }
    const text = t.caKeyEnv ? env[t.caKeyEnv] : undefined;
    if (!text) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: `target ${name}: the environment variable ${t.caKeyEnv} holding the SSH CA key is not set`,
      });
    }
    return SshCa.fromText(text, `target ${name}: ${t.caKeyEnv}`);
  }

  /** Sign with the CA key: the SSH signature blob. */
  sign(data: Buffer): Buffer {
    return ed25519SignatureBlob(this.key.sign(data));
  }

  /**
   * A host key for the agent's own SSH server (ProxyCommand mode), derived from the CA key and the
   * target name: stable across sessions and restarts, so the user's known_hosts entry stays valid.
   */
  bridgeHostKey(target: string): string {
    const seed = createHash('sha256').update('jit bridge host key\0').update(this.secret).update(target).digest();
    return ed25519KeyFromSeed(seed).privateText;
  }
}

/** An Ed25519 key from its 32-byte seed, as an OpenSSH private key file and a raw public key. */
export function ed25519KeyFromSeed(seed: Buffer): { privateText: string; publicKey: Buffer } {
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  const publicKey = Buffer.from(key.export({ format: 'jwk' }).x ?? '', 'base64url');
  // The check bytes only need to match each other; derive them so the file is deterministic.
  const check = createHash('sha256').update(seed).digest().subarray(0, 4);
  return { privateText: encodeOpenSshEd25519PrivateKey(seed, publicKey, check), publicKey };
}

/** A session's key and certificate. */
export interface SessionCertificate {
  /** ssh2's parsed private key (signs the userauth request). */
  key: ParsedKey;
  /** The certificate blob (`ssh-ed25519-cert-v01@openssh.com`). */
  certificate: Buffer;
  serial: bigint;
  keyId: string;
  principals: string[];
  validBefore: Date;
}

export interface SshCredentialsDeps {
  emit: EmitEvent;
  clock: Clock;
  random(n: number): Buffer;
  /** How long after it is issued a certificate may be used to log in (default 10 s). */
  loginWindowSec?: number;
}

/** A host clock this far behind the agent's still accepts a fresh certificate. */
export const CERT_SKEW_BEHIND_SEC = 60;
/** Default: a certificate is good for logins this long after it is issued (a host clock ahead by more refuses it). */
export const CERT_LOGIN_WINDOW_SEC = 10;

/**
 * Issues a certificate for each login — valid from a minute before to a few seconds after it is
 * issued, never past the session's end — over one key per session, and forgets the key at session
 * end. OpenSSH checks a certificate only when it authenticates, so a login that is in keeps going;
 * a copy of the certificate and key is worthless once the window has passed.
 */
export class SshCredentials {
  private readonly bySession = new Map<string, { key: ParsedKey; pub: Buffer; target: string; serials: string[] }>();

  constructor(private readonly deps: SshCredentialsDeps) {}

  /** A certificate for one login of the session (its key is made on first use; a session's logins share it). */
  forSession(ca: SshCa, session: SessionInfo, rules: SshSessionRules): SessionCertificate {
    const now = this.deps.clock.now();
    const expires = Date.parse(session.expiresAt);
    if (!(expires > now)) throw new JitError('JIT_SESSION_ENDED', { message: `Session ${session.id} has expired` });
    let held = this.bySession.get(session.id);
    if (!held) {
      held = { ...this.newKey(), target: session.target, serials: [] };
      this.bySession.set(session.id, held);
    }
    const keyId = `jit:${session.user}:${session.id}`;
    const extensions = ['permit-pty', ...(rules.allowForwarding ? ['permit-port-forwarding'] : [])];
    const { cert, validAfter } = this.sign(ca, held, { keyId, principals: rules.principals, extensions, now, notAfterMs: expires });
    held.serials.push(cert.serial.toString());
    this.deps.emit({
      event: 'credential.created',
      session: session.id,
      target: session.target,
      outcome: 'success',
      data: {
        kind: 'ssh-certificate',
        keyId,
        serial: cert.serial.toString(),
        principals: rules.principals,
        extensions,
        validAfter: validAfter.toISOString(),
        validBefore: cert.validBefore.toISOString(),
        caFingerprint: fingerprint(ca.publicBlob),
      },
    });
    return cert;
  }

  /**
   * A certificate for one of the agent's own admin logins (host accounts): a fresh key, the same
   * short window, key id `jit:agent:<target>`; never a session's.
   */
  forAdmin(ca: SshCa, target: string, login: string): SessionCertificate {
    const now = this.deps.clock.now();
    return this.sign(ca, this.newKey(), { keyId: `jit:agent:${target}`, principals: [login], extensions: [], now }).cert;
  }

  /** A fresh Ed25519 key in memory (the seed is wiped once ssh2 has parsed it). */
  private newKey(): { key: ParsedKey; pub: Buffer } {
    const { privateKey } = generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    const seed = Buffer.from(jwk.d ?? '', 'base64url');
    const pub = Buffer.from(jwk.x ?? '', 'base64url');
    const key = ssh2.utils.parseKey(encodeOpenSshEd25519PrivateKey(seed, pub, this.deps.random(4)));
    seed.fill(0);
    if (key instanceof Error) throw new JitError('JIT_CREDENTIAL_FAILED', { detail: key.message });
    return { key, pub };
  }

  /** Sign a user certificate for `held`'s key, valid from the skew allowance before now to the login window after (never past `notAfterMs`). */
  private sign(
    ca: SshCa,
    held: { key: ParsedKey; pub: Buffer },
    c: { keyId: string; principals: string[]; extensions: string[]; now: number; notAfterMs?: number },
  ): { cert: SessionCertificate; validAfter: Date } {
    const nowS = Math.floor(c.now / 1000);
    const after = nowS - CERT_SKEW_BEHIND_SEC;
    const window = nowS + (this.deps.loginWindowSec ?? CERT_LOGIN_WINDOW_SEC);
    const until = c.notAfterMs === undefined ? window : Math.min(window, Math.ceil(c.notAfterMs / 1000));
    const serial = this.deps.random(8).readBigUInt64BE(0);
    const certificate = signCertificate(
      {
        publicKey: held.pub,
        nonce: this.deps.random(32),
        serial,
        type: SSH_CERT_TYPE_USER,
        keyId: c.keyId,
        principals: c.principals,
        validAfter: BigInt(after),
        validBefore: BigInt(until),
        extensions: c.extensions,
      },
      { publicBlob: ca.publicBlob, sign: (d) => ca.sign(d) },
    );
    return {
      cert: { key: held.key, certificate, serial, keyId: c.keyId, principals: c.principals, validBefore: new Date(until * 1000) },
      validAfter: new Date(after * 1000),
    };
  }

  /** Forget a session's key; its certificates' login windows have closed or close within seconds. */
  forget(sessionId: string, reason: string): void {
    const had = this.bySession.get(sessionId);
    if (!had) return;
    this.bySession.delete(sessionId);
    this.deps.emit({
      event: 'credential.destroyed',
      session: sessionId,
      target: had.target,
      outcome: 'success',
      data: { kind: 'ssh-certificate', serial: had.serials[had.serials.length - 1], serials: had.serials, reason },
    });
  }

  has(sessionId: string): boolean {
    return this.bySession.has(sessionId);
  }
}

/** OpenSSH's SHA256 fingerprint of a public key blob. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}
