/**
 * Sessions: created after a policy decision, kept alive by CLI heartbeats, ended by the user,
 * by expiry, by a lost heartbeat or by an administrator. Every transition is audited before it is
 * acknowledged.
 */
import type { SessionInfo } from '#shared/contract/agent.js';
import type { CreateSessionRequest, CreateSessionResponse, EndReason, Session } from '#shared/contract/http.js';
import { describeEndReason } from '#shared/contract/end-reasons.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import { makeScramVerifier } from '#protocol/postgres/scram.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { PolicyEngine } from '../policy/policy.js';
import type { Db, SessionsTable } from '../store/db.js';
import { sessionRulesField, sshSessionRules } from '../ssh/session-rules.js';
import type { Principal as VerifiedPrincipal } from '../identity/verifier.js';
import type { GrantSigner } from './grants.js';
import { isId, newId, sessionRoleName } from '#shared/contract/ids.js';

export interface SessionSettings {
  heartbeatTimeoutSeconds: number;
  heartbeatIntervalSeconds: number;
  defaultDurationSeconds: number;
}

/** Who asks: the verified token's principal (only its identity fields are used here). */
export type Principal = Pick<VerifiedPrincipal, 'subject' | 'username' | 'groups' | 'issuer'>;

export interface SessionServiceDeps {
  db: Db;
  audit: AuditLog;
  policy: PolicyEngine;
  grants: GrantSigner;
  clock: Clock;
  random(bytes: number): Buffer;
  settings: SessionSettings;
  /** Told after a session has ended and the end is recorded (closes streams, drops credentials). */
  onEnded(session: SessionsTable): void;
  /** Targets with an approvals rule: admits a session only under an approved request (approvals/). */
  approvals?: SessionApprovalGate;
}

/** What the session service asks of the approvals module before it opens a session. */
export interface SessionApprovalGate {
  /**
   * With `req.request`: consume that approved request for `sessionId` and return the session
   * length it grants. Without: throw JIT_APPROVAL_REQUIRED if the target needs approval;
   * undefined when it does not.
   */
  admit(
    who: Principal,
    req: CreateSessionRequest,
    decision: ReturnType<PolicyEngine['decide']>,
    sessionId: string,
  ): Promise<{ requestId: string; durationSeconds: number } | undefined>;
}

export function toSession(row: SessionsTable): Session {
  return {
    id: row.id,
    user: row.username,
    target: row.target,
    targetType: row.target_type as Session['targetType'],
    database: row.database ?? undefined,
    reason: row.reason ?? undefined,
    state: row.state as Session['state'],
    createdAt: new Date(Number(row.created_at)).toISOString(),
    expiresAt: new Date(Number(row.expires_at)).toISOString(),
    endedAt: row.ended_at ? new Date(Number(row.ended_at)).toISOString() : undefined,
    endReason: (row.end_reason ?? undefined) as EndReason | undefined,
    dbUser: row.target_type === 'postgres' ? sessionRoleName(row.id) : undefined,
    request: row.request_id ?? undefined,
  };
}

export class SessionService {
  constructor(private readonly deps: SessionServiceDeps) {}

