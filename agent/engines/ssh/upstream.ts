/**
 * The agent's SSH client toward sshd: host key checked against the configured keys (never trust
 * on first use), login with the session's key + certificate.
 *
 * ssh2 1.17 cannot present a certificate: its publickey userauth writes the key's algorithm both
 * as the request's algorithm and inside the signature blob, and for a certificate those differ
 * (`ssh-ed25519-cert-v01@openssh.com` vs `ssh-ed25519`; sshd refuses the mix). So this client's
 * protocol object gets its own `authPK` for our certificate key: it sends the signed request
 * (PROTOCOL.certkeys, RFC 4252 §7) directly. It relies on ssh2 internals (`_protocol`,
 * `_packetRW`, `_kex.sessionID`, `_cipher`, `_authsQueue`); the integration tests against a real
 * sshd fail if an ssh2 upgrade moves them (upstream: mscdex/ssh2#551, PR #1486).
 */
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import { ED25519_CERT } from '#protocol/ssh/cert.js';
import { ED25519, parsePublicKeyLine } from '#protocol/ssh/keys.js';
import { SshReader, SshWriter } from '#protocol/ssh/wire.js';
import type { AgentSshTarget } from '#shared/config/agent.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { SessionCertificate } from '../../credentials/ssh-ca.js';

const USERAUTH_REQUEST = 50;

/** Internals of ssh2's Protocol that the certificate userauth needs (see the file comment). */
interface ProtocolInternals {
  authPK(username: string, pubKey: unknown, keyAlgo?: unknown, cbSign?: unknown): void;
  _kex: { sessionID: Buffer };
  _packetRW: { write: { alloc(n: number): Buffer; allocStart: number; finalize(p: Buffer): Buffer } };
  _cipher: { encrypt(p: Buffer): void };
  _kexinit?: unknown;
  _queue?: Buffer[];
  _authsQueue: string[];
}

/** Replace `authPK` on this client's protocol for the certificate key only. */
function presentCertificate(client: ssh2.Client, cert: SessionCertificate): void {
  const proto = (client as unknown as { _protocol?: ProtocolInternals })._protocol;
  if (!proto || typeof proto.authPK !== 'function' || !proto._packetRW) {
    throw new JitError('JIT_INTERNAL', { detail: 'ssh2 internals changed: cannot present a certificate' });
  }
  const original = proto.authPK.bind(proto);
  proto.authPK = (username: string, pubKey: unknown, keyAlgo?: unknown, cbSign?: unknown) => {
    if (pubKey !== cert.key) {
      original(username, pubKey, keyAlgo, cbSign);
      return;
    }
    // RFC 4252 §7: the signature covers session id + the request with "has signature" = TRUE.
    const body = new SshWriter()
      .byte(USERAUTH_REQUEST)
      .string(username)
      .string('ssh-connection')
      .string('publickey')
      .byte(1)
      .string(ED25519_CERT)
      .string(cert.certificate)
      .toBuffer();
    const signed = new SshWriter().string(proto._kex.sessionID).raw(body).toBuffer();
    const sigBlob = new SshWriter().string(ED25519).string(cert.key.sign(signed)).toBuffer();
    const payload = new SshWriter().raw(body).string(sigBlob).toBuffer();
    const w = proto._packetRW.write;
    const packet = w.alloc(payload.length);
    payload.copy(packet, w.allocStart);
    proto._authsQueue.push('publickey');
    const out = w.finalize(packet);
    // ssh2's sendPacket: hold packets while a key exchange runs, else encrypt and send.
    if (proto._kexinit !== undefined) {
      proto._queue ??= [];
      proto._queue.push(out);
    } else {
      proto._cipher.encrypt(out);
    }
  };
}

