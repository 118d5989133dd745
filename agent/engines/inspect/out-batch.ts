/**
 * Collects what one pass over received messages sends to a socket: runs of forwarded messages
 * stay views of the received chunk (adjacent ones merge into one range, so a chunk forwarded
 * untouched is written as the chunk itself), synthesized or rewritten messages are appended.
 * One write per pass (cork/uncork when there are several pieces), never one per message.
 */
import type { Duplex } from 'node:stream';

export class OutBatch {
  private readonly pieces: Buffer[] = [];
  private buf: Buffer | undefined;
  private start = 0;
  private end = 0;

  /** Forward buf[start, end) as is. */
  pass(buf: Buffer, start: number, end: number): void {
    if (buf === this.buf && start === this.end) {
      this.end = end;
      return;
    }
    this.closeRange();
    this.buf = buf;
    this.start = start;
    this.end = end;
  }

  /** Send a message of our own (or a rewritten one) at this point of the stream. */
  add(message: Buffer): void {
    this.closeRange();
    this.pieces.push(message);
  }

  get empty(): boolean {
    return this.buf === undefined && this.pieces.length === 0;
  }

  /** Write everything collected; returns the socket's write() result (false = back off). */
  writeTo(sock: Duplex): boolean {
    this.closeRange();
    const n = this.pieces.length;
    if (n === 0) return true;
    if (sock.destroyed || !sock.writable) {
      this.pieces.length = 0;
      return true;
    }
    let ok = true;
    if (n === 1) ok = sock.write(this.pieces[0]!);
    else {
      sock.cork();
      for (const p of this.pieces) ok = sock.write(p);
      sock.uncork();
    }
    this.pieces.length = 0;
    return ok;
  }

  /** Everything collected, as one buffer, and forget it (what writeTo would have written). */
  take(): Buffer {
    this.closeRange();
    const out = Buffer.concat(this.pieces);
    this.pieces.length = 0;
    return out;
  }

  private closeRange(): void {
    const b = this.buf;
    if (b === undefined) return;
    this.pieces.push(this.start === 0 && this.end === b.length ? b : b.subarray(this.start, this.end));
    this.buf = undefined;
  }
}
