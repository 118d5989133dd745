/**
 * A cross-process lock file (O_CREAT|O_EXCL). Refresh tokens rotate and the IdP revokes the
 * whole grant when an old one is replayed, so two jit processes must never refresh at once.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import type { Clock } from '#shared/runtime/ctx.js';

export interface LockOptions {
  clock: Clock;
  /** A lock older than this belongs to a crashed process and is broken. */
  staleMs?: number;
  /** Give up waiting after this long. */
  timeoutMs?: number;
  pollMs?: number;
}

export class LockTimeoutError extends Error {
  constructor(readonly lockPath: string) {
    super(`timed out waiting for lock ${lockPath}`);
  }
}

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

function tryCreate(lockPath: string): boolean {
  try {
    const fd = openSync(lockPath, 'wx', 0o600);
    try {
      writeSync(fd, randomUUID());
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

function breakIfStale(lockPath: string, now: number, staleMs: number): void {
  try {
    if (now - statSync(lockPath).mtimeMs <= staleMs) return;
    // Rename first so only one of several waiters breaks it; a waiter that lost the rename
    // race sees ENOENT and simply retries the O_EXCL create.
    const aside = `${lockPath}.stale-${randomUUID()}`;
    renameSync(lockPath, aside);
    unlinkSync(aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Run `fn` while holding the lock file at `lockPath`; waits for other holders. */
export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, opts: LockOptions): Promise<T> {
  const staleMs = opts.staleMs ?? 30_000;
  const timeoutMs = opts.timeoutMs ?? staleMs + 15_000;
  const pollMs = opts.pollMs ?? 50;
  const started = opts.clock.now();
  while (!tryCreate(lockPath)) {
    const now = opts.clock.now();
    if (now - started > timeoutMs) throw new LockTimeoutError(lockPath);
    breakIfStale(lockPath, now, staleMs);
    await sleep(opts.clock, pollMs);
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(lockPath);
    } catch {
      // Already broken as stale by someone else: nothing to release.
    }
  }
}
