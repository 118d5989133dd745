/**
 * One relay stream: a local TCP connection spliced to `GET <server>/v1/relay/<sessionId>`
 * upgraded to `jit-stream/1`. After the 101 the connection carries raw bytes both ways, so the
 * hot path is two `pipe`s with backpressure and no per-chunk work of ours.
 */
import type http from 'node:http';
import type https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { buildErrorResponse } from '#protocol/postgres/messages.js';
import { isJitError, JitError } from '#shared/errors/jit-error.js';
import { isStreamUpgrade, relayRefusal, relayUpgradeRequest } from './upgrade-request.js';

const DEFAULT_UPGRADE_TIMEOUT_MS = 30_000;

export interface RelayTarget {
  /** Normalised server URL (no trailing slash). */
  server: string;
  sessionId: string;
  /** Session grant (JWT); sent only as the bearer token of the upgrade request. */
  grant: string;
  /**
   * The user's own access token, sent beside the grant (RELAY_ACCESS_TOKEN_HEADER): a leaked
   * grant is useless without the user's login. Asked for per stream, so it is refreshed in time.
   */
  accessToken?: () => Promise<string>;
  /** How long to wait for the 101 (the server waits for the agent's side of the stream). */
  upgradeTimeoutMs?: number;
  /** Extra TLS options (e.g. a CA for a private server); https only. */
  tls?: https.RequestOptions;
}

export interface RelayOutcome {
  /** Whether the server accepted the stream (101). */
  upgraded: boolean;
  /** Why the stream was refused or broke, if it was. */
  error?: JitError;
}

export interface RelayHooks {
  /** The stream is open; bytes now flow. */
  onUpgraded?(): void;
  /**
   * The server refused the stream: may write a last protocol-level message (for example a
   * PostgreSQL ErrorResponse) to the local socket before it is closed.
   */
  onRefused?(local: Socket, error: JitError): void;
}

/**
 * Splice `local` to a new relay stream. Resolves when both sockets are closed; never rejects.
 * The caller keeps `local` paused until now: bytes the client sent early wait in its buffer.
 */
export function relayConnection(local: Socket, target: RelayTarget, hooks: RelayHooks = {}): Promise<RelayOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    let upgraded = false;
    let upstream: Duplex | undefined;
    let failure: JitError | undefined;

    const finish = () => {
      if (settled) return;
      settled = true;
      resolve({ upgraded, ...(failure ? { error: failure } : {}) });
    };
    let req: http.ClientRequest | undefined;
    const fail = (err: JitError) => {
      failure ??= err;
      upstream?.destroy();
      req?.destroy();
      local.destroy();
    };

    local.on('error', () => fail(new JitError('JIT_PROTOCOL_ERROR', { message: 'The local connection failed' })));
    local.on('close', () => {
      if (!upgraded) req?.destroy();
      if (!upstream || upstream.destroyed) finish();
    });

    /** Tell the local client why (in its protocol, via the hook) and close it. */
    const refuse = (err: JitError) => {
      failure ??= err;
      if (!local.destroyed) {
        try {
          hooks.onRefused?.(local, err);
        } catch {
          // The hook's message is a courtesy; closing matters more.
        }
        local.end();
        local.destroySoon?.();
      }
      finish();
    };

    const begin = (accessToken: string | undefined) => {
      if (local.destroyed) {
        finish();
        return;
      }
      const r = relayUpgradeRequest(target, accessToken);
      req = r;
      r.setNoDelay(true);
      r.setTimeout(target.upgradeTimeoutMs ?? DEFAULT_UPGRADE_TIMEOUT_MS, () => {
        fail(new JitError('JIT_TARGET_UNREACHABLE', { message: 'The relay did not open the stream in time' }));
      });

      r.on('error', (err) => {
        if (upgraded) return;
        fail(
          new JitError('JIT_SERVER_UNREACHABLE', {
            message: `The relay at ${target.server} cannot be reached`,
            detail: err.message,
            cause: err,
          }),
        );
      });

      r.on('response', (res) => {
        void relayRefusal(res).then(refuse);
      });

      r.on('upgrade', (res, socket, head) => {
        if (!isStreamUpgrade(res)) {
          socket.destroy();
          fail(new JitError('JIT_PROTOCOL_ERROR', { message: 'The relay answered with an unknown protocol' }));
          return;
        }
        if (local.destroyed) {
          socket.destroy();
          finish();
          return;
        }
        upgraded = true;
        upstream = socket;
        socket.setTimeout(0);
        socket.setNoDelay(true);
        local.setNoDelay(true);
        // Half-close: a FIN from one side travels to the other while the reverse direction keeps flowing.
        socket.allowHalfOpen = true;
        local.allowHalfOpen = true;
        if (head.length > 0) socket.unshift(head);
        socket.on('error', () => {
          failure ??= new JitError('JIT_SERVER_UNREACHABLE', { message: 'The relay connection broke' });
          local.destroy();
        });
        socket.on('close', () => {
          // Closed without both FINs (reset, server gone): take the local side down too.
          if (!local.destroyed && !(local.writableFinished && local.readableEnded)) local.destroy();
          if (local.destroyed) finish();
        });
        local.on('close', () => {
          if (!socket.destroyed && !(socket.writableFinished && socket.readableEnded)) socket.destroy();
          if (socket.destroyed) finish();
        });
        local.pipe(socket);
        socket.pipe(local);
        hooks.onUpgraded?.();
      });

      r.end();
    };

    if (!target.accessToken) {
      begin(undefined);
      return;
    }
    target
      .accessToken()
      .then(begin, (err: unknown) =>
        refuse(isJitError(err) ? err : new JitError('JIT_AUTH_REQUIRED', { detail: (err as Error)?.message })),
      );
  });
}

/** A PostgreSQL ErrorResponse (FATAL) so psql shows why a stream was refused. */
export function postgresFatal(message: string, sqlstate = '08004'): Buffer {
  return buildErrorResponse({ severity: 'FATAL', code: sqlstate, message: message.replace(/\0/g, '') });
}
