/**
 * The CLI's side of a session's life, shared by `jit connect`, `jit exec` and `jit ssh`: once the
 * server created a session (and admit.ts accepted it), the lease heartbeats it (chained, never
 * overlapping; a failed heartbeat is a warning, not an end: the server ends a session whose
 * heartbeats stay away), notices when the server ends it or its time runs out, and ends it on the
 * way out (bounded, idempotent). How a session ended becomes words and an error — hence an exit
 * code — here only (sessionEndedError).
 */
import type { EndReason, Session } from '#shared/contract/http.js';
import { describeEndReason } from '#shared/contract/end-reasons.js';
import { JitError, isJitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { ApiClient } from '../api/client.js';
import { clean } from '../output/style.js';

/** How long ending a session on the way out may take before the CLI gives up (the server ends it by heartbeat). */
export const END_TIMEOUT_MS = 5_000;

/** Why a lease stopped on its own. */
export type LeaseEnd =
  | { by: 'server'; session: Session; reason: EndReason | undefined; message: string }
  | { by: 'expired'; session: Session };

export interface Lease {
  /** The latest state the server reported. */
  readonly session: Session;
  /** Resolves when the server ends the session or its time runs out; never rejects. */
  readonly ended: Promise<LeaseEnd>;
  /**
   * End the session on the server (idempotent, bounded; no call when the server ended it).
   * `endedOnServer` is true when the server confirmed, or the session was already gone.
   */
  end(reason?: 'exit' | 'killed'): Promise<{ session: Session; endedOnServer: boolean }>;
}

export interface LeaseDeps {
  api: Pick<ApiClient, 'heartbeat' | 'endSession' | 'sessions'>;
  clock: Clock;
}

export interface LeaseHooks {
  /** A heartbeat failed (text), or the next one succeeded again (undefined). */
  onWarning?(message: string | undefined): void;
}

/** Keep `session` alive from now on; `heartbeatIntervalSeconds` is the server's. */
export function startLease(
  deps: LeaseDeps,
  created: { session: Session; heartbeatIntervalSeconds: number },
  hooks: LeaseHooks = {},
): Lease {
  const { api, clock } = deps;
  const id = created.session.id;
  let latest = created.session;
  let stopped = false;
  let resolveEnded!: (end: LeaseEnd) => void;
  const ended = new Promise<LeaseEnd>((r) => {
    resolveEnded = r;
  });
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let expiryTimer: NodeJS.Timeout | undefined;
  const stop = () => {
    stopped = true;
    clock.clearTimeout(heartbeatTimer);
    clock.clearTimeout(expiryTimer);
  };
  const finish = (end: LeaseEnd) => {
    if (stopped) return;
    stop();
    resolveEnded(end);
  };

  const intervalMs = Math.max(1, created.heartbeatIntervalSeconds) * 1000;
  const heartbeat = async () => {
    if (stopped) return;
    try {
      latest = await api.heartbeat(id);
      hooks.onWarning?.(undefined);
      if (latest.state === 'ended') {
        finish({ by: 'server', session: latest, reason: latest.endReason, message: describeEndReason(latest.endReason) });
        return;
      }
    } catch (err) {
      if (isGone(err)) {
        // The 410 carries only an error body: ask why, best effort.
        const reason = await endReasonOf(api, id);
        finish({
          by: 'server',
          session: { ...latest, state: 'ended' },
          reason,
          message: reason ? describeEndReason(reason) : (err as JitError).message,
        });
        return;
      }
      if (!stopped) hooks.onWarning?.(`heartbeat failed: ${isJitError(err) ? err.message : 'unexpected error'}`);
    }
    // Chained, not setInterval: a slow server never gets overlapping heartbeats.
    if (!stopped) heartbeatTimer = clock.setTimeout(() => void heartbeat(), intervalMs);
  };
  heartbeatTimer = clock.setTimeout(() => void heartbeat(), intervalMs);

  const expiresAt = Date.parse(created.session.expiresAt);
  // An unparsable expiry leaves ending to the server rather than ending at once.
  if (!Number.isNaN(expiresAt)) {
    expiryTimer = clock.setTimeout(
      () => {
        finish({ by: 'expired', session: latest });
        // Make sure it is over on the server now, not at its next sweep.
        void lease.end('exit');
      },
      Math.max(0, Math.min(expiresAt - clock.now(), 2 ** 31 - 1)),
    );
  }

  let ending: Promise<{ session: Session; endedOnServer: boolean }> | undefined;
  let endedByServer = false;
  void ended.then((e) => {
    endedByServer = e.by === 'server';
  });
  const lease: Lease = {
    get session() {
      return latest;
    },
    ended,
    end(reason = 'exit') {
      stop();
      // Ended by the server: nothing to ask.
      if (endedByServer) return Promise.resolve({ session: latest, endedOnServer: true });
      ending ??= api.endSession(id, reason, END_TIMEOUT_MS).then(
        (s) => {
          latest = s;
          return { session: s, endedOnServer: true };
        },
        // Already gone is as good as ended.
        (err) => ({ session: latest, endedOnServer: isGone(err) }),
      );
      return ending;
    },
  };
  return lease;
}

/** The words for how a lease ended, completing "Session X ended: …". */
export function leaseEndWords(end: LeaseEnd): string {
  return end.by === 'expired' ? describeEndReason('expired') : end.message;
}

/**
 * The error a command ends with when its session ended under it (JIT_SESSION_ENDED, so the exit
 * code is EXIT.sessionEnded): "Session X ended[ while …]: <why>".
 */
export function sessionEndedError(end: LeaseEnd, opts: { during?: string; hint?: string } = {}): JitError {
  const during = opts.during ? ` while ${opts.during}` : '';
  return new JitError('JIT_SESSION_ENDED', {
    message: `Session ${end.session.id} ended${during}: ${clean(leaseEndWords(end))}`,
    ...(opts.hint ? { hint: opts.hint } : {}),
  });
}

/** The status line after the user stopped a session (Ctrl-C or the command's exit). */
export function endedByUserLine(session: Session, endedOnServer: boolean): string {
  return endedOnServer
    ? `Session ${session.id} ended; its credential is being destroyed`
    : `Session ${session.id} could not be ended on the server; it ends when heartbeats stop`;
}

function isGone(err: unknown): boolean {
  return isJitError(err) && (err.code === 'JIT_SESSION_ENDED' || err.code === 'JIT_SESSION_NOT_FOUND');
}

async function endReasonOf(api: Pick<ApiClient, 'sessions'>, id: string): Promise<EndReason | undefined> {
  try {
    return (await api.sessions({})).find((s) => s.id === id)?.endReason;
  } catch {
    return undefined;
  }
}
