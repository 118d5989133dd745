/**
 * The hold point for `require-approval` guardrails. The engine calls the AwaitApproval function
 * before forwarding a statement that needs approval and forwards it only on `approved: true`.
 *
 * StatementApprovals is the real wait, one per agent, over the control channel:
 *   agent → control plane  `approval.request` {requestId (ours, random), session, sql, params,
 *                           digest = statementDigest(sql, params), rule, kind, fingerprint}
 *   control plane → agent  `approval.decision` {requestId, decision, digest, scope?}
 *   agent → control plane  `approval.cancel` when we stop waiting (client gone, session over,
 *                           our own time limit, a decision we refused).
 *
 * Security decisions made here (MUST/NEVER):
 * - A statement is released ONLY by an `approved` decision for the request id we chose for it
 *   whose digest equals the digest of exactly the text + parameters we hold: an approval of X can
 *   never run Y. A mismatching approval is refused (and its request cancelled).
 * - A `session-kind` approval releases later statements of the SAME session whose fingerprint
 *   (libpg-query `fingerprintSync`, literal-independent) equals the approved one, under the same
 *   rule, until `until` (never beyond the session). It lives in this process only: an agent
 *   restart asks again.
 * - Fail closed: no control channel (at the start or while waiting), our own hold time over, or a
 *   statement too large for the contract → refused. Nothing is ever approved by default.
 */
import { fingerprintSync } from 'libpg-query';
import {
  type AgentApprovalRequest,
  type AgentToServer,
  type ServerApprovalDecision,
  type SessionInfo,
  statementDigest,
} from '#shared/contract/agent.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';

export interface ApprovalRequest {
  session: SessionInfo;
  target: string;
  stream: string;
  /** The statement text as the server would receive it (the whole Query / Parse text). */
  sql: string;
  /** Bind parameters as recorded (masked for audit; NULL as null), extended protocol only. */
  params?: (string | null)[];
  rule?: string;
  kind?: string;
  /** Aborted when the engine stops waiting (client gone, CancelRequest, session over). */
  signal?: AbortSignal;
}

export type ApprovalDecision =
  | {
      approved: true;
      by?: string;
      /** The control plane's request id (recorded with the statement). */
      request?: string;
      /** Released by an earlier session-kind approval rather than a request of its own. */
      scope?: 'statement' | 'session-kind';
    }
  | {
      approved: false;
      /** Completes "this statement needs approval (rule …) and <reason>". */
      reason: string;
      request?: string;
      /** The client asked to cancel (SQLSTATE 57014 rather than 42501). */
      cancelled?: boolean;
    };

export type AwaitApproval = (req: ApprovalRequest) => Promise<ApprovalDecision>;

/** Without a StatementApprovals (tests, old wiring) every such statement is refused. */
export async function awaitApproval(_req: ApprovalRequest): Promise<ApprovalDecision> {
  return { approved: false, reason: 'no approval workflow is available on this agent' };
}

/** Literal-independent fingerprint of a statement text (undefined when it cannot be computed). */
export function statementFingerprint(sql: string): string | undefined {
  try {
    const fp = fingerprintSync(sql);
    return typeof fp === 'string' && fp.length > 0 && fp.length <= 128 ? fp : undefined;
  } catch {
    return undefined;
  }
}

export interface StatementApprovalsDeps {
  /** Send over the control channel; false when it is not connected. */
  send(msg: AgentToServer): boolean;
  connected(): boolean;
  clock: Clock;
  random(bytes: number): Buffer;
  logger: Logger;
  /** Hold time when the rule names no approvers (the control plane's default too): 30 min. */
  defaultHoldSeconds?: number;
  /** Our own timer fires this long after the hold time, so the control plane's `expired` normally comes first. */
  graceMs?: number;
}

interface Pending {
  session: string;
  rule: string;
  digest: string;
  fingerprint: string | undefined;
  expiresAt: number;
  settle(d: ApprovalDecision): void;
}

interface Grant {
  rule: string;
  until: number;
  request?: string;
  by?: string;
}