  /** Decide, record and create a session; returns the grant and the one-time local secret. */
  async create(who: Principal, req: CreateSessionRequest): Promise<CreateSessionResponse> {
    const { db, audit, policy, clock, settings } = this.deps;
    let decision: ReturnType<PolicyEngine['decide']>;
    try {
      decision = policy.decide(who, req.target);
    } catch (err) {
      await audit.append({
        type: 'session.denied',
        actor: who.username,
        target: req.target.slice(0, 128),
        outcome: 'failure',
        data: { reason: 'no access rule' },
      });
      throw err;
    }
    // postgres: a session reaches one database, the target's or one the policy opens besides it.
    if (req.database !== undefined && decision.target.type === 'postgres') {
      const open = [...(decision.target.database ? [decision.target.database] : []), ...(decision.target.databases ?? [])];
      if (!open.includes(req.database)) {
        await audit.append({
          type: 'session.denied',
          actor: who.username,
          target: decision.target.name,
          outcome: 'failure',
          data: { reason: 'database not open through jit', database: req.database.slice(0, 63) },
        });
        throw new JitError('JIT_ACCESS_DENIED', {
          message: `The database ${req.database.slice(0, 63)} is not open through jit on ${decision.target.name}`,
          hint: open.length ? `databases on this target: ${open.join(', ')}` : 'leave out --database to use the target’s own',
        });
      }
    }
    // ssh: the login is checked before anything else is spent on the request.
    const sshRules = decision.target.type === 'ssh' ? sshSessionRules(policy, who, decision, req.login) : undefined;
    const id = newId(this.deps.random);
    if (!req.request && req.durationSeconds !== undefined && req.durationSeconds > decision.maxDurationSeconds) {
      throw new JitError('JIT_SESSION_DURATION', {
        message: `The longest session policy allows for ${decision.target.name} is ${Math.floor(decision.maxDurationSeconds / 60)} minutes`,
      });
    }
    // Approval comes after the access rule: an approval never widens who may reach a target.
    const admitted = await this.deps.approvals?.admit(who, req, decision, id);
    const requested = admitted
      ? admitted.durationSeconds
      : (req.durationSeconds ?? Math.min(settings.defaultDurationSeconds, decision.maxDurationSeconds));
    if (requested > decision.maxDurationSeconds) {
      throw new JitError('JIT_SESSION_DURATION', {
        message: `The longest session policy allows for ${decision.target.name} is ${Math.floor(decision.maxDurationSeconds / 60)} minutes`,
      });
    }
    const now = clock.now();
    const localSecret = this.deps.random(24).toString('base64url');
    const row: SessionsTable = {
      id,
      username: who.username,
      subject: who.subject,
      issuer: who.issuer,
      target: decision.target.name,
      target_type: decision.target.type,
      agent: decision.target.agent,
      database: req.database ?? decision.target.database ?? null,
      reason: req.reason ?? null,
      state: 'active',
      created_at: now,
      expires_at: now + requested * 1000,
      last_heartbeat: now,
      ended_at: null,
      end_reason: null,
      grant_roles: JSON.stringify(decision.grantRoles),
      local_verifier: JSON.stringify(makeScramVerifier(localSecret)),
      access_rule: decision.rule.name,
      inspection:
        decision.target.type === 'postgres'
          ? JSON.stringify(policy.inspectionFor(who, decision.target.name))
          : sshRules
            ? JSON.stringify({ ssh: sshRules })
            : null,
      request_id: admitted?.requestId ?? null,
    };
    // Audit first: the session must not exist without its record.
    await audit.append({
      type: 'session.started',
      actor: who.username,
      target: row.target,
      session: id,
      outcome: 'success',
      data: {
        rule: decision.rule.name,
        reason: req.reason,
        durationSeconds: requested,
        database: row.database,
        ...(sshRules ? { login: sshRules.login } : {}),
        expiresAt: new Date(row.expires_at).toISOString(),
        ...(admitted ? { request: admitted.requestId } : {}),
      },
    });
    await db.insertInto('sessions').values(row).execute();
    const grant = await this.deps.grants.sign({
      sub: who.subject,
      sid: id,
      tgt: row.target,
      expiresAt: row.expires_at,
      jti: this.deps.random(12).toString('base64url'),
    });
    return {
      session: toSession(row),
      grant,
      localSecret,
      heartbeatIntervalSeconds: settings.heartbeatIntervalSeconds,
    };
  }

