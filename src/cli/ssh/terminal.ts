/**
 * `jit ssh` on its side of the stream: sends the request, then the terminal's input, size
 * changes and signals as frames; writes the host's stdout/stderr as they come; returns how it
 * ended. In a PTY shell the local terminal is in raw mode (Ctrl-C, Ctrl-Z and escape keys reach
 * the host) and is restored on every way out.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import {
  encodeFrame,
  FrameDecoder,
  FrameType,
  resizePayload,
  SSH_STREAM_VERSION,
  SshExit,
  type SshRequest,
} from '#shared/contract/ssh-stream.js';

export interface TerminalIo {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: Writable & { isTTY?: boolean; columns?: number; rows?: number };
  stderr: Writable;
}

export interface TerminalRequest {
  mode: 'exec' | 'shell';
  command?: string;
  pty: boolean;
  term: string;
  env?: Record<string, string>;
}

export type TerminalEnd =
  | { kind: 'exit'; exit: SshExit }
  /** The stream closed without an exit (agent, relay or network gone). */
  | { kind: 'lost' }
  /** We stopped it (signal, or the server ended the session). */
  | { kind: 'stopped'; why: string };

export interface TerminalDeps {
  io: TerminalIo;
  /** SIGINT/SIGTERM/SIGHUP handler registration (Ctx.onSignal). */
  onSignal(handler: (signal: NodeJS.Signals) => void): () => void;
  /** Resolves with a reason when the session must stop (server ended it). */
  stop: Promise<string>;
}

const MAX_STDIN_FRAME = 32 * 1024;

/** Run the request on the stream until it ends. */
export function runTerminal(socket: Duplex, req: TerminalRequest, deps: TerminalDeps): Promise<TerminalEnd> {
  const { io } = deps;
  const raw = req.mode === 'shell' && req.pty && Boolean(io.stdin.isTTY) && typeof io.stdin.setRawMode === 'function';
  const size = () => ({ cols: io.stdout.columns || 80, rows: io.stdout.rows || 24 });
  const request: SshRequest = {
    v: SSH_STREAM_VERSION,
    mode: req.mode,
    ...(req.command !== undefined ? { command: req.command } : {}),
    pty: req.pty,
    term: req.term,
    ...size(),
    env: req.env ?? {},
  };
  return new Promise<TerminalEnd>((resolve) => {
    let finished = false;
    let interrupts = 0;
    const cleanups: (() => void)[] = [];
    const finish = (end: TerminalEnd) => {
      if (finished) return;
      finished = true;
      for (const c of cleanups.splice(0).reverse()) {
        try {
          c();
        } catch {
          // Restoring the terminal must go on even if one step fails.
        }
      }
      resolve(end);
    };
    const send = (type: FrameType, payload?: Buffer | string) => {
      if (!socket.destroyed && !socket.writableEnded) return socket.write(encodeFrame(type, payload));
      return true;
    };

    if (raw) {
      io.stdin.setRawMode!(true);
      cleanups.push(() => io.stdin.setRawMode!(false));
    }
    send(FrameType.request, JSON.stringify(request));

    // stdin → STDIN frames (with backpressure), EOF when it ends.
    const onStdin = (chunk: Buffer) => {
      for (let i = 0; i < chunk.length; i += MAX_STDIN_FRAME) {
        if (!send(FrameType.stdin, chunk.subarray(i, i + MAX_STDIN_FRAME))) {
          io.stdin.pause();
          socket.once('drain', () => io.stdin.resume());
        }
      }
    };
    const onStdinEnd = () => send(FrameType.eof);
    io.stdin.on('data', onStdin);
    io.stdin.once('end', onStdinEnd);
    io.stdin.resume();
    cleanups.push(() => {
      io.stdin.off('data', onStdin);
      io.stdin.off('end', onStdinEnd);
      io.stdin.pause();
    });

    if (req.pty) {
      const onResize = () => {
        const s = size();
        send(FrameType.resize, resizePayload(s.cols, s.rows));
      };
      io.stdout.on('resize', onResize);
      cleanups.push(() => io.stdout.off('resize', onResize));
    }

    const offSignal = deps.onSignal((signal) => {
      // Without raw mode Ctrl-C arrives as SIGINT: pass the first on to the command, stop on the second.
      if (signal === 'SIGINT' && !raw && interrupts++ === 0) {
        send(FrameType.signal, 'INT');
        return;
      }
      socket.destroy();
      finish({ kind: 'stopped', why: `interrupted by ${signal}` });
    });
    cleanups.push(offSignal);
    void deps.stop.then((why) => {
      socket.destroy();
      finish({ kind: 'stopped', why });
    });

    // Frames from the agent.
    let exit: SshExit | undefined;
    const dec = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => {
      let frames: ReturnType<FrameDecoder['push']>;
      try {
        frames = dec.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const f of frames) {
        if (f.type === FrameType.stdout) {
          if (!io.stdout.write(f.payload)) {
            socket.pause();
            io.stdout.once('drain', () => socket.resume());
          }
        } else if (f.type === FrameType.stderr) {
          io.stderr.write(f.payload);
        } else if (f.type === FrameType.exit) {
          try {
            exit = SshExit.parse(JSON.parse(f.payload.toString('utf8')));
          } catch {
            exit = { error: { code: 'JIT_PROTOCOL_ERROR', message: 'The agent sent a malformed exit' } };
          }
        }
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => finish(exit ? { kind: 'exit', exit } : { kind: 'lost' }));
    socket.on('end', () => socket.end());
  });
}

/** Exit code of jit for a remote exit: the status, or 128 + the signal's number like a shell. */
export function exitCodeOf(exit: SshExit): number {
  if (exit.status !== undefined) return exit.status;
  const numbers: Record<string, number> = {
    HUP: 1,
    INT: 2,
    QUIT: 3,
    ILL: 4,
    ABRT: 6,
    FPE: 8,
    KILL: 9,
    SEGV: 11,
    PIPE: 13,
    ALRM: 14,
    TERM: 15,
    USR1: 10,
    USR2: 12,
  };
  return 128 + (numbers[(exit.signal ?? '').replace(/^SIG/, '')] ?? 127);
}
