/**
 * One relay stream as a socket of our own (not spliced to a local client): `jit ssh` speaks the
 * SSH stream protocol on it. Same request as relay-client.ts (grant as bearer, the user's access
 * token beside it, `Upgrade: jit-stream/1`); a non-101 answer becomes the server's JitError.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { API_PREFIX, RELAY_ACCESS_TOKEN_HEADER, STREAM_UPGRADE_PROTOCOL } from '../../shared/contract/http.js';
import type { ErrorCode } from '../../shared/errors/codes.js';
import { errorFromBody, JitError } from '../../shared/errors/jit-error.js';
import { clean } from '../output/style.js';
import { readJsonBody } from '../../shared/http/read-json-body.js';

export interface RelayStreamTarget {
  server: string;
  sessionId: string;
  grant: string;
  accessToken: string;
  timeoutMs?: number;
  tls?: https.RequestOptions;
}

function codeForStatus(status: number): ErrorCode {
  if (status === 401) return 'JIT_GRANT_INVALID';
  if (status === 403) return 'JIT_ACCESS_DENIED';
  if (status === 404) return 'JIT_SESSION_NOT_FOUND';
  if (status === 410) return 'JIT_SESSION_ENDED';
  if (status === 502 || status === 503 || status === 504) return 'JIT_TARGET_UNREACHABLE';
  return 'JIT_PROTOCOL_ERROR';
}

/** Open the stream; resolves with the upgraded socket (bytes after the 101 already unshifted). */
export function openRelayStream(t: RelayStreamTarget): Promise<Socket> {
  const url = new URL(`${t.server}${API_PREFIX}/relay/${encodeURIComponent(t.sessionId)}`);
  const isHttps = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: JitError) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(e);
    };
    const req = (isHttps ? https : http).request({
      method: 'GET',
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || (isHttps ? 443 : 80),
      path: url.pathname,
      agent: false,
      headers: {
        authorization: `Bearer ${t.grant}`,
        [RELAY_ACCESS_TOKEN_HEADER]: t.accessToken,
        connection: 'Upgrade',
        upgrade: STREAM_UPGRADE_PROTOCOL,
      },
      ...(isHttps ? t.tls : {}),
    });
    req.setTimeout(t.timeoutMs ?? 30_000, () =>
      fail(new JitError('JIT_TARGET_UNREACHABLE', { message: 'The relay did not open the stream in time' })),
    );
    req.on('error', (err) =>
      fail(new JitError('JIT_SERVER_UNREACHABLE', { message: `The relay at ${t.server} cannot be reached`, detail: err.message, cause: err })),
    );
    req.on('response', (res) => {
      void readJsonBody(res, 64 * 1024).then((body) => {
        const raw = errorFromBody(body, codeForStatus(res.statusCode ?? 0));
        fail(new JitError(raw.code, { message: clean(raw.message), hint: clean(raw.hint) }));
      });
    });
    req.on('upgrade', (res, socket, head) => {
      if ((res.headers.upgrade ?? '').toLowerCase() !== STREAM_UPGRADE_PROTOCOL) {
        socket.destroy();
        fail(new JitError('JIT_PROTOCOL_ERROR', { message: 'The relay answered with an unknown protocol' }));
        return;
      }
      if (settled) {
        socket.destroy();
        return;
      }
      settled = true;
      socket.setTimeout(0);
      socket.setNoDelay(true);
      socket.allowHalfOpen = true;
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.end();
  });
}