  async get(id: string): Promise<SessionsTable | undefined> {
    if (!isId(id)) return undefined;
    return this.deps.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** A session the caller owns (admins may see any); others' sessions look like missing ones. */
  async getOwned(who: Principal, id: string, admin = false): Promise<SessionsTable> {
    const row = await this.get(id);
    if (!row || (!admin && (row.subject !== who.subject || row.issuer !== who.issuer))) {
      throw new JitError('JIT_SESSION_NOT_FOUND');
    }
    return row;
  }

  async list(filter: { subject?: string; issuer?: string; activeOnly?: boolean; limit?: number }): Promise<SessionsTable[]> {
    let q = this.deps.db.selectFrom('sessions').selectAll();
    if (filter.subject) q = q.where('subject', '=', filter.subject);
    if (filter.issuer) q = q.where('issuer', '=', filter.issuer);
    if (filter.activeOnly) q = q.where('state', '=', 'active');
    return q
      .orderBy('created_at', 'desc')
      .limit(Math.min(filter.limit ?? 200, 1000))
      .execute();
  }

  /** Record a heartbeat; an ended session answers JIT_SESSION_ENDED. */
  async heartbeat(who: Principal, id: string): Promise<SessionsTable> {
    const row = await this.getOwned(who, id);
    if (row.state !== 'active') throw endedError(row);
    const now = this.deps.clock.now();
    await this.deps.db.updateTable('sessions').set({ last_heartbeat: now }).where('id', '=', id).execute();
    return { ...row, last_heartbeat: now };
  }

  /** End a session once (idempotent); records why. */
  async end(id: string, reason: EndReason, actor?: string): Promise<SessionsTable | undefined> {
    const row = await this.get(id);
    if (!row || row.state !== 'active') return row;
    const now = this.deps.clock.now();
    const res = await this.deps.db
      .updateTable('sessions')
      .set({ state: 'ended', ended_at: now, end_reason: reason })
      .where('id', '=', id)
      .where('state', '=', 'active')
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) return this.get(id);
    const ended: SessionsTable = { ...row, state: 'ended', ended_at: now, end_reason: reason };
    await this.deps.audit.append({
      type: 'session.ended',
      actor: actor ?? row.username,
      target: row.target,
      session: id,
      outcome: 'info',
      data: { reason, user: row.username, durationSeconds: Math.round((now - Number(row.created_at)) / 1000) },
    });
    this.deps.onEnded(ended);
    return ended;
  }

  /** End sessions whose heartbeat stopped or whose time is up. */
  async sweep(): Promise<void> {
    const now = this.deps.clock.now();
    const stale = now - this.deps.settings.heartbeatTimeoutSeconds * 1000;
    const rows = await this.deps.db
      .selectFrom('sessions')
      .select(['id', 'expires_at', 'last_heartbeat'])
      .where('state', '=', 'active')
      .where((eb) => eb.or([eb('expires_at', '<=', now), eb('last_heartbeat', '<', stale)]))
      .execute();
    for (const r of rows) {
      await this.end(r.id, Number(r.expires_at) <= now ? 'expired' : 'heartbeat-lost', 'jit');
    }
  }

  /** Of the given ids, those whose sessions are active (the agents' reapers ask). */
  async liveOf(ids: string[], agent: string): Promise<string[]> {
    const valid = ids.filter(isId);
    if (valid.length === 0) return [];
    const rows = await this.deps.db
      .selectFrom('sessions')
      .select('id')
      .where('id', 'in', valid)
      .where('state', '=', 'active')
      .where('agent', '=', agent)
      .execute();
    return rows.map((r) => r.id);
  }

  /** What the agent needs to serve a stream of this session. */
  sessionInfo(row: SessionsTable): SessionInfo {
    return {
      id: row.id,
      user: row.username,
      target: row.target,
      database: row.database ?? undefined,
      grantRoles: JSON.parse(row.grant_roles) as string[],
      ...roleSettingsOf(this.deps.policy.target(row.target)),
      expiresAt: new Date(Number(row.expires_at)).toISOString(),
      localVerifier: JSON.parse(row.local_verifier),
      ...(row.inspection ? sessionRulesField(row.target_type, row.inspection) : {}),
    };
  }
}

/** A postgres target's session-role timeout defaults (policy), for SessionInfo. */
function roleSettingsOf(
  t: { statementTimeout?: number; idleInTransactionTimeout?: number } | undefined,
): Pick<SessionInfo, 'roleSettings'> {
  if (!t || (t.statementTimeout === undefined && t.idleInTransactionTimeout === undefined)) return {};
  return {
    roleSettings: {
      ...(t.statementTimeout !== undefined ? { statementTimeout: t.statementTimeout } : {}),
      ...(t.idleInTransactionTimeout !== undefined ? { idleInTransactionTimeout: t.idleInTransactionTimeout } : {}),
    },
  };
}

/** The error a client sees for a session that is over, with the reason in words. */
export function endedError(row: SessionsTable): JitError {
  return new JitError('JIT_SESSION_ENDED', {
    message: `Session ${row.id} has ended: ${describeEndReason(row.end_reason)}`,
  });
}