/** Contract limits of approval.request (src/shared/contract/agent.ts). */
const MAX_SQL = 64 * 1024;
const MAX_PARAMS = 1000;
const MAX_PARAM = 16 * 1024;
/** Session-kind grants kept per session (oldest dropped beyond). */
const MAX_GRANTS = 64;

/** Statement approvals over the control channel (one per agent). */
export class StatementApprovals {
  private readonly pending = new Map<string, Pending>();
  private readonly grants = new Map<string, Map<string, Grant>>();
  /** Requests we stopped waiting for while disconnected: cancelled after the next hello. */
  private owedCancels: string[] = [];

  constructor(private readonly deps: StatementApprovalsDeps) {}

  /** The engine's hold point (bound, so it can be passed around). */
  readonly await: AwaitApproval = (req) => this.awaitDecision(req);

  /** Number of statements held right now. */
  get held(): number {
    return this.pending.size;
  }

  private awaitDecision(req: ApprovalRequest): Promise<ApprovalDecision> {
    const { clock } = this.deps;
    const refuse = (reason: string): Promise<ApprovalDecision> => Promise.resolve({ approved: false, reason });
    if (req.signal?.aborted) return Promise.resolve({ approved: false, reason: 'the client cancelled it', cancelled: true });
    // An SSH session's command guardrails ask for approval the same way (the "statement" is the
    // command line); session-kind grants are SQL fingerprints, so they never apply to commands.
    const guardrails = req.session.ssh ? req.session.ssh.guardrails : req.session.inspection?.guardrails;
    const rule = guardrails?.find((g) => g.name === req.rule && g.action === 'require-approval');
    if (!req.rule || !rule) return refuse('the rule is not part of this session');
    const now = clock.now();
    const fingerprint = req.session.ssh ? undefined : statementFingerprint(req.sql);

    const grant = fingerprint ? this.grants.get(req.session.id)?.get(fingerprint) : undefined;
    if (grant && grant.rule === req.rule && grant.until > now) {
      return Promise.resolve({ approved: true, by: grant.by, request: grant.request, scope: 'session-kind' });
    }

    const params = req.params;
    if (req.sql.length > MAX_SQL || (params && (params.length > MAX_PARAMS || params.some((p) => p !== null && p.length > MAX_PARAM)))) {
      return refuse('it is too large to show to approvers');
    }
    const sessionLeftMs = Date.parse(req.session.expiresAt) - now;
    const holdSeconds = Math.floor(Math.min(rule.approvers?.timeout ?? this.deps.defaultHoldSeconds ?? 1800, sessionLeftMs / 1000));
    if (!(holdSeconds >= 1)) return refuse('the session ends before anyone could decide');
    if (!this.deps.connected()) return refuse('the agent has no connection to the control plane');

    const requestId = this.deps.random(12).toString('base64url');
    const digest = statementDigest(req.sql, params);
    const msg: AgentApprovalRequest = {
      type: 'approval.request',
      requestId,
      session: req.session.id,
      sql: req.sql,
      ...(params ? { params } : {}),
      digest,
      rule: req.rule,
      ...(req.kind ? { kind: req.kind.slice(0, 64) } : {}),
      ...(fingerprint ? { fingerprint } : {}),
      ...(rule.approvers
        ? { approvers: { users: rule.approvers.users, groups: rule.approvers.groups, required: rule.approvers.required } }
        : {}),
      timeoutSeconds: holdSeconds,
    };

    return new Promise<ApprovalDecision>((resolve) => {
      let done = false;
      const settle = (d: ApprovalDecision) => {
        if (done) return;
        done = true;
        clock.clearTimeout(timer);
        req.signal?.removeEventListener('abort', onAbort);
        this.pending.delete(requestId);
        resolve(d);
      };
      const onAbort = () => {
        this.cancel(requestId);
        settle({ approved: false, reason: 'the client cancelled it', cancelled: true });
      };
      const timer = clock.setTimeout(
        () => {
          this.cancel(requestId);
          settle({ approved: false, reason: 'nobody decided in time' });
        },
        holdSeconds * 1000 + (this.deps.graceMs ?? 5_000),
      );
      req.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(requestId, {
        session: req.session.id,
        rule: req.rule!,
        digest,
        fingerprint,
        expiresAt: Date.parse(req.session.expiresAt),
        settle,
      });
      if (!this.deps.send(msg)) settle({ approved: false, reason: 'the agent has no connection to the control plane' });
    });
  }

