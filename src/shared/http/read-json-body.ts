import type { IncomingMessage } from 'node:http';

/**
 * The JSON body of an HTTP answer (an ErrorBody after a refused upgrade), read up to maxBytes.
 * Never rejects: an oversized, broken or non-JSON body gives undefined, which callers turn into
 * their default error code.
 */
export function readJsonBody(res: IncomingMessage, maxBytes: number): Promise<unknown> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        res.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(c);
    });
    res.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        resolve(undefined);
      }
    });
    res.on('error', () => resolve(undefined));
    res.on('aborted', () => resolve(undefined));
  });
}
