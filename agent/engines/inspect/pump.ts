/**
 * One direction of the inspecting relay: frames what `source` sends, hands each message to
 * `handle`, and writes what the pass collected to `sink` once per pass. A message whose handling
 * returns a promise stops the reading (nothing behind it is handled, so order is kept) until it
 * settles; a sink that is full pauses the source until it drains. When the source ends, the sink
 * is ended once nothing is pending.
 */
import type { Duplex } from 'node:stream';
import type { MessageFramer } from '#protocol/postgres/messages.js';
import type { OutBatch } from './out-batch.js';

export interface PumpOptions {
  source: Duplex;
  sink: Duplex;
  framer: MessageFramer;
  out: OutBatch;
  /** Decide one framed message (framer.type / buf / start / end); a promise to wait for. */
  handle(framer: MessageFramer): Promise<void> | undefined;
  /** Called before anything collected is written (audit before forward). */
  beforeWrite?(): void;
  /** The handler threw or rejected. */
  fail(err: unknown): void;
  closed(): boolean;
}

export class Pump {
  private busy = false;
  private backoff = false;
  private ended = false;

  constructor(private readonly o: PumpOptions) {}

  /** Start reading the source. */
  start(): void {
    const { source } = this.o;
    source.on('data', (chunk: Buffer) => this.push(chunk));
    source.on('end', () => this.sourceEnded());
    source.resume();
  }

  /** True while a message's handling is pending. */
  get waiting(): boolean {
    return this.busy;
  }

  /** Write what has been collected (also between messages, e.g. before waiting on the server). */
  flush(): void {
    const { out, sink, source } = this.o;
    if (out.empty) return;
    this.o.beforeWrite?.();
    if (!out.writeTo(sink) && !this.backoff) {
      this.backoff = true;
      source.pause();
      sink.once('drain', () => {
        this.backoff = false;
        if (!this.busy && !this.o.closed()) source.resume();
      });
    }
  }

  private push(chunk: Buffer): void {
    this.o.framer.push(chunk);
    if (!this.busy) this.run();
  }

  private run(): void {
    const { framer, source } = this.o;
    try {
      while (!this.o.closed() && framer.next()) {
        const pending = this.o.handle(framer);
        if (pending) {
          this.busy = true;
          this.flush();
          source.pause();
          pending.then(
            () => {
              this.busy = false;
              if (this.o.closed()) return;
              if (!this.backoff) source.resume();
              this.run();
              if (this.ended && !this.busy) this.endSink();
            },
            (err) => this.o.fail(err),
          );
          return;
        }
      }
      this.flush();
    } catch (err) {
      this.o.fail(err);
    }
  }

  private sourceEnded(): void {
    this.ended = true;
    if (!this.busy) this.endSink();
  }

  private endSink(): void {
    this.flush();
    this.o.sink.end();
  }
}
