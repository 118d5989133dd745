/**
 * The life of a `jit ssh` session: create it (policy decides the login), heartbeat while it
 * runs, tell the caller when the server ends it, and end it on the way out.
 */
import type { CreateSessionResponse, EndReason, Session } from '#shared/contract/http.js';
import { isJitError, JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { ApiClient } from '../api/client.js';

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

const END_TEXT: Partial<Record<EndReason, string>> = {
  expired: 'its time ran out',
  'heartbeat-lost': 'the server stopped hearing from this jit process',
  'agent-lost': 'the agent serving the target went away',
  admin: 'an administrator ended it',
  revoked: 'access was revoked',
};

/** Open the session and keep it alive. */
export async function openSshSession(deps: { api: ApiClient; clock: Clock }, opts: SshSessionOptions): Promise<LiveSshSession> {
  const created: CreateSessionResponse = await deps.api.createSession({
    target: opts.target,
    ...(opts.login !== undefined ? { login: opts.login } : {}),
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    ...(opts.durationSeconds !== undefined ? { durationSeconds: opts.durationSeconds } : {}),
  });
  const { session } = created;
  if (!/^[a-z0-9]{20}$/.test(session.id))
    throw new JitError('JIT_PROTOCOL_ERROR', { message: 'The jit server sent a malformed session id' });
  if (session.targetType !== 'ssh') {
    await deps.api.endSession(session.id, 'exit').catch(() => undefined);
    throw new JitError('JIT_USAGE', {
      message: `${opts.target} is a ${session.targetType} target, not an SSH host`,
      hint: `jit connect ${opts.target}`,
    });
  }
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
        resolveEnded({ reason: s.endReason, message: (s.endReason && END_TEXT[s.endReason]) ?? 'it was ended' });
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
