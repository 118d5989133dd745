/**
 * Reads PostgreSQL packets from a socket during the startup phase only. After authentication
 * the reader is detached and whatever it buffered is pushed back into the socket, so the relay
 * is a plain `pipe` with no per-chunk JavaScript.
 */
import type { Duplex } from 'node:stream';
import {
  MAX_STARTUP_PHASE_MESSAGE,
  PgProtocolError,
  parseStartupPacket,
  readTypedMessage,
  type StartupPacket,
} from '#protocol/postgres/codec.js';

/** The peer closed (or errored) before a full packet arrived. */
export class PeerClosedError extends Error {
  constructor() {
    super('connection closed during startup');
    this.name = 'PeerClosedError';
  }
}

export class PacketReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private closed = false;
  private detached = false;

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    // Nobody may buffer unbounded bytes ahead of the startup phase.
    if (this.buf.length > 2 * MAX_STARTUP_PHASE_MESSAGE + 16) this.sock.destroy();
    this.wake();
  };
  private readonly onEnd = (): void => {
    this.closed = true;
    this.wake();
  };

  constructor(private readonly sock: Duplex) {
    sock.on('data', this.onData);
    sock.on('end', this.onEnd);
    sock.on('close', this.onEnd);
    sock.on('error', this.onEnd);
    // A socket paused earlier (e.g. after SSL negotiation) does not resume by adding a listener.
    sock.resume();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private async next<T>(parse: (buf: Buffer) => { value: T; length: number } | null): Promise<T> {
    for (;;) {
      if (this.detached) throw new Error('reader detached');
      const r = parse(this.buf);
      if (r) {
        this.buf = this.buf.subarray(r.length);
        return r.value;
      }
      if (this.closed) throw new PeerClosedError();
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  /** The untyped first packet (SSLRequest, GSSENCRequest, CancelRequest or StartupMessage). */
  startupPacket(): Promise<StartupPacket> {
    return this.next((b) => {
      const r = parseStartupPacket(b);
      return r ? { value: r.packet, length: r.length } : null;
    });
  }

  /** One typed message (type byte + int32 length); the body is a copy-free view. */
  message(maxLength = MAX_STARTUP_PHASE_MESSAGE): Promise<{ type: number; body: Buffer }> {
    return this.next((b) => {
      const m = readTypedMessage(b, 0, maxLength);
      return m ? { value: { type: m.type, body: m.body }, length: m.length } : null;
    });
  }

  /** Bytes received but not yet consumed. */
  get buffered(): number {
    return this.buf.length;
  }

  /** Fail when the peer sent bytes ahead of an answer it must wait for (e.g. after SSLRequest). */
  assertNothingBuffered(): void {
    if (this.buf.length > 0) throw new PgProtocolError('unexpected data after a negotiation request');
  }

  /**
   * Stop reading: remove our listeners, pause the socket and push unread bytes back into it, so
   * the next consumer (pipe or TLS) sees them first.
   */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    this.sock.off('data', this.onData);
    this.sock.off('end', this.onEnd);
    this.sock.off('close', this.onEnd);
    this.sock.off('error', this.onEnd);
    this.sock.pause();
    if (this.buf.length > 0) this.sock.unshift(this.buf);
    this.buf = Buffer.alloc(0);
    this.wake();
  }
}
