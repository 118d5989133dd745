/** Small helpers for answering on a raw socket after an HTTP `upgrade` event. */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { STREAM_UPGRADE_PROTOCOL } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import { parseBearer } from '#shared/http/bearer.js';

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  410: 'Gone',
  426: 'Upgrade Required',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Answer an upgrade request with an HTTP error carrying a JSON ErrorBody, then close. */
export function rejectUpgrade(socket: Duplex, err: unknown): void {
  const e = err instanceof JitError ? err : new JitError('JIT_INTERNAL');
  const body = JSON.stringify(e.toBody());
  const status = e.httpStatus;
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
        'Content-Type: application/json\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
  }
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Complete a jit-stream upgrade: after this line the socket carries raw bytes. */
export function acceptStreamUpgrade(socket: Duplex): void {
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${STREAM_UPGRADE_PROTOCOL}\r\n\r\n`);
}

/** The bearer token of a request, or undefined. Bounded so a huge header cannot cost much. */
export function bearerToken(req: IncomingMessage): string | undefined {
  return parseBearer(req.headers.authorization);
}

/** Whether the request asks for our raw stream upgrade. */
export function wantsStreamUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === STREAM_UPGRADE_PROTOCOL;
}
