/**
 * What travels over a jit stream of an SSH session, between `jit ssh` and the agent
 * (docs/architecture.md, "SSH streams").
 *
 * Frames: `type (1 byte) | length (uint32 BE) | payload`, payload ≤ SSH_MAX_FRAME. The CLI sends
 * REQUEST first (JSON), then STDIN / RESIZE / SIGNAL / EOF; the agent answers with STDOUT /
 * STDERR and ends with one EXIT (JSON) before closing. In `stdio` mode (ProxyCommand) the REQUEST
 * frame is the only frame: after it the stream carries a raw SSH connection between the user's
 * OpenSSH client and the agent's SSH server.
 */
import { z } from 'zod';

export const SSH_STREAM_VERSION = 1;
/** Largest payload either side sends or accepts. */
export const SSH_MAX_FRAME = 64 * 1024;

export const FrameType = {
  request: 0x01,
  stdin: 0x02,
  resize: 0x03,
  signal: 0x04,
  eof: 0x05,
  stdout: 0x11,
  stderr: 0x12,
  exit: 0x13,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const SshRequest = z.object({
  v: z.literal(SSH_STREAM_VERSION),
  mode: z.enum(['exec', 'shell', 'stdio']),
  /** exec: the command line, run by the login's shell on the host (as ssh does). */
  command: z
    .string()
    .min(1)
    .max(32 * 1024)
    .optional(),
  /** Allocate a PTY (shell from a terminal; exec with -t). */
  pty: z.boolean().default(false),
  term: z
    .string()
    .regex(/^[A-Za-z0-9._+-]{1,64}$/)
    .default('xterm-256color'),
  cols: z.number().int().min(1).max(1000).default(80),
  rows: z.number().int().min(1).max(1000).default(24),
  /** Sent as SSH env requests; sshd's AcceptEnv decides what is kept. */
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/), z.string().max(1024)).default({}),
});
export type SshRequest = z.infer<typeof SshRequest>;

export const SshExit = z.object({
  /** The remote command's exit status. */
  status: z.number().int().min(0).max(255).optional(),
  /** The signal that ended it (without SIG). */
  signal: z.string().max(32).optional(),
  /** A guardrail refused the command; its one-line reason went to stderr. */
  blocked: z.object({ rule: z.string().max(200), action: z.enum(['block', 'require-approval']) }).optional(),
  /** jit could not run it (target unreachable, login refused…): a stable error code and a message. */
  error: z.object({ code: z.string().max(64), message: z.string().max(500) }).optional(),
});
export type SshExit = z.infer<typeof SshExit>;

/** Remote exit status of a command a guardrail refused (POSIX shells use 126 for "cannot execute"). */
export const SSH_BLOCKED_STATUS = 126;

/** One frame as bytes. */
export function encodeFrame(type: FrameType, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (body.length > SSH_MAX_FRAME) throw new RangeError('frame too large');
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

/** RESIZE payload: uint16 cols, uint16 rows. */
export function resizePayload(cols: number, rows: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(Math.max(1, Math.min(1000, cols)), 0);
  b.writeUInt16BE(Math.max(1, Math.min(1000, rows)), 2);
  return b;
}

export class FrameError extends Error {}

/** Streaming decoder: push chunks, get whole frames; a frame above the limit is an error. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  /** @param max stop after this many frames (the REQUEST of stdio mode is followed by raw SSH bytes). */
  push(chunk: Buffer, max = Number.POSITIVE_INFINITY): { type: number; payload: Buffer }[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: { type: number; payload: Buffer }[] = [];
    while (this.buf.length >= 5 && frames.length < max) {
      const len = this.buf.readUInt32BE(1);
      if (len > SSH_MAX_FRAME) throw new FrameError('frame too large');
      if (this.buf.length < 5 + len) break;
      frames.push({ type: this.buf[0]!, payload: this.buf.subarray(5, 5 + len) });
      this.buf = this.buf.subarray(5 + len);
    }
    return frames;
  }

  /** Bytes received after the last whole frame (stdio mode hands them to the SSH server). */
  rest(): Buffer {
    const r = this.buf;
    this.buf = Buffer.alloc(0);
    return r;
  }
}
