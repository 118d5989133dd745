/**
 * The runtime context: everything that touches the process, the clock or the outside world.
 * Built once in the entry point and passed down; only this folder touches `process`, `Date.now`
 * and timers directly, so tests control time and I/O without global mocks.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { createLogger, type Logger } from '../log.js';
import { readEnvFlag, readEnvText } from './env.js';

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  setInterval(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(t: NodeJS.Timeout | undefined): void;
  clearInterval(t: NodeJS.Timeout | undefined): void;
}

export interface Io {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: Writable & { isTTY?: boolean; columns?: number };
  stderr: Writable & { isTTY?: boolean };
}

export interface Ctx {
  io: Io;
  env: Readonly<Record<string, string | undefined>>;
  clock: Clock;
  fetch: typeof fetch;
  logger: Logger;
  random(bytes: number): Buffer;
  homedir: string;
  cwd: string;
  platform: NodeJS.Platform;
  pid: number;
  /** Register a handler for SIGINT/SIGTERM/SIGHUP; returns an unsubscribe function. */
  onSignal(handler: (signal: NodeJS.Signals) => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearTimeout: (t) => clearTimeout(t),
  clearInterval: (t) => clearInterval(t),
};

/** The real context for a process. */
export function createSystemCtx(overrides: Partial<Ctx> = {}): Ctx {
  const debug = readEnvFlag(process.env, 'JIT_DEBUG') || process.argv.includes('--debug');
  let logger: Logger | undefined;
  const ctx: Ctx = {
    io: { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
    env: process.env,
    clock: systemClock,
    fetch: globalThis.fetch.bind(globalThis),
    // Created on first use: a CLI command that never logs does not pay for loading pino.
    get logger(): Logger {
      logger ??= createLogger({ level: readEnvText(process.env, 'JIT_LOG_LEVEL') ?? (debug ? 'debug' : 'warn') });
      return logger;
    },
    random: (n) => randomBytes(n),
    homedir: os.homedir(),
    cwd: process.cwd(),
    platform: process.platform,
    pid: process.pid,
    onSignal(handler) {
      const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
      for (const s of signals) process.on(s, handler);
      return () => {
        for (const s of signals) process.off(s, handler);
      };
    },
  };
  // defineProperties, not assign: an override may replace the lazy logger getter.
  return Object.defineProperties(ctx, Object.getOwnPropertyDescriptors(overrides));
}
