/**
 * Access requests and statement approvals: filed by a requester (or by an agent holding a
 * statement), decided by approvers named in policy, expired by the sweeper, used once.
 *
 * Rules enforced here (MUST hold for every transition):
 *   - decisions are final: only a `pending` request can be approved, denied or cancelled;
 *   - nobody approves their own request; an approver must match the rule's approvers as they
 *     were when the request was filed (a snapshot, so a policy reload cannot change who decides
 *     a request already in flight); each approver counts once; `required` approvals approve it;
 *   - an approved access request opens ONE session, before `usableUntil` (approval time + the
 *     rule's timeout); then it is `used`;
 *   - every transition is audited BEFORE it is committed and acknowledged; transitions of one
 *     request are serialized, so the audit never records a decision that then loses a race.
 */
import type { Guardrail } from '#shared/config/policy.js';
import {
  type AgentApprovalCancel,
  type AgentApprovalRequest,
  InspectionRules,
  SshSessionRules,
  type ServerApprovalDecision,
  statementDigest,
} from '#shared/contract/agent.js';
import type {
  AccessRequest,
  ApprovalRequirement,
  ApprovalScope,
  ApproveBody,
  CreateAccessRequest,
  CreateSessionRequest,
  DenyBody,
  RequestState,
} from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Admins } from '../auth.js';
import type { AccessDecision, PolicyEngine } from '../policy/policy.js';
import type { Principal } from '../sessions/session-service.js';
import type { Db, RequestsTable, SessionsTable } from '../store/db.js';
import { isId, newId } from '#shared/contract/ids.js';

export interface Approvers {
  users: string[];
  groups: string[];
  required: number;
}

interface StoredApproval {
  subject: string;
  issuer: string;
  approver: string;
  comment?: string | undefined;
  time: number;
  scope?: ApprovalScope | undefined;
}

interface StoredStatement {
  sql: string;
  params?: (string | null)[] | undefined;
  digest: string;
  kind?: string | undefined;
  fingerprint?: string | undefined;
  agent: string;
  agentRequestId: string;
}

/** Where notifications of request events go (the webhook outbox); runs inside the state change's transaction. */
export interface RequestNotifier {
  enqueue(trx: Db, event: 'request.created' | 'request.decided', request: AccessRequest): Promise<void>;
  /** Wake the delivery worker after a commit. */
  kick(): void;
}

export interface ApprovalServiceDeps {
  db: Db;
  audit: AuditLog;
  policy: PolicyEngine;
  clock: Clock;
  random(bytes: number): Buffer;
  admins: Admins;
  defaultDurationSeconds: number;
  notifier?: RequestNotifier;
  /** Told after a statement request was decided (the hub sends approval.decision to its agent). */
  onStatementDecided?(agent: string, decision: ServerApprovalDecision): void;
  /** Largest number of pending access requests one user may have open (default 20). */
  maxPendingPerUser?: number;
}

/** The 403 JIT_APPROVAL_REQUIRED answer, with what the approvals rule asks for. */
export class ApprovalRequiredError extends JitError {
  constructor(
    readonly requirement: ApprovalRequirement,
    message?: string,
  ) {
    super('JIT_APPROVAL_REQUIRED', {
      message: message ?? `Access to ${requirement.target} needs an approved request (rule ${requirement.rule})`,
      hint: `jit connect ${requirement.target}${requirement.reasonRequired ? ' --reason "…"' : ''} files a request and waits for an approver`,
    });
  }
}

const DEFAULT_STATEMENT_TIMEOUT = 30 * 60;
const DEFAULT_KIND_SCOPE_SECONDS = 10 * 60;

/** Whether `who` is one of the approvers (by user name or by a group from the token). */
export function isApprover(spec: Approvers, who: Pick<Principal, 'username' | 'groups'>): boolean {
  return spec.users.includes(who.username) || who.groups.some((g) => spec.groups.includes(g));
}

function iso(ms: number | null | undefined): string | undefined {
  return ms === null || ms === undefined ? undefined : new Date(Number(ms)).toISOString();
}

