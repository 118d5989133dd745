/**
 * The reaper: session roles whose session is no longer live are dropped, at start-up (after each
 * connection to the control plane) and every `reaperInterval`.
 *
 * Fail-safe rules: only names matching `^jit_[a-z0-9]{20}$` are ever looked at; when the control
 * plane cannot answer, only roles whose VALID UNTIL has passed are dropped (a live session must
 * never lose its credential because the control plane was briefly away).
 */
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { PostgresRoles } from './credentials/postgres-roles.js';

export interface ReaperDeps {
  /** Session-role managers by target name. */
  targets: ReadonlyMap<string, Pick<PostgresRoles, 'listSessionRoles' | 'dropSessionRole'>>;
  /** Which of these sessions are live; undefined when the control plane could not answer. */
  askLive(sessionIds: string[]): Promise<string[] | undefined>;
  logger: Logger;
  clock: Clock;
}

export interface ReapResult {
  dropped: { target: string; role: string; reason: string }[];
  failed: { target: string; role: string }[];
}

/** One pass over every postgres target. */
export async function reapOnce(deps: ReaperDeps): Promise<ReapResult> {
  const found: { target: string; role: string; sessionId: string; validUntil: number | null }[] = [];
  for (const [target, roles] of deps.targets) {
    try {
      for (const r of await roles.listSessionRoles()) found.push({ target, ...r });
    } catch (err) {
      deps.logger.warn({ target, err: (err as Error).message }, 'reaper could not list session roles');
    }
  }
  const result: ReapResult = { dropped: [], failed: [] };
  if (found.length === 0) return result;
  const ids = [...new Set(found.map((f) => f.sessionId))];
  let live: Set<string> | undefined;
  try {
    const answer = await deps.askLive(ids);
    live = answer ? new Set(answer) : undefined;
  } catch {
    live = undefined;
  }
  const now = deps.clock.now();
  for (const f of found) {
    let reason: string | undefined;
    if (live) {
      if (!live.has(f.sessionId)) reason = 'orphaned';
    } else if (f.validUntil !== null && f.validUntil <= now) {
      reason = 'expired';
    }
    if (!reason) continue;
    try {
      if (await deps.targets.get(f.target)!.dropSessionRole(f.sessionId, reason)) {
        result.dropped.push({ target: f.target, role: f.role, reason });
      }
    } catch {
      result.failed.push({ target: f.target, role: f.role });
    }
  }
  if (result.dropped.length > 0 || result.failed.length > 0) {
    deps.logger.info(
      { dropped: result.dropped.length, failed: result.failed.length, controlPlaneAnswered: live !== undefined },
      'reaper pass',
    );
  }
  return result;
}

export interface RunningReaper {
  /** Run a pass now (joins the one in flight). */
  runNow(): Promise<ReapResult | undefined>;
  stop(): void;
}

/** Run `reapOnce` every `intervalMs`; passes never overlap. */
export function startReaper(deps: ReaperDeps, intervalMs: number): RunningReaper {
  let running: Promise<ReapResult | undefined> | undefined;
  const runNow = () => {
    running ??= reapOnce(deps)
      .catch((err) => {
        deps.logger.error({ err: (err as Error).message }, 'reaper pass failed');
        return undefined;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = deps.clock.setInterval(() => void runNow(), intervalMs);
  timer.unref?.();
  return { runNow, stop: () => deps.clock.clearInterval(timer) };
}
