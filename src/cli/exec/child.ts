/**
 * The child process of `jit exec`: started with the terminal's stdio (a TTY stays a TTY for
 * psql), signals forwarded, stopped with SIGTERM then SIGKILL when jit must end it, and its end
 * turned into a shell-style exit code (signal death → 128 + n).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Clock } from '#shared/runtime/ctx.js';
import type { Env } from './environment.js';

export interface ChildEnd {
  /** The exit code jit should exit with. */
  code: number;
  /** Set when the child died of a signal. */
  signal?: NodeJS.Signals;
  /** Set when it could not be started at all (ENOENT → 127, EACCES → 126). */
  spawnError?: string;
}

export interface RunningChild {
  pid: number | undefined;
  ended: Promise<ChildEnd>;
  /** Send a signal (no-op once it has exited). */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after graceMs if it is still there. Resolves when it has exited. */
  stop(clock: Clock, graceMs: number): Promise<ChildEnd>;
}

/** Exit code for a child's end, as shells report it. */
export function exitCodeFor(code: number | null, signal: NodeJS.Signals | null): number {
  if (signal) return 128 + (constants.signals[signal] ?? 0);
  return code ?? 1;
}

/** Start `command` (no shell: the words are passed as they are). */
export function startChild(command: string[], env: Env, opts: { spawnFn?: typeof spawn } = {}): RunningChild {
  const [file, ...args] = command;
  const child: ChildProcess = (opts.spawnFn ?? spawn)(file!, args, { stdio: 'inherit', env: env as NodeJS.ProcessEnv });
  let exited = false;
  const ended = new Promise<ChildEnd>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      // 'error' without a process: it never started (a running child's kill errors are ignored below).
      if (child.pid !== undefined) return;
      exited = true;
      resolve({
        code: err.code === 'ENOENT' ? 127 : 126,
        spawnError: err.code === 'ENOENT' ? 'command not found' : (err.code ?? err.message),
      });
    });
    child.once('exit', (code, signal) => {
      exited = true;
      resolve({ code: exitCodeFor(code, signal), ...(signal ? { signal } : {}) });
    });
  });
  const send = (sig: NodeJS.Signals) => {
    if (exited) return;
    try {
      child.kill(sig);
    } catch {
      // Gone between the check and the kill.
    }
  };
  return {
    pid: child.pid,
    ended,
    signal: send,
    async stop(clock, graceMs) {
      send('SIGTERM');
      const timer = clock.setTimeout(() => send('SIGKILL'), graceMs);
      try {
        return await ended;
      } finally {
        clock.clearTimeout(timer);
      }
    },
  };
}
