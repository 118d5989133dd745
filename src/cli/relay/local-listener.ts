/**
 * The loopback listener of `jit connect`: accepts local clients on 127.0.0.1 and gives each
 * its own relay stream. It can listen before the session exists (so a taken port fails fast
 * and the port is ready the moment the session is); early clients wait for `activate`.
 */
import net from 'node:net';
import { JitError } from '#shared/errors/jit-error.js';
import { type RelayHooks, type RelayTarget, relayConnection } from './relay-client.js';

export interface RelayStats {
  /** Connections open right now. */
  active: number;
  /** Connections accepted so far. */
  total: number;
  /** Bytes sent to local clients (server → client). */
  bytesIn: number;
  /** Bytes received from local clients (client → server). */
  bytesOut: number;
}

export interface ListenerEvents {
  onOpen?(id: number): void;
  onClose?(id: number, outcome: { upgraded: boolean; error?: JitError }): void;
  /** Lets the caller answer a refused stream in the client's protocol. */
  onRefused?: RelayHooks['onRefused'];
}

/** Accept local TCP clients and relay each through the control plane. */
export class LocalRelayListener {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private target: RelayTarget | undefined;
  private waiters: Array<() => void> = [];
  private closing = false;
  private nextId = 1;
  // Counters of finished sockets; live ones are read from socket.bytesRead/bytesWritten on demand,
  // so the data path carries no per-chunk accounting.
  private closedIn = 0;
  private closedOut = 0;
  private total = 0;

  constructor(private readonly events: ListenerEvents = {}) {
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s));
  }

  /** Listen on 127.0.0.1 (`port` 0 = a free one). A taken port → JIT_PORT_IN_USE. */
  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        if (err.code === 'EADDRINUSE') {
          reject(new JitError('JIT_PORT_IN_USE', { message: `Port ${port} on 127.0.0.1 is already in use` }));
        } else if (err.code === 'EACCES') {
          reject(new JitError('JIT_PORT_IN_USE', { message: `Port ${port} on 127.0.0.1 is not allowed for you`, cause: err }));
        } else {
          reject(new JitError('JIT_INTERNAL', { detail: err.message, cause: err }));
        }
      };
      this.server.once('error', onError);
      this.server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
        this.server.off('error', onError);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** The session is ready: waiting and future clients get relay streams. */
  activate(target: RelayTarget): void {
    this.target = target;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Current counters (cheap; safe to call every second). */
  stats(): RelayStats {
    let bytesIn = this.closedIn;
    let bytesOut = this.closedOut;
    for (const s of this.sockets) {
      bytesIn += s.bytesWritten;
      bytesOut += s.bytesRead;
    }
    return { active: this.sockets.size, total: this.total, bytesIn, bytesOut };
  }

  /** Stop accepting and drop every open connection. */
  async close(): Promise<void> {
    this.closing = true;
    this.waiters = [];
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const id = this.nextId++;
    this.total++;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.closedIn += socket.bytesWritten;
      this.closedOut += socket.bytesRead;
    });
    // Until the stream is relayed, an error on the local side just closes it.
    socket.on('error', () => socket.destroy());
    this.events.onOpen?.(id);
    const start = () => {
      if (socket.destroyed || !this.target) return;
      void relayConnection(socket, this.target, { onRefused: this.events.onRefused }).then((outcome) => this.events.onClose?.(id, outcome));
      // pauseOnConnect left it paused; pipe() resumes it once the stream is up.
    };
    if (this.target) start();
    else this.waiters.push(start);
  }
}