export class ApprovalService {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: ApprovalServiceDeps) {}

  // ---------------------------------------------------------------- views

  /** The API view of a request; `canReview` says whether `viewer` may approve or deny it now. */
  toRequest(row: RequestsTable, viewer?: Principal): AccessRequest {
    const approvers = JSON.parse(row.approvers) as Approvers;
    const approvals = JSON.parse(row.approvals) as StoredApproval[];
    const denial = row.denial ? (JSON.parse(row.denial) as { approver: string; reason: string; time: number }) : undefined;
    const stmt = row.statement ? (JSON.parse(row.statement) as StoredStatement) : undefined;
    const scope = row.scope ? (JSON.parse(row.scope) as ApprovalScope & { until?: number }) : undefined;
    return {
      id: row.id,
      kind: row.kind as AccessRequest['kind'],
      requester: { subject: row.subject, issuer: row.issuer, username: row.username },
      target: row.target,
      reason: row.reason ?? undefined,
      durationSeconds: Number(row.duration_seconds),
      rule: row.rule,
      approvers,
      state: row.state as RequestState,
      approvals: approvals.map((a) => ({
        approver: a.approver,
        time: new Date(a.time).toISOString(),
        ...(a.comment ? { comment: a.comment } : {}),
        ...(a.scope ? { scope: a.scope } : {}),
      })),
      denial: denial ? { approver: denial.approver, reason: denial.reason, time: new Date(denial.time).toISOString() } : undefined,
      createdAt: new Date(Number(row.created_at)).toISOString(),
      expiresAt: new Date(Number(row.expires_at)).toISOString(),
      decidedAt: iso(row.decided_at),
      usableUntil: iso(row.usable_until),
      session: row.session_id ?? undefined,
      statement: stmt ? { sql: stmt.sql, params: stmt.params, digest: stmt.digest, kind: stmt.kind } : undefined,
      scope: scope ? { type: scope.type, forSeconds: scope.forSeconds, until: iso(scope.until) } : undefined,
      canReview: viewer ? this.reviewRefusal(row, viewer) === undefined : false,
    };
  }

  /** What the approvals rule asks of `who` for `target`, or undefined when no approval is needed. */
  requirementFor(who: Principal, decision: AccessDecision): ApprovalRequirement | undefined {
    const rule = this.deps.policy.approvalRuleFor(who, decision.target.name);
    if (!rule) return undefined;
    return {
      rule: rule.name,
      target: decision.target.name,
      reasonRequired: rule.reasonRequired,
      approvers: { users: rule.approvers.users, groups: rule.approvers.groups, required: rule.approvers.required },
      timeoutSeconds: rule.approvers.timeout,
      maxDurationSeconds: Math.floor(Math.min(decision.maxDurationSeconds, rule.maxDuration ?? Number.POSITIVE_INFINITY)),
    };
  }

  // ---------------------------------------------------------------- access requests

  /** File an access request (POST /v1/requests). */
  async file(who: Principal, body: CreateAccessRequest): Promise<AccessRequest> {
    const { db, audit, policy, clock } = this.deps;
    const decision = policy.decide(who, body.target);
    const requirement = this.requirementFor(who, decision);
    if (!requirement) {
      throw new JitError('JIT_USAGE', {
        message: `Sessions to ${decision.target.name} need no approval`,
        hint: `jit connect ${decision.target.name} opens one directly`,
      });
    }
    const reason = body.reason?.trim() || undefined;
    if (requirement.reasonRequired && !reason) {
      throw new JitError('JIT_USAGE', {
        message: `A reason is required to request access to ${decision.target.name} (rule ${requirement.rule})`,
        hint: `pass --reason "…" (it is shown to the approvers and kept in the audit log)`,
      });
    }
    const max = requirement.maxDurationSeconds;
    const duration = body.durationSeconds ?? Math.min(this.deps.defaultDurationSeconds, max);
    if (duration > max) {
      throw new JitError('JIT_SESSION_DURATION', {
        message: `The longest access rule ${requirement.rule} grants to ${decision.target.name} is ${Math.floor(max / 60)} minutes`,
      });
    }
    const pending = await db
      .selectFrom('access_requests')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('subject', '=', who.subject)
      .where('issuer', '=', who.issuer)
      .where('state', '=', 'pending')
      .executeTakeFirst();
    if (Number(pending?.n ?? 0) >= (this.deps.maxPendingPerUser ?? 20)) {
      throw new JitError('JIT_USAGE', {
        message: 'You have too many requests waiting for approval',
        hint: 'jit requests --mine lists them; jit cancel <id> withdraws one',
      });
    }
    const now = clock.now();
    const row: RequestsTable = {
      id: newId(this.deps.random),
      kind: 'access',
      subject: who.subject,
      issuer: who.issuer,
      username: who.username,
      target: decision.target.name,
      reason: reason ?? null,
      duration_seconds: duration,
      rule: requirement.rule,
      approvers: JSON.stringify(requirement.approvers),
      state: 'pending',
      approvals: '[]',
      denial: null,
      created_at: now,
      expires_at: now + requirement.timeoutSeconds * 1000,
      decided_at: null,
      usable_until: null,
      session_id: null,
      statement: null,
      scope: null,
    };
    await audit.append({
      type: 'request.created',
      actor: who.username,
      target: row.target,
      outcome: 'info',
      data: {
        request: row.id,
        kind: 'access',
        rule: row.rule,
        reason: row.reason,
        durationSeconds: duration,
        approvers: requirement.approvers,
        expiresAt: iso(row.expires_at),
      },
    });
    await this.insert(row);
    return this.toRequest(row, who);
  }

  /** One request, for its requester, anyone who may approve it, and admins; others get NOT_FOUND. */
  get(who: Principal, id: string, admin: boolean): Promise<AccessRequest> {
    // Expire on read too, so a waiting CLI learns of it at its next poll rather than the next sweep.
    return this.locked(id, async () => this.toRequest(await this.expireIfDue(await this.visible(who, id, admin)), who));
  }

  /** The caller's requests (mine) and/or the pending ones the caller may decide (toReview). */
  async list(who: Principal, q: { mine: boolean; toReview: boolean; limit?: number }): Promise<AccessRequest[]> {
    await this.sweep();
    const limit = Math.min(q.limit ?? 200, 1000);
    const out = new Map<string, RequestsTable>();
    if (q.mine) {
      const rows = await this.deps.db
        .selectFrom('access_requests')
        .selectAll()
        .where('subject', '=', who.subject)
        .where('issuer', '=', who.issuer)
        .orderBy('created_at', 'desc')
        .limit(limit)
        .execute();
      for (const r of rows) out.set(r.id, r);
    }
    if (q.toReview) {
      const rows = await this.deps.db
        .selectFrom('access_requests')
        .selectAll()
        .where('state', '=', 'pending')
        .orderBy('created_at', 'desc')
        .limit(5000)
        .execute();
      for (const r of rows) if (this.reviewRefusal(r, who) === undefined) out.set(r.id, r);
    }
    return [...out.values()]
      .sort((a, b) => Number(b.created_at) - Number(a.created_at))
      .slice(0, limit)
      .map((r) => this.toRequest(r, who));
  }

  /** Approve (POST /v1/requests/:id/approve); the request is approved once `required` approvers did. */
  approve(who: Principal, id: string, body: ApproveBody, admin: boolean): Promise<AccessRequest> {
    return this.locked(id, async () => {
      const row = await this.expireIfDue(await this.visible(who, id, admin));
      const refusal = this.reviewRefusal(row, who);
      if (refusal) throw refusal;
      if (body.scope && row.kind !== 'statement') {
        throw new JitError('JIT_USAGE', { message: '--scope applies to statement approvals only', hint: 'leave out --scope' });
      }
      const now = this.deps.clock.now();
      const approvals = JSON.parse(row.approvals) as StoredApproval[];
      const comment = body.comment?.trim() || undefined;
      approvals.push({ subject: who.subject, issuer: who.issuer, approver: who.username, comment, time: now, scope: body.scope });
      const spec = JSON.parse(row.approvers) as Approvers;
      const done = approvals.length >= spec.required;
      const timeout = Number(row.expires_at) - Number(row.created_at);
      const next: RequestsTable = {
        ...row,
        approvals: JSON.stringify(approvals),
        ...(done
          ? {
              state: 'approved',
              decided_at: now,
              // An approved access request is usable for the rule's timeout after approval.
              usable_until: row.kind === 'access' ? now + timeout : null,
              scope: row.kind === 'statement' ? JSON.stringify(effectiveScope(approvals, now)) : null,
            }
          : {}),
      };
      await this.deps.audit.append({
        type: 'request.approved',
        actor: who.username,
        target: row.target,
        session: row.kind === 'statement' ? (row.session_id ?? undefined) : undefined,
        outcome: 'success',
        data: {
          request: row.id,
          kind: row.kind,
          requester: row.username,
          comment,
          approvals: approvals.length,
          required: spec.required,
          approved: done,
          ...(body.scope ? { scope: body.scope } : {}),
        },
      });
      return this.commit(row, next, done ? 'request.decided' : undefined, who);
    });
  }

  /** Deny (POST /v1/requests/:id/deny): final, with the approver's reason. */
  deny(who: Principal, id: string, body: DenyBody, admin: boolean): Promise<AccessRequest> {
    return this.locked(id, async () => {
      const row = await this.expireIfDue(await this.visible(who, id, admin));
      const refusal = this.reviewRefusal(row, who);
      if (refusal) throw refusal;
      const now = this.deps.clock.now();
      const next: RequestsTable = {
        ...row,
        state: 'denied',
        decided_at: now,
        denial: JSON.stringify({ approver: who.username, reason: body.reason, time: now }),
      };
      await this.deps.audit.append({
        type: 'request.denied',
        actor: who.username,
        target: row.target,
        session: row.kind === 'statement' ? (row.session_id ?? undefined) : undefined,
        outcome: 'failure',
        data: { request: row.id, kind: row.kind, requester: row.username, reason: body.reason },
      });
      return this.commit(row, next, 'request.decided', who);
    });
  }

  /** Withdraw a pending request (its requester only). */
  cancel(who: Principal, id: string, admin: boolean): Promise<AccessRequest> {
    return this.locked(id, async () => {
      const row = await this.expireIfDue(await this.visible(who, id, admin));
      if (row.subject !== who.subject || row.issuer !== who.issuer) {
        throw new JitError('JIT_ACCESS_DENIED', {
          message: `Only ${row.username} can cancel request ${row.id}`,
          hint: 'jit deny <id> --reason "…" refuses it',
        });
      }
      if (row.state !== 'pending') throw decidedError(row);
      return this.cancelRow(row, who.username, 'cancelled by the requester', who);
    });
  }

  /**
   * Gate for POST /v1/sessions: with `req.request`, consume that approved request (it becomes
   * `used` by `sessionId`) and return the session length it grants; without, throw
   * JIT_APPROVAL_REQUIRED when an approvals rule applies; otherwise undefined (no approval needed).
   */
  async admit(
    who: Principal,
    req: CreateSessionRequest,
    decision: AccessDecision,
    sessionId: string,
  ): Promise<{ requestId: string; durationSeconds: number } | undefined> {
    if (!req.request) {
      const requirement = this.requirementFor(who, decision);
      if (requirement) throw new ApprovalRequiredError(requirement);
      return undefined;
    }
    return this.locked(req.request, async () => {
      const found = await this.getRow(req.request!);
      const row = found ? await this.expireIfDue(found) : undefined;
      if (row?.kind !== 'access' || row.subject !== who.subject || row.issuer !== who.issuer) {
        throw notFound(req.request!);
      }
      if (row.target !== decision.target.name) {
        throw new JitError('JIT_USAGE', {
          message: `Request ${row.id} is for ${row.target}, not ${decision.target.name}`,
          hint: `jit connect ${row.target} --request ${row.id}`,
        });
      }
      if (row.state === 'pending') {
        const requirement = this.requirementFor(who, decision);
        const msg = `Request ${row.id} is still waiting for approval`;
        if (requirement) throw new ApprovalRequiredError(requirement, msg);
        throw new JitError('JIT_APPROVAL_REQUIRED', { message: msg });
      }
      if (row.state !== 'approved') throw decidedError(row);
      const durationSeconds = Math.min(Number(row.duration_seconds), decision.maxDurationSeconds);
      if (req.durationSeconds !== undefined && req.durationSeconds > durationSeconds) {
        throw new JitError('JIT_SESSION_DURATION', {
          message: `Request ${row.id} was approved for ${Math.floor(durationSeconds / 60)} minutes`,
          hint: 'ask for a shorter --duration, or leave it out',
        });
      }
      await this.deps.audit.append({
        type: 'request.used',
        actor: who.username,
        target: row.target,
        session: sessionId,
        outcome: 'success',
        data: { request: row.id, session: sessionId, approvers: (JSON.parse(row.approvals) as StoredApproval[]).map((a) => a.approver) },
      });
      const res = await this.deps.db
        .updateTable('access_requests')
        .set({ state: 'used', session_id: sessionId })
        .where('id', '=', row.id)
        .where('state', '=', 'approved')
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) throw decidedError({ ...row, state: 'used' });
      return { requestId: row.id, durationSeconds: req.durationSeconds ?? durationSeconds };
    });
  }

  // ---------------------------------------------------------------- statement requests (from agents)

  /**
   * An agent holds a statement that a require-approval guardrail matched. Files it as a request
   * of kind `statement`; refusals (unknown session, rule not in the session, bad digest) are
   * answered at once with a `denied` decision.
   */
  async fileStatement(agent: string, msg: AgentApprovalRequest, session: SessionsTable | undefined): Promise<void> {
    const refuse = (reason: string) =>
      this.deps.onStatementDecided?.(agent, {
        type: 'approval.decision',
        requestId: msg.requestId,
        decision: 'denied',
        digest: msg.digest,
        reason,
      });
    if (!session || session.agent !== agent || session.state !== 'active') return refuse('no such active session on this agent');
    if (statementDigest(msg.sql, msg.params) !== msg.digest) return refuse('the digest does not match the statement');
    const rule: Guardrail | undefined = sessionGuardrails(session.inspection).find(
      (g) => g.name === msg.rule && g.action === 'require-approval',
    );
    if (!rule) return refuse(`rule ${msg.rule} does not ask for approval in this session`);
    const existing = await this.findStatement(agent, msg.requestId);
    if (existing) return; // a resend after a reconnect: the decision follows when it is made
    // Default approvers of a statement: the administrators.
    const spec: Approvers = rule.approvers
      ? { users: rule.approvers.users, groups: rule.approvers.groups, required: rule.approvers.required }
      : { users: this.deps.admins.users, groups: this.deps.admins.groups, required: 1 };
    const timeout = Math.min(rule.approvers?.timeout ?? DEFAULT_STATEMENT_TIMEOUT, msg.timeoutSeconds ?? Number.POSITIVE_INFINITY);
    const now = this.deps.clock.now();
    const stmt: StoredStatement = {
      sql: msg.sql,
      params: msg.params,
      digest: msg.digest,
      kind: msg.kind,
      fingerprint: msg.fingerprint,
      agent,
      agentRequestId: msg.requestId,
    };
    const row: RequestsTable = {
      id: newId(this.deps.random),
      kind: 'statement',
      subject: session.subject,
      issuer: session.issuer,
      username: session.username,
      target: session.target,
      reason: session.reason,
      duration_seconds: 0,
      rule: rule.name,
      approvers: JSON.stringify(spec),
      state: 'pending',
      approvals: '[]',
      denial: null,
      created_at: now,
      expires_at: now + timeout * 1000,
      decided_at: null,
      usable_until: null,
      session_id: session.id,
      statement: JSON.stringify(stmt),
      scope: null,
    };
    // The statement text is audit data (never a log line).
    await this.deps.audit.append({
      type: 'request.created',
      actor: session.username,
      target: session.target,
      session: session.id,
      outcome: 'info',
      data: {
        request: row.id,
        kind: 'statement',
        rule: rule.name,
        sql: msg.sql.slice(0, 4096),
        digest: msg.digest,
        approvers: spec,
        expiresAt: iso(row.expires_at),
      },
    });
    await this.insert(row);
  }

  /** The agent stopped holding a statement: cancel its request if still pending. */
  async cancelStatement(agent: string, msg: AgentApprovalCancel): Promise<void> {
    const found = await this.findStatement(agent, msg.requestId);
    if (!found) return;
    await this.locked(found.id, async () => {
      const row = await this.getRow(found.id);
      if (row?.state === 'pending') await this.cancelRow(row, `agent:${agent}`, 'the agent stopped waiting');
    });
  }

  // ---------------------------------------------------------------- expiry

  /** Expire pending requests past their timeout and approved access requests nobody used in time. */
  async sweep(): Promise<void> {
    const now = this.deps.clock.now();
    const due = await this.deps.db
      .selectFrom('access_requests')
      .select('id')
      .where((eb) =>
        eb.or([
          eb.and([eb('state', '=', 'pending'), eb('expires_at', '<=', now)]),
          eb.and([eb('state', '=', 'approved'), eb('usable_until', 'is not', null), eb('usable_until', '<=', now)]),
        ]),
      )
      .limit(500)
      .execute();
    for (const { id } of due) {
      await this.locked(id, async () => {
        const row = await this.getRow(id);
        if (row) await this.expireIfDue(row);
      });
    }
  }

  // ---------------------------------------------------------------- internals

  /** Why `who` may not decide this request now (undefined = may). */
  private reviewRefusal(row: RequestsTable, who: Principal): JitError | undefined {
    if (row.state !== 'pending' || Number(row.expires_at) <= this.deps.clock.now()) return decidedError(row, this.deps.clock.now(), true);
    if (row.subject === who.subject && row.issuer === who.issuer) {
      return new JitError('JIT_ACCESS_DENIED', {
        message: `You cannot approve or deny your own request ${row.id}`,
        hint: 'another approver must decide it',
      });
    }
    const spec = JSON.parse(row.approvers) as Approvers;
    if (!isApprover(spec, who)) {
      return new JitError('JIT_ACCESS_DENIED', {
        message: `You are not an approver of request ${row.id} (rule ${row.rule})`,
        hint: `approvers: ${describeApprovers(spec)}`,
      });
    }
    const approvals = JSON.parse(row.approvals) as StoredApproval[];
    if (approvals.some((a) => a.subject === who.subject && a.issuer === who.issuer)) {
      return new JitError('JIT_APPROVAL_DECIDED', {
        message: `You have already approved request ${row.id}; it needs ${spec.required - approvals.length} more approver(s)`,
        hint: 'each approver counts once',
      });
    }
    return undefined;
  }

  private async visible(who: Principal, id: string, admin: boolean): Promise<RequestsTable> {
    const row = await this.getRow(id);
    if (!row) throw notFound(id);
    const own = row.subject === who.subject && row.issuer === who.issuer;
    const approver = isApprover(JSON.parse(row.approvers) as Approvers, who);
    if (!own && !approver && !admin) throw notFound(id);
    return row;
  }

  private async expireIfDue(row: RequestsTable): Promise<RequestsTable> {
    const now = this.deps.clock.now();
    const pendingDue = row.state === 'pending' && Number(row.expires_at) <= now;
    const unusedDue = row.state === 'approved' && row.usable_until !== null && Number(row.usable_until) <= now;
    if (!pendingDue && !unusedDue) return row;
    await this.deps.audit.append({
      type: 'request.expired',
      actor: 'jit',
      target: row.target,
      session: row.kind === 'statement' ? (row.session_id ?? undefined) : undefined,
      outcome: 'info',
      data: { request: row.id, kind: row.kind, requester: row.username, was: row.state },
    });
    const next: RequestsTable = { ...row, state: 'expired', decided_at: row.decided_at ?? now };
    // An approval nobody used expired quietly for approvers: they were told when it was approved.
    return (await this.commitRow(row, next, pendingDue ? 'request.decided' : undefined)) ?? row;
  }

  private async cancelRow(row: RequestsTable, actor: string, why: string, viewer?: Principal): Promise<AccessRequest> {
    const now = this.deps.clock.now();
    await this.deps.audit.append({
      type: 'request.cancelled',
      actor,
      target: row.target,
      session: row.kind === 'statement' ? (row.session_id ?? undefined) : undefined,
      outcome: 'info',
      data: { request: row.id, kind: row.kind, requester: row.username, reason: why },
    });
    return this.commit(row, { ...row, state: 'cancelled', decided_at: now }, 'request.decided', viewer);
  }

  private async commit(
    row: RequestsTable,
    next: RequestsTable,
    event: 'request.decided' | undefined,
    viewer?: Principal,
  ): Promise<AccessRequest> {
    const done = await this.commitRow(row, next, event);
    if (!done) throw decidedError((await this.getRow(row.id)) ?? row);
    return this.toRequest(done, viewer);
  }

  /** Write the new state only if nobody changed it meanwhile, with its notification, in one transaction. */
  private async commitRow(
    row: RequestsTable,
    next: RequestsTable,
    event: 'request.decided' | undefined,
  ): Promise<RequestsTable | undefined> {
    const { id: _id, ...changes } = next;
    const updated = await this.deps.db.transaction().execute(async (trx) => {
      const res = await trx
        .updateTable('access_requests')
        .set(changes)
        .where('id', '=', row.id)
        .where('state', '=', row.state)
        .where('approvals', '=', row.approvals)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return false;
      if (event && this.deps.notifier) await this.deps.notifier.enqueue(trx, event, this.toRequest(next));
      return true;
    });
    if (!updated) return undefined;
    if (event) this.deps.notifier?.kick();
    if (next.kind === 'statement' && next.state !== 'pending' && next.state !== row.state) this.tellAgent(next);
    return next;
  }

  private async insert(row: RequestsTable): Promise<void> {
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.insertInto('access_requests').values(row).execute();
      await this.deps.notifier?.enqueue(trx, 'request.created', this.toRequest(row));
    });
    this.deps.notifier?.kick();
  }

  private tellAgent(row: RequestsTable): void {
    const stmt = JSON.parse(row.statement ?? '{}') as StoredStatement;
    const approvals = JSON.parse(row.approvals) as StoredApproval[];
    const denial = row.denial ? (JSON.parse(row.denial) as { approver: string; reason: string }) : undefined;
    const scope = row.scope ? (JSON.parse(row.scope) as { type: 'statement' | 'session-kind'; until?: number }) : undefined;
    const decision: ServerApprovalDecision = {
      type: 'approval.decision',
      requestId: stmt.agentRequestId,
      request: row.id,
      digest: stmt.digest,
      decision: row.state === 'approved' ? 'approved' : row.state === 'expired' ? 'expired' : 'denied',
      ...(row.state === 'approved' ? { approver: approvals.map((a) => a.approver).join(', ') } : {}),
      ...(denial ? { approver: denial.approver, reason: denial.reason } : {}),
      ...(row.state === 'cancelled' ? { reason: 'the request was cancelled' } : {}),
      ...(row.state === 'expired' ? { reason: 'nobody decided in time' } : {}),
      ...(scope
        ? {
            scope: {
              type: scope.type,
              ...(scope.until ? { until: new Date(scope.until).toISOString() } : {}),
              ...(scope.type === 'session-kind' && stmt.fingerprint ? { fingerprint: stmt.fingerprint } : {}),
            },
          }
        : {}),
    };
    this.deps.onStatementDecided?.(stmt.agent, decision);
  }

  private async findStatement(agent: string, agentRequestId: string): Promise<RequestsTable | undefined> {
    // The agent's id is unique per agent; look among that agent's recent statement requests.
    const rows = await this.deps.db
      .selectFrom('access_requests')
      .selectAll()
      .where('kind', '=', 'statement')
      .where('created_at', '>=', this.deps.clock.now() - 2 * 24 * 3600 * 1000)
      .orderBy('created_at', 'desc')
      .limit(5000)
      .execute();
    return rows.find((r) => {
      const s = JSON.parse(r.statement ?? '{}') as StoredStatement;
      return s.agent === agent && s.agentRequestId === agentRequestId;
    });
  }

  private getRow(id: string): Promise<RequestsTable | undefined> {
    if (!isId(id)) return Promise.resolve(undefined);
    return this.deps.db.selectFrom('access_requests').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** Run fn with transitions of request `id` serialized (one control plane process; see docs/approvals.md). */
  private locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }
}

