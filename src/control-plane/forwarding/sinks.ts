/**
 * Delivery of one batch to one destination. A sink resolves only once the receiver has
 * acknowledged the whole batch; anything else rejects, and the forwarder sends the batch again.
 *
 * - http: POST of JSON lines; a 2xx answer is the acknowledgement.
 * - syslog: one TCP/TLS connection per batch, RFC 5424 messages with octet-counting framing
 *   (RFC 6587 / RFC 5425). Syslog has no application-level acknowledgement, so the batch counts as
 *   delivered once the receiver has read up to our FIN and closed its side.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { AuditDestination } from '#shared/config/server.js';
import { JitError } from '#shared/errors/jit-error.js';
import { type ForwardRecord, jsonLines, octetFrame, syslogMessage } from './record.js';

export interface Sink {
  /** Where it sends, for status output (no credentials). */
  readonly endpoint: string;
  send(records: readonly ForwardRecord[]): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export interface SinkDeps {
  env: Readonly<Record<string, string | undefined>>;
  /** Resolve a path from the config (relative to the config file). */
  resolve(p: string): string;
}

/** Build the sink of a configured destination; refuses plaintext beyond loopback. */
export async function createSink(d: AuditDestination, deps: SinkDeps): Promise<Sink> {
  const timeoutMs = Math.max(1, d.timeout) * 1000;
  const ca = d.caFile ? readFileSync(deps.resolve(d.caFile), 'utf8') : undefined;
  if (d.type === 'http') {
    const url = new URL(d.url!);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.has(url.hostname))) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: `audit.forward ${d.name}: ${url.protocol}// is allowed only on loopback`,
        hint: 'use an https:// URL',
      });
    }
    if (d.tokenEnv && !deps.env[d.tokenEnv]) {
      throw new JitError('JIT_CONFIG_INVALID', { message: `audit.forward ${d.name}: environment variable ${d.tokenEnv} is not set` });
    }
    const token = d.tokenEnv ? deps.env[d.tokenEnv] : undefined;
    let fetcher: typeof fetch = globalThis.fetch;
    if (ca) {
      const { Agent, fetch: undiciFetch } = await import('undici');
      const dispatcher = new Agent({ connect: { ca } });
      fetcher = ((input: string | URL, init?: RequestInit) =>
        undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
    }
    const endpoint = `${url.origin}${url.pathname}`;
    return {
      endpoint,
      async send(records) {
        const first = records[0]!.id;
        const last = records[records.length - 1]!.id;
        const res = await fetcher(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-ndjson',
            'idempotency-key': `jit-audit-${first}-${last}`,
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body: jsonLines(records),
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'error',
        });
        await res.body?.cancel().catch(() => {});
        if (res.status < 200 || res.status >= 300) throw new Error(`receiver answered HTTP ${res.status}`);
      },
    };
  }
  const host = d.host!;
  const port = d.port!;
  if (d.transport === 'tcp' && !LOOPBACK.has(host)) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `audit.forward ${d.name}: plain tcp syslog is allowed only on loopback`,
      hint: 'set transport: tls',
    });
  }
  return {
    endpoint: `${d.transport}://${host}:${port}`,
    send(records) {
      const payload = Buffer.concat(records.map((r) => octetFrame(syslogMessage(r, { facility: d.facility }))));
      return new Promise<void>((resolve, reject) => {
        const socket =
          d.transport === 'tls'
            ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...(ca ? { ca } : {}) })
            : net.connect({ host, port });
        let settled = false;
        const done = (err?: Error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket.destroy();
          if (err) reject(err);
          else resolve();
        };
        const timer = setTimeout(() => done(new Error('receiver did not acknowledge in time')), timeoutMs);
        socket.once(d.transport === 'tls' ? 'secureConnect' : 'connect', () => {
          socket.end(payload);
        });
        socket.on('data', () => {});
        socket.once('error', (err) => done(err));
        // The receiver closing after our FIN means it read every byte we sent.
        socket.once('close', (hadError) => done(hadError ? new Error('connection failed') : undefined));
      });
    },
  };
}
