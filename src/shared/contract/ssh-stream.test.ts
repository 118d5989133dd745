import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameError, FrameType, SSH_MAX_FRAME } from './ssh-stream.js';

describe('SSH stream frames', () => {
  it('decodes frames split anywhere and joined arbitrarily', () => {
    const bytes = Buffer.concat([
      encodeFrame(FrameType.stdin, 'abc'),
      encodeFrame(FrameType.eof),
      encodeFrame(FrameType.stdout, Buffer.alloc(70_00, 1)),
    ]);
    const dec = new FrameDecoder();
    const got: number[] = [];
    for (let i = 0; i < bytes.length; i += 7) for (const f of dec.push(bytes.subarray(i, i + 7))) got.push(f.type, f.payload.length);
    expect(got).toEqual([FrameType.stdin, 3, FrameType.eof, 0, FrameType.stdout, 7000]);
  });

  it('refuses a frame above the limit', () => {
    const h = Buffer.alloc(5);
    h[0] = FrameType.stdin;
    h.writeUInt32BE(SSH_MAX_FRAME + 1, 1);
    expect(() => new FrameDecoder().push(h)).toThrow(FrameError);
    expect(() => encodeFrame(FrameType.stdin, Buffer.alloc(SSH_MAX_FRAME + 1))).toThrow();
  });

  it('regression: the SSH banner in the same chunk as the stdio REQUEST is left as raw bytes', () => {
    // Once decoded as a frame, "SSH-2.0-…" read as a 1.4 GB length and the stream was dropped.
    const dec = new FrameDecoder();
    const banner = Buffer.from('SSH-2.0-OpenSSH_9.2\r\n');
    const frames = dec.push(Buffer.concat([encodeFrame(FrameType.request, '{"v":1,"mode":"stdio"}'), banner]), 1);
    expect(frames).toHaveLength(1);
    expect(dec.rest().equals(banner)).toBe(true);
  });
});