  /** An `approval.decision` arrived on the control channel. */
  onDecision(msg: ServerApprovalDecision): void {
    const p = this.pending.get(msg.requestId);
    if (!p) {
      // Late (we stopped waiting) or not ours: nothing is held under that id.
      this.deps.logger.debug({ request: msg.request }, 'approval decision for no held statement');
      return;
    }
    const request = msg.request;
    if (msg.decision === 'approved') {
      if (msg.digest !== p.digest) {
        // NEVER release a statement under an approval of another one.
        this.deps.logger.warn({ session: p.session, request }, 'approval digest does not match the held statement; refused');
        this.cancel(msg.requestId);
        p.settle({ approved: false, reason: 'the approval does not match the held statement', ...(request ? { request } : {}) });
        return;
      }
      const scope = msg.scope;
      if (scope?.type === 'session-kind' && scope.until && p.fingerprint && scope.fingerprint === p.fingerprint) {
        const until = Math.min(Date.parse(scope.until), p.expiresAt);
        if (until > this.deps.clock.now()) this.grant(p.session, p.fingerprint, { rule: p.rule, until, request, by: msg.approver });
      }
      p.settle({ approved: true, ...(msg.approver ? { by: msg.approver } : {}), ...(request ? { request } : {}), scope: 'statement' });
      return;
    }
    const why = msg.reason ? oneLine(msg.reason) : undefined;
    let reason: string;
    if (msg.decision === 'expired') reason = 'nobody decided in time';
    else if (msg.approver) reason = `${oneLine(msg.approver)} denied it${why ? `: ${why}` : ''}`;
    else reason = why ? `it was refused: ${why}` : 'it was refused';
    p.settle({ approved: false, reason, ...(request ? { request } : {}) });
  }

  /** The control channel went down: every held statement is refused (fail closed). */
  onDisconnected(): void {
    for (const [id, p] of [...this.pending]) {
      this.owedCancels.push(id);
      p.settle({ approved: false, reason: 'the agent lost its connection to the control plane' });
    }
  }

  /** The control channel is back (hello sent): cancel what we stopped waiting for meanwhile. */
  onConnected(): void {
    const owed = this.owedCancels.splice(0);
    for (const requestId of owed) this.cancel(requestId);
  }

  /** The session ended: forget its session-kind approvals (its held statements end with their streams). */
  sessionEnded(sessionId: string): void {
    this.grants.delete(sessionId);
    for (const [id, p] of [...this.pending]) {
      if (p.session !== sessionId) continue;
      this.cancel(id);
      p.settle({ approved: false, reason: 'the session ended' });
    }
  }

  private grant(session: string, fingerprint: string, g: Grant): void {
    if (this.grants.size > 1000) {
      // Sessions whose end we never heard of: drop what has run out.
      const now = this.deps.clock.now();
      for (const [s, m] of this.grants) {
        for (const [fp, x] of m) if (x.until <= now) m.delete(fp);
        if (m.size === 0) this.grants.delete(s);
      }
    }
    let m = this.grants.get(session);
    if (!m) {
      m = new Map();
      this.grants.set(session, m);
    }
    m.delete(fingerprint);
    m.set(fingerprint, g);
    while (m.size > MAX_GRANTS) m.delete(m.keys().next().value as string);
  }

  private cancel(requestId: string): void {
    if (!this.deps.send({ type: 'approval.cancel', requestId })) {
      if (this.owedCancels.length < 10_000) this.owedCancels.push(requestId);
    }
  }
}

function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, 300);
}