/**
 * The scope a statement approval ends up with: the narrowest any approver gave. `statement`
 * (or no scope at all) wins over `session-kind`; for `session-kind`, the shortest time.
 */
function effectiveScope(
  approvals: StoredApproval[],
  now: number,
): { type: 'statement' | 'session-kind'; forSeconds?: number; until?: number } {
  if (approvals.some((a) => !a.scope || a.scope.type === 'statement')) return { type: 'statement' };
  const seconds = Math.min(...approvals.map((a) => a.scope?.forSeconds ?? DEFAULT_KIND_SCOPE_SECONDS));
  return { type: 'session-kind', forSeconds: seconds, until: now + seconds * 1000 };
}

/** `bob, carol, group dba (2 needed)` */
export function describeApprovers(spec: Approvers): string {
  const names = [...spec.users, ...spec.groups.map((g) => `group ${g}`)].join(', ') || 'nobody';
  return spec.required > 1 ? `${names} (${spec.required} needed)` : names;
}

function notFound(id: string): JitError {
  return new JitError('JIT_APPROVAL_NOT_FOUND', { message: `No request ${id.slice(0, 40)} that you may see` });
}

/** The error for acting on a request that is no longer pending, in words. */
export function decidedError(row: RequestsTable, now?: number, reviewer = false): JitError {
  const state = row.state === 'pending' && now !== undefined && Number(row.expires_at) <= now ? 'expired' : row.state;
  switch (state) {
    case 'denied': {
      const d = row.denial ? (JSON.parse(row.denial) as { approver: string; reason: string }) : undefined;
      if (reviewer) {
        return new JitError('JIT_APPROVAL_DECIDED', { message: `Request ${row.id} was already denied${d ? ` by ${d.approver}` : ''}` });
      }
      return new JitError('JIT_APPROVAL_DENIED', {
        message: `Request ${row.id} was denied${d ? ` by ${d.approver}: ${d.reason}` : ''}`,
        hint: `jit connect ${row.target} --reason "…" files a new request`,
      });
    }
    case 'expired':
      return new JitError('JIT_APPROVAL_EXPIRED', {
        message: `Request ${row.id} has expired`,
        hint: `jit connect ${row.target} --reason "…" files a new request`,
      });
    case 'cancelled':
      return new JitError('JIT_APPROVAL_CANCELLED', { message: `Request ${row.id} was cancelled` });
    case 'used':
      return new JitError('JIT_APPROVAL_DECIDED', {
        message: `Request ${row.id} has already opened a session${row.session_id ? ` (${row.session_id})` : ''}`,
        hint: `an approval opens one session; jit connect ${row.target} --reason "…" files a new request`,
      });
    case 'approved':
      return new JitError('JIT_APPROVAL_DECIDED', { message: `Request ${row.id} is already approved` });
    default:
      return new JitError('JIT_APPROVAL_DECIDED', { message: `Request ${row.id} is ${state}` });
  }
}

/**
 * The guardrails a session was started with: postgres sessions store InspectionRules, SSH
 * sessions `{ ssh: SshSessionRules }` (their command guardrails ask for approval the same way).
 * Anything unreadable gives none, so nothing can be approved under it (fail closed).
 */
function sessionGuardrails(stored: string | null): Guardrail[] {
  if (!stored) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(stored);
  } catch {
    return [];
  }
  if (parsed && typeof parsed === 'object' && 'ssh' in parsed) {
    const ssh = SshSessionRules.safeParse((parsed as { ssh: unknown }).ssh);
    return ssh.success ? ssh.data.guardrails : [];
  }
  const rules = InspectionRules.safeParse(parsed);
  return rules.success ? rules.data.guardrails : [];
}
