/**
 * The relay's hot loop: two sockets joined by `pipe`, which gives backpressure for free (a slow
 * reader pauses the writer, so memory stays bounded at the sockets' high-water marks). No per-chunk
 * JavaScript, no copies. Half-close travels as FIN; when either side is gone, both are destroyed.
 */
import type { Socket } from 'node:net';

export interface Spliced {
  /** Bytes from a to b and from b to a so far. */
  bytes(): { aToB: number; bToA: number };
  destroy(): void;
  closed: Promise<void>;
}

export function splice(a: Socket, b: Socket, aHead?: Buffer, bHead?: Buffer): Spliced {
  a.setNoDelay(true);
  b.setNoDelay(true);
  if (aHead && aHead.length > 0) b.write(aHead);
  if (bHead && bHead.length > 0) a.write(bHead);
  let done = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => {
    resolveClosed = r;
  });
  const destroy = () => {
    if (done) return;
    done = true;
    a.destroy();
    b.destroy();
    resolveClosed();
  };
  a.on('error', destroy);
  b.on('error', destroy);
  a.on('close', destroy);
  b.on('close', destroy);
  a.pipe(b);
  b.pipe(a);
  return {
    bytes: () => ({ aToB: a.bytesRead, bToA: b.bytesRead }),
    destroy,
    closed,
  };
}
