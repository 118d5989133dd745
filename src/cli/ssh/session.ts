/**
 * The life of a `jit ssh` session: create it (policy decides the login), then the shared lease
 * heartbeats it, tells the caller when the server ends it, and ends it on the way out.
 */
import type { CreateSessionResponse, Session } from '#shared/contract/http.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { ApiClient } from '../api/client.js';
import { admitSession } from '../session/admit.js';
import { type LeaseEnd, startLease } from '../session/lease.js';

export interface SshSessionOptions {
  target: string;
  login?: string | undefined;
  reason?: string | undefined;
  durationSeconds?: number | undefined;
}

export interface LiveSshSession {
  session: Session;
  grant: string;
  /** Resolves when the server ends the session or its time runs out. */
  ended: Promise<LeaseEnd>;
  /** End it (idempotent); never throws. */
  close(reason?: 'exit' | 'killed'): Promise<void>;
}

/** Open the session and keep it alive (src/cli/session/lease.ts). */
export async function openSshSession(deps: { api: ApiClient; clock: Clock }, opts: SshSessionOptions): Promise<LiveSshSession> {
  const created: CreateSessionResponse = await deps.api.createSession({
    target: opts.target,
    ...(opts.login !== undefined ? { login: opts.login } : {}),
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    ...(opts.durationSeconds !== undefined ? { durationSeconds: opts.durationSeconds } : {}),
  });
  await admitSession(deps.api, 'ssh', opts.target, created.session);
  const lease = startLease(deps, created);
  return {
    session: created.session,
    grant: created.grant,
    ended: lease.ended,
    async close(reason = 'exit') {
      await lease.end(reason);
    },
  };
}
