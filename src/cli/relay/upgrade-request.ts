/**
 * The relay upgrade request both kinds of CLI stream send (`jit connect`'s spliced connections
 * and `jit ssh`'s own socket): `GET <server>/v1/relay/<session>` with the grant as bearer, the
 * user's access token beside it and `Upgrade: jit-stream/1`; and how a refusal is read.
 */
import http from 'node:http';
import https from 'node:https';
import { API_PREFIX, RELAY_ACCESS_TOKEN_HEADER, STREAM_UPGRADE_PROTOCOL } from '#shared/contract/http.js';
import type { ErrorCode } from '#shared/errors/codes.js';
import { errorFromBody, JitError } from '#shared/errors/jit-error.js';
import { readJsonBody } from '#shared/http/read-json-body.js';
import { clean } from '../output/style.js';

const MAX_ERROR_BODY_BYTES = 64 * 1024;

export interface RelayRequestTarget {
  /** Normalised server URL (no trailing slash). */
  server: string;
  sessionId: string;
  grant: string;
  /** Extra TLS options (e.g. a CA for a private server); https only. */
  tls?: https.RequestOptions;
}

/** The upgrade request, not yet ended. One TCP connection per stream: never from or back to a pool. */
export function relayUpgradeRequest(target: RelayRequestTarget, accessToken: string | undefined): http.ClientRequest {
  const url = new URL(`${target.server}${API_PREFIX}/relay/${encodeURIComponent(target.sessionId)}`);
  const isHttps = url.protocol === 'https:';
  return (isHttps ? https : http).request({
    method: 'GET',
    protocol: url.protocol,
    hostname: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port || (isHttps ? 443 : 80),
    path: url.pathname,
    agent: false,
    headers: {
      authorization: `Bearer ${target.grant}`,
      ...(accessToken ? { [RELAY_ACCESS_TOKEN_HEADER]: accessToken } : {}),
      connection: 'Upgrade',
      upgrade: STREAM_UPGRADE_PROTOCOL,
    },
    ...(isHttps ? target.tls : {}),
  });
}

/** Whether an upgrade answer switched to our protocol (anything else is closed). */
export function isStreamUpgrade(res: http.IncomingMessage): boolean {
  return (res.headers.upgrade ?? '').toLowerCase() === STREAM_UPGRADE_PROTOCOL;
}

function codeForStatus(status: number): ErrorCode {
  if (status === 401) return 'JIT_GRANT_INVALID';
  if (status === 403) return 'JIT_ACCESS_DENIED';
  if (status === 404) return 'JIT_SESSION_NOT_FOUND';
  if (status === 410) return 'JIT_SESSION_ENDED';
  if (status === 502 || status === 503 || status === 504) return 'JIT_TARGET_UNREACHABLE';
  return 'JIT_PROTOCOL_ERROR';
}

/** The server's reason for a non-101 answer. Its text reaches a terminal: no escape sequences. */
export async function relayRefusal(res: http.IncomingMessage): Promise<JitError> {
  const body = await readJsonBody(res, MAX_ERROR_BODY_BYTES);
  const raw = errorFromBody(body, codeForStatus(res.statusCode ?? 0));
  return new JitError(raw.code, { message: clean(raw.message), hint: clean(raw.hint) });
}
