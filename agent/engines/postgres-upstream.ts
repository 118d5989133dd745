/**
 * The agent's leg to the target PostgreSQL: TCP, optional TLS (libpq's sslmode prefer/require
 * semantics: encrypt, do not verify the certificate), SCRAM-SHA-256 login as the session role,
 * and CancelRequest forwarding.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import {
  AUTH,
  cancelRequest,
  PgProtocolError,
  parseAuthentication,
  parseBackendKeyData,
  parseErrorFields,
  parseParameterStatus,
  saslInitialResponse,
  saslResponse,
  sslRequest,
  startupMessage,
} from '#protocol/postgres/codec.js';
import { SCRAM_MECHANISM, ScramClient } from '#protocol/postgres/scram.js';
import type { AgentPostgresTarget } from '#shared/config/agent.js';
import type { Clock } from '#shared/runtime/ctx.js';
import { PacketReader } from './packet-reader.js';

/** The target answered with an ErrorResponse during startup; `raw` is the whole message to relay. */
export class UpstreamErrorResponse extends Error {
  constructor(
    readonly fields: Record<string, string>,
    readonly raw: Buffer,
  ) {
    super('the target refused the connection');
    this.name = 'UpstreamErrorResponse';
  }
}

/** Could not reach or speak to the target (network, TLS, protocol, unsupported auth). */
export class UpstreamUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamUnavailableError';
  }
}

/** Open a TCP connection to the target (bounded by a timeout). */
export function dialTarget(target: AgentPostgresTarget, clock: Clock, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: target.host, port: target.port });
    const timer = clock.setTimeout(() => {
      sock.destroy();
      reject(new UpstreamUnavailableError(`connecting to ${target.host}:${target.port} timed out`));
    }, timeoutMs);
    sock.once('connect', () => {
      clock.clearTimeout(timer);
      sock.off('error', onError);
      sock.setNoDelay(true);
      resolve(sock);
    });
    const onError = (err: Error) => {
      clock.clearTimeout(timer);
      reject(new UpstreamUnavailableError(`cannot connect to ${target.host}:${target.port}`, { cause: err }));
    };
    sock.once('error', onError);
  });
}

/**
 * Negotiate TLS on a fresh connection as sslmode asks. Returns the socket to speak on (the TLS
 * socket when encryption was set up). `require` fails when the server will not encrypt.
 */
export async function negotiateTls(raw: net.Socket, target: AgentPostgresTarget): Promise<Duplex> {
  if (target.sslmode === 'disable') return raw;
  raw.write(sslRequest());
  const answer = await new Promise<number>((resolve, reject) => {
    const onData = (b: Buffer) => {
      cleanup();
      // The server must send exactly one byte and then wait: bytes after it would be injected
      // ahead of the TLS handshake (CVE-2021-23222).
      if (b.length !== 1) reject(new UpstreamUnavailableError('the target sent unexpected data after SSLRequest'));
      else resolve(b[0]!);
    };
    const onClose = () => {
      cleanup();
      reject(new UpstreamUnavailableError('the target closed the connection during SSL negotiation'));
    };
    const cleanup = () => {
      raw.off('data', onData);
      raw.off('close', onClose);
      raw.off('error', onClose);
      raw.pause();
    };
    raw.on('data', onData);
    raw.once('close', onClose);
    raw.once('error', onClose);
  });
  if (answer === 0x4e /* N */) {
    if (target.sslmode === 'require') throw new UpstreamUnavailableError('the target does not support TLS (sslmode=require)');
    return raw;
  }
  if (answer !== 0x53 /* S */) throw new UpstreamUnavailableError('the target answered SSLRequest with an unexpected byte');
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      socket: raw,
      // libpq's prefer/require encrypt without verifying the certificate; verify-full would need a CA in the config.
      rejectUnauthorized: false,
      servername: net.isIP(target.host) ? undefined : target.host,
    });
    sock.once('secureConnect', () => {
      sock.off('error', reject);
      resolve(sock);
    });
    sock.once('error', (err) => reject(new UpstreamUnavailableError('TLS to the target failed', { cause: err })));
  });
}

export interface UpstreamSession {
  socket: Duplex;
  /** ParameterStatus messages in the order the server sent them. */
  parameters: { name: string; value: string }[];
  /** The server's real BackendKeyData, if it sent one. */
  backendKey: { pid: number; secret: Buffer } | undefined;
  /** Transaction status of the first ReadyForQuery. */
  status: 'I' | 'T' | 'E';
}

