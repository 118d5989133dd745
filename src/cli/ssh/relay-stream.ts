/**
 * One relay stream as a socket of our own (not spliced to a local client): `jit ssh` speaks the
 * SSH stream protocol on it. The request is upgrade-request.ts's, as for relay-client.ts; a
 * non-101 answer becomes the server's JitError.
 */
import type https from 'node:https';
import type { Socket } from 'node:net';
import { JitError } from '#shared/errors/jit-error.js';
import { isStreamUpgrade, relayRefusal, relayUpgradeRequest } from '../relay/upgrade-request.js';

export interface RelayStreamTarget {
  server: string;
  sessionId: string;
  grant: string;
  accessToken: string;
  timeoutMs?: number;
  tls?: https.RequestOptions;
}

/** Open the stream; resolves with the upgraded socket (bytes after the 101 already unshifted). */
export function openRelayStream(t: RelayStreamTarget): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: JitError) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(e);
    };
    const req = relayUpgradeRequest(t, t.accessToken);
    req.setTimeout(t.timeoutMs ?? 30_000, () =>
      fail(new JitError('JIT_TARGET_UNREACHABLE', { message: 'The relay did not open the stream in time' })),
    );
    req.on('error', (err) =>
      fail(
        new JitError('JIT_SERVER_UNREACHABLE', { message: `The relay at ${t.server} cannot be reached`, detail: err.message, cause: err }),
      ),
    );
    req.on('response', (res) => {
      void relayRefusal(res).then(fail);
    });
    req.on('upgrade', (res, socket, head) => {
      if (!isStreamUpgrade(res)) {
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
