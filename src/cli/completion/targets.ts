/**
 * Target names for shell completion: from a per-profile cache of 60 s, else from the control
 * plane with a 1 s budget. Never prints an error: a TAB press offline or logged out completes
 * nothing rather than scribbling over the command line.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Ctx } from '#shared/runtime/ctx.js';
import { ApiClient } from '../api/client.js';
import type { CliServices } from '../api/services.js';

export const CACHE_TTL_MS = 60_000;
export const NETWORK_BUDGET_MS = 1_000;

const Cache = z.object({ server: z.string(), fetchedAt: z.number(), targets: z.array(z.string().max(200)).max(10_000) });

/** `$XDG_CACHE_HOME/jit` (default `~/.cache/jit`). */
export function cacheDirFor(env: Readonly<Record<string, string | undefined>>, homedir: string): string {
  const xdg = env['XDG_CACHE_HOME'];
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(homedir, '.cache'), 'jit');
}

function readCache(file: string, server: string, now: number): string[] | undefined {
  try {
    const c = Cache.parse(JSON.parse(readFileSync(file, 'utf8')));
    if (c.server !== server || now - c.fetchedAt > CACHE_TTL_MS || c.fetchedAt > now + 5000) return undefined;
    return c.targets;
  } catch {
    return undefined;
  }
}

function writeCache(dir: string, file: string, server: string, now: number, targets: string[]): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ server, fetchedAt: now, targets }), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch {
    // A read-only home just means no cache.
  }
}

/** Names of the targets the caller may use; [] when that cannot be known within the budget. */
export async function completeTargets(
  ctx: Pick<Ctx, 'env' | 'homedir' | 'clock' | 'fetch'>,
  services: () => CliServices,
): Promise<string[]> {
  try {
    const s = services();
    const dir = cacheDirFor(ctx.env, ctx.homedir);
    const file = path.join(dir, `targets-${s.settings.profile}.json`);
    const now = ctx.clock.now();
    const cached = readCache(file, s.settings.server, now);
    if (cached) return cached;
    const api = new ApiClient({ ctx, server: s.settings.server, auth: s.auth, timeoutMs: NETWORK_BUDGET_MS });
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<undefined>((resolve) => {
      timer = ctx.clock.setTimeout(() => resolve(undefined), NETWORK_BUDGET_MS);
    });
    try {
      // The token refresh, if one is due, counts against the same budget.
      const targets = await Promise.race([api.targets().then((ts) => ts.map((t) => t.name)), budget]);
      if (!targets) return [];
      writeCache(dir, file, s.settings.server, now, targets);
      return targets;
    } finally {
      ctx.clock.clearTimeout(timer);
    }
  } catch {
    return [];
  }
}
