/**
 * The requester's side of an access request: file it when the server says a target needs
 * approval, then wait (polling GET /v1/requests/:id) until it is approved, denied, expired or
 * cancelled. Shared by `jit connect` and everything built on runConnect (exec, ssh).
 */
import type { AccessRequest, ApprovalRequirement } from '#shared/contract/http.js';
import { formatDuration } from '#shared/duration.js';
import { isJitError, JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { ApiClient } from '../api/client.js';

export interface ApprovalObserver {
  /**
   * The rule wants a reason and none was given: return one (a prompt on a TTY) or throw
   * (JIT_USAGE naming --reason, exit 2).
   */
  askReason(requirement: ApprovalRequirement): Promise<string>;
  /** The request exists (filed now, or given with --request). */
  onRequestFiled?(request: AccessRequest, requirement: ApprovalRequirement | undefined): void;
  /** A poll brought news (another approval, or the decision). */
  onRequestUpdate?(request: AccessRequest): void;
  /** A poll failed but waiting goes on (network blip); cleared by the next success. */
  onWaitWarning?(message: string | undefined): void;
}

/** Poll interval while waiting for approvers. */
export const POLL_MS = 1000;

/** Who may approve, in words: `bob, group dba (2 needed)`. */
export function approversText(a: { users: string[]; groups: string[]; required: number }): string {
  const names = [...a.users, ...a.groups.map((g) => `group ${g}`)].join(', ') || 'nobody';
  return a.required > 1 ? `${names} (${a.required} needed)` : names;
}

/** The error that ends a wait on a request that was not approved, in the requester's terms. */
export function notApprovedError(r: AccessRequest): JitError {
  const again = `jit connect ${r.target} --reason "…" files a new request`;
  switch (r.state) {
    case 'denied':
      return new JitError('JIT_APPROVAL_DENIED', {
        message: `Access to ${r.target} needs approval, and ${r.denial?.approver ?? 'an approver'} denied it: ${r.denial?.reason ?? 'no reason given'}`,
        hint: again,
      });
    case 'expired': {
      const waited = (Date.parse(r.expiresAt) - Date.parse(r.createdAt)) / 1000;
      return new JitError('JIT_APPROVAL_EXPIRED', {
        message:
          r.decidedAt && r.approvals.length > 0 && r.usableUntil
            ? `Request ${r.id} was approved but not used in time`
            : `Request ${r.id} for ${r.target} expired: nobody approved it within ${formatDuration(waited)}`,
        hint: again,
      });
    }
    case 'cancelled':
      return new JitError('JIT_APPROVAL_CANCELLED', { message: `Request ${r.id} for ${r.target} was cancelled`, hint: again });
    case 'used':
      return new JitError('JIT_APPROVAL_DECIDED', {
        message: `Request ${r.id} has already opened a session${r.session ? ` (${r.session})` : ''}`,
        hint: again,
      });
    default:
      return new JitError('JIT_APPROVAL_DECIDED', { message: `Request ${r.id} is ${r.state}`, hint: again });
  }
}

/** A change worth telling the user about (state or number of approvals). */
function changed(a: AccessRequest | undefined, b: AccessRequest): boolean {
  return !a || a.state !== b.state || a.approvals.length !== b.approvals.length;
}

/**
 * Wait until `id` is decided. Resolves with the approved request; throws the matching JitError
 * for denied / expired / cancelled / used. When `signal` aborts (Ctrl-C), the request is
 * cancelled on the server and JIT_APPROVAL_CANCELLED is thrown.
 */
export async function waitForApproval(
  deps: { api: ApiClient; clock: Clock },
  id: string,
  observer: Pick<ApprovalObserver, 'onRequestUpdate' | 'onWaitWarning'>,
  signal: AbortSignal,
  first?: AccessRequest,
): Promise<AccessRequest> {
  const { api, clock } = deps;
  let last: AccessRequest | undefined = first;
  const sleep = () =>
    new Promise<void>((resolve) => {
      const t = clock.setTimeout(done, POLL_MS);
      function done() {
        clock.clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  for (;;) {
    if (signal.aborted) {
      // Best effort, bounded: the user wants out now; a request left pending expires on its own.
      const cancelled = await api.cancelRequest(id, 5000).catch(() => undefined);
      throw new JitError('JIT_APPROVAL_CANCELLED', {
        message: `You cancelled request ${id}; no session was opened${cancelled ? '' : ' (the server did not confirm; it expires on its own)'}`,
        hint: last ? `jit connect ${last.target} files a new request` : 'jit connect <target> files a new request',
      });
    }
    let r: AccessRequest | undefined;
    try {
      r = await api.getRequest(id);
      observer.onWaitWarning?.(undefined);
    } catch (err) {
      if (!isJitError(err) || err.code !== 'JIT_SERVER_UNREACHABLE') throw err;
      observer.onWaitWarning?.(err.message);
    }
    if (r) {
      if (changed(last, r)) observer.onRequestUpdate?.(r);
      last = r;
      if (r.state === 'approved') return r;
      if (r.state !== 'pending') throw notApprovedError(r);
    }
    await sleep();
  }
}