/**
 * Log in upstream on an (optionally TLS) connection: StartupMessage, SCRAM-SHA-256 only (any other
 * method fails closed, except an immediate AuthenticationOk), collect ParameterStatus and
 * BackendKeyData until ReadyForQuery. The reader is detached on return.
 */
export async function loginUpstream(socket: Duplex, params: Record<string, string>, password: string): Promise<UpstreamSession> {
  const reader = new PacketReader(socket);
  try {
    socket.write(startupMessage(params));
    let scram: ScramClient | undefined;
    let authenticated = false;
    const parameters: { name: string; value: string }[] = [];
    let backendKey: UpstreamSession['backendKey'];
    for (;;) {
      const m = await reader.message();
      const type = String.fromCharCode(m.type);
      if (type === 'E') throw new UpstreamErrorResponse(parseErrorFields(m.body), framed(m.type, m.body));
      if (type === 'N') continue; // NoticeResponse during startup: nothing the client needs.
      if (type === 'v') throw new UpstreamUnavailableError('the target does not speak protocol 3.0');
      if (type === 'R') {
        const auth = parseAuthentication(m.body);
        if (auth.code === AUTH.ok) {
          if (scram) throw new UpstreamUnavailableError('the target skipped the SCRAM final message');
          authenticated = true;
          continue;
        }
        if (authenticated) throw new PgProtocolError('authentication request after AuthenticationOk');
        if (auth.code === AUTH.sasl && 'mechanisms' in auth) {
          if (scram || !auth.mechanisms.includes(SCRAM_MECHANISM)) {
            throw new UpstreamUnavailableError('the target does not offer SCRAM-SHA-256');
          }
          scram = new ScramClient(password);
          socket.write(saslInitialResponse(SCRAM_MECHANISM, scram.clientFirst()));
          continue;
        }
        if (auth.code === AUTH.saslContinue && 'data' in auth && scram) {
          socket.write(saslResponse(scram.clientFinal(auth.data)));
          continue;
        }
        if (auth.code === AUTH.saslFinal && 'data' in auth && scram) {
          scram.verifyServerFinal(auth.data);
          scram = undefined;
          const ok = await reader.message();
          if (String.fromCharCode(ok.type) === 'E') throw new UpstreamErrorResponse(parseErrorFields(ok.body), framed(ok.type, ok.body));
          const okAuth = String.fromCharCode(ok.type) === 'R' ? parseAuthentication(ok.body) : undefined;
          if (okAuth?.code !== AUTH.ok) throw new PgProtocolError('expected AuthenticationOk');
          authenticated = true;
          continue;
        }
        // Cleartext, MD5, GSS, SSPI…: the agent only ever authenticates with SCRAM.
        throw new UpstreamUnavailableError(`the target asked for an unsupported authentication method (${auth.code})`);
      }
      if (!authenticated) throw new PgProtocolError('message before authentication completed');
      if (type === 'S') parameters.push(parseParameterStatus(m.body));
      else if (type === 'K') backendKey = parseBackendKeyData(m.body);
      else if (type === 'Z') {
        const s = String.fromCharCode(m.body[0] ?? 0x49);
        return { socket, parameters, backendKey, status: s === 'T' || s === 'E' ? s : 'I' };
      } else throw new PgProtocolError('unexpected message during startup');
    }
  } finally {
    reader.detach();
  }
}

function framed(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

/** Send a CancelRequest for the real backend key on a new connection to the target. */
export async function sendUpstreamCancel(target: AgentPostgresTarget, key: { pid: number; secret: Buffer }, clock: Clock): Promise<void> {
  const raw = await dialTarget(target, clock, 5_000);
  try {
    const sock = await negotiateTls(raw, target);
    await new Promise<void>((resolve) => {
      sock.write(cancelRequest(key.pid, key.secret), () => resolve());
    });
    // The server closes after reading the request; wait briefly for that so it is processed.
    await new Promise<void>((resolve) => {
      const t = clock.setTimeout(resolve, 2_000);
      sock.once('close', () => {
        clock.clearTimeout(t);
        resolve();
      });
      sock.resume();
      sock.end();
    });
  } finally {
    raw.destroy();
  }
}
