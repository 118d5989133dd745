/**
 * The life of a `jit ssh` session: create it (policy decides the login), heartbeat while it
 * runs, tell the caller when the server ends it, and end it on the way out.
 */
import type { CreateSessionResponse, EndReason, Session } from '#shared/contract/http.js';
import { describeEndReason } from '#shared/contract/end-reasons.js';
import { isJitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { ApiClient } from '../api/client.js';
import { admitSession } from '../session/admit.js';

export interface SshSessionOptions {
  target: string;
  login?: string | undefined;
  reason?: string | undefined;
  durationSeconds?: number | undefined;
}

export interface LiveSshSession {
  session: Session;
  grant: string;
  /** Resolves when the server ends the session (reason in words). */
  ended: Promise<{ reason: EndReason | undefined; message: string }>;
  /** End it (idempotent); never throws. */
  close(reason?: 'exit' | 'killed'): Promise<void>;
}

/** Open the session and keep it alive. */
export async function openSshSession(deps: { api: ApiClient; clock: Clock }, opts: SshSessionOptions): Promise<LiveSshSession> {
  const created: CreateSessionResponse = await deps.api.createSession({
    target: opts.target,
    ...(opts.login !== undefined ? { login: opts.login } : {}),
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    ...(opts.durationSeconds !== undefined ? { durationSeconds: opts.durationSeconds } : {}),
  });
  const { session } = created;
  await admitSession(deps.api, 'ssh', opts.target, session);
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  let resolveEnded!: (v: { reason: EndReason | undefined; message: string }) => void;
  const ended = new Promise<{ reason: EndReason | undefined; message: string }>((r) => {
    resolveEnded = r;
  });
  const beat = async () => {
    if (done) return;
    try {
      const s = await deps.api.heartbeat(session.id);
      if (s.state === 'ended') {
        done = true;
        resolveEnded({ reason: s.endReason, message: describeEndReason(s.endReason) });
        return;
      }
    } catch (err) {
      if (isJitError(err) && (err.code === 'JIT_SESSION_ENDED' || err.code === 'JIT_SESSION_NOT_FOUND')) {
        done = true;
        resolveEnded({ reason: undefined, message: err.message });
        return;
      }
      // A blip: the server ends the session itself if heartbeats stay away too long.
    }
    if (!done) timer = deps.clock.setTimeout(() => void beat(), Math.max(1, created.heartbeatIntervalSeconds) * 1000);
  };
  timer = deps.clock.setTimeout(() => void beat(), Math.max(1, created.heartbeatIntervalSeconds) * 1000);
  return {
    session,
    grant: created.grant,
    ended,
    async close(reason = 'exit') {
      const wasDone = done;
      done = true;
      deps.clock.clearTimeout(timer);
      if (!wasDone) await deps.api.endSession(session.id, reason, 5_000).catch(() => undefined);
    },
  };
}