/** Parsed `hostKeys` of a target (blobs), refusing config lines that are not keys. */
export function knownHostKeys(name: string, t: AgentSshTarget): Buffer[] {
  return t.hostKeys.map((line, i) => {
    const k = parsePublicKeyLine(line);
    if (!k) throw new JitError('JIT_CONFIG_INVALID', { message: `target ${name}: hostKeys[${i}] is not an OpenSSH public key` });
    return k.blob;
  });
}

/** Host key algorithms to offer: only those of the configured keys, so sshd presents one we can check. */
export function hostKeyAlgorithms(hostKeys: Buffer[]): string[] {
  const out = new Set<string>();
  for (const k of hostKeys) {
    const type = new SshReader(k).text();
    if (type === 'ssh-rsa') for (const a of ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']) out.add(a);
    else out.add(type);
  }
  return [...out];
}

export interface UpstreamOptions {
  target: AgentSshTarget;
  hostKeys: Buffer[];
  login: string;
  cert: SessionCertificate;
  /** A connection to sshd dialled ahead, if any. */
  sock?: Duplex;
}

/** The message of the refusal a host with an unknown key gets (also how the audit tells it apart). */
const HOST_KEY_REFUSED = 'The host presented a host key the agent does not know';

/** What an ssh.login-failed event says: the login, the code, and why (a host key mismatch is its own reason). */
export function loginFailure(login: string, e: JitError): { login: string; code: string; reason: string } {
  const reason =
    e.message === HOST_KEY_REFUSED ? 'host-key-mismatch' : e.code === 'JIT_CREDENTIAL_FAILED' ? 'login-refused' : 'unreachable';
  return { login, code: e.code, reason };
}

/** Connect and log in; rejects with JIT_TARGET_UNREACHABLE (network, host key) or JIT_CREDENTIAL_FAILED (login refused). */
export function connectUpstream(opts: UpstreamOptions): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  return new Promise((resolve, reject) => {
    let hostKeyRefused = false;
    let authFailed = false;
    let settled = false;
    const done = (err?: JitError) => {
      if (settled) return;
      settled = true;
      if (err) {
        client.end();
        client.destroy?.();
        reject(err);
      } else resolve(client);
    };
    client.on('ready', () => done());
    client.on('error', (err: Error & { level?: string }) => {
      if (hostKeyRefused) {
        done(
          new JitError('JIT_TARGET_UNREACHABLE', {
            message: HOST_KEY_REFUSED,
            hint: "an administrator should check the target's hostKeys in the agent configuration",
            detail: err.message,
          }),
        );
      } else if (authFailed || err.level === 'client-authentication') {
        done(
          new JitError('JIT_CREDENTIAL_FAILED', {
            message: `sshd refused the session certificate for ${opts.login}`,
            hint: 'sshd needs TrustedUserCAKeys with the agent CA, and the login must exist (see docs/ssh.md)',
            detail: err.message,
          }),
        );
      } else {
        done(new JitError('JIT_TARGET_UNREACHABLE', { message: 'The SSH server cannot be reached from the agent', detail: err.message }));
      }
    });
    client.on('close', () => done(new JitError('JIT_TARGET_UNREACHABLE', { message: 'The SSH server closed the connection' })));
    let tried = false;
    client.connect({
      host: opts.target.host,
      port: opts.target.port,
      ...(opts.sock ? { sock: opts.sock as never } : {}),
      username: opts.login,
      readyTimeout: opts.target.connectTimeout * 1000,
      algorithms: { serverHostKey: hostKeyAlgorithms(opts.hostKeys) as never },
      keepaliveInterval: 15_000,
      // Only keys we can check: sshd then offers one of the configured types.
      hostVerifier: (key: Buffer) => {
        const ok = opts.hostKeys.some((k) => k.equals(key));
        if (!ok) hostKeyRefused = true;
        return ok;
      },
      authHandler: (_methods, _partial, next) => {
        if (tried) {
          authFailed = true;
          return next(false as never);
        }
        tried = true;
        return next({ type: 'publickey', username: opts.login, key: opts.cert.key } as never);
      },
    });
    presentCertificate(client, opts.cert);
  });
}
