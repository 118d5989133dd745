/**
 * The inspecting relay: runs after authentication instead of the blind pipe when the session has
 * inspection rules. This file is only its I/O shell: two pumps (client → server, server → client)
 * around the protocol state machine in inspect/inspector.ts, which decides every message without
 * a socket:
 * - inspect/frontend.ts: every statement passes the one gate in src/protocol/postgres/gate.ts
 *   (inspect → policy → approval → audit → forward), whichever message carries it;
 * - inspect/backend.ts: mask → audit → forward on the way back;
 * - inspect/connection.ts: what the two directions share (answers due, statements, portals).
 *
 * A frontend message that does not parse is never forwarded: the client gets a FATAL 08P01 and
 * the connection closes. A statement is NEVER forwarded unless its `statement.executed` event has
 * been handed to a connected control channel (flushAudit runs before every write to the server);
 * when it is down the statement is refused (57P03, fail closed).
 */
import type { Duplex } from 'node:stream';
import { PgProtocolError } from '#protocol/postgres/codec.js';
import { buildErrorResponse, MAX_BACKEND_MESSAGE, MAX_FRONTEND_MESSAGE, MessageFramer } from '#protocol/postgres/messages.js';
import type { InspectContext, InspectDeps } from './inspect/connection.js';
import { Inspector } from './inspect/inspector.js';
import { Pump } from './inspect/pump.js';

export { MAX_AUDIT_PARAM, MAX_AUDIT_SQL } from './inspect/audit.js';
export type { InspectContext, InspectDeps } from './inspect/connection.js';

/** Start relaying `client` ⇄ `server` with inspection. Returns at once; the relay lives until either side closes. */
/** Q, P, B, F, d */
const OVERSIZE_ANSWERED = new Set([0x51, 0x50, 0x42, 0x46, 0x64]);

export function runInspectingRelay(client: Duplex, server: Duplex, ctx: InspectContext, deps: InspectDeps): InspectingRelay {
  const relay = new InspectingRelay(client, server, ctx, deps);
  relay.start();
  return relay;
}

/** One client connection's inspecting relay. */
export class InspectingRelay {
  private readonly inspector: Inspector;
  private readonly up: Pump;
  private readonly down: Pump;
  private closed = false;

  constructor(
    private readonly client: Duplex,
    private readonly server: Duplex,
    private readonly ctx: InspectContext,
    private readonly deps: InspectDeps,
  ) {
    this.inspector = new Inspector(ctx, deps, {
      flushToServer: () => this.up.flush(),
      endServer: () => server.end(),
    });
    const { conn } = this.inspector;
    const closed = () => this.closed;
    this.up = new Pump({
      source: client,
      sink: server,
      // An oversized Query, Parse, Bind, FunctionCall or CopyData is answered with an error naming
      // the limit, not a reset connection (the others are small by nature: too big is an attack).
      framer: new MessageFramer(deps.maxFrontendMessage ?? MAX_FRONTEND_MESSAGE, (t) => OVERSIZE_ANSWERED.has(t)),
      out: conn.toServer,
      handle: (f) =>
        f.oversized
          ? this.inspector.front.oversized(f.type, f.oversized.length, f.buf, f.start, f.end)
          : this.inspector.frontend(f.buf, f.start, f.end),
      beforeWrite: () => deps.flushAudit?.(),
      fail: (err) => this.fail(err, 'client'),
      closed,
    });
    this.down = new Pump({
      source: server,
      sink: client,
      framer: new MessageFramer(deps.maxBackendMessage ?? MAX_BACKEND_MESSAGE),
      out: conn.toClient,
      handle: (f) => this.inspector.backend(f.type, f.buf, f.start, f.end),
      fail: (err) => this.fail(err, 'server'),
      closed,
    });
  }

  start(): void {
    const { client, server } = this;
    (client as Partial<import('node:net').Socket>).setNoDelay?.(true);
    (server as Partial<import('node:net').Socket>).setNoDelay?.(true);
    // A client that leaves while its statement is held will not read the answer: stop waiting.
    client.on('end', () => this.inspector.front.abortHold());
    const kill = () => this.close();
    for (const side of [client, server]) {
      side.on('error', kill);
      side.on('close', kill);
    }
    this.up.start();
    this.down.start();
  }

  /** A CancelRequest for this connection: a statement held for approval is given up (true when there was one). */
  cancelHeld(): boolean {
    return this.inspector.front.abortHold();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inspector.front.abortHold();
    this.inspector.conn.settle();
    this.ctx.kill();
  }

  private fail(err: unknown, side: 'client' | 'server'): void {
    if (this.closed) return;
    const log = { session: this.ctx.session.id, target: this.ctx.target, stream: this.ctx.streamId };
    let fatal: Buffer;
    if (err instanceof PgProtocolError && side === 'client') {
      this.deps.logger.warn({ ...log, err: err.message }, 'client broke the protocol; closing');
      // What the server already answered goes out before our FATAL.
      if (this.client.writable) this.down.flush();
      fatal = buildErrorResponse({ severity: 'FATAL', code: err.sqlstate, message: `jit: ${err.message}` });
    } else {
      this.deps.logger.warn({ ...log, side, err: (err as Error).message }, 'inspecting relay failed; closing');
      fatal = buildErrorResponse({ severity: 'FATAL', code: 'XX000', message: 'jit: the agent could not follow this connection' });
    }
    if (this.client.writable) this.client.end(fatal);
    this.server.destroy();
    this.closed = true;
    this.ctx.kill();
  }
}
