/**
 * The evidence report's data: for a time window, who opened which sessions on which targets,
 * when and for how long, under which access rule and approved request, with which credential,
 * and what ran (counts). Built from the audit log alone (the sessions table may be pruned or
 * replaced; the log is what auditors trust). High-rate statement events are counted in SQL,
 * never loaded one by one.
 */
import { sql } from 'kysely';
import type { AuditReport } from '#shared/contract/http.js';
import type { Db } from '../store/db.js';

/** Most sessions one report lists; more sets `truncated`. */
const MAX_SESSIONS = 5000;
const MAX_DENIED = 1000;

type SessionEntry = AuditReport['sessions'][number];

const iso = (ms: number) => new Date(ms).toISOString();
const str = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v.slice(0, 500) : undefined);

function parse(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Build the report for [since, until). */
export async function buildReport(db: Db, w: { since: number; until: number; now: number }): Promise<AuditReport> {
  const inWindow = db.selectFrom('audit_events').where('time', '>=', w.since).where('time', '<', w.until);
  // Per session and type: counts of the high-rate events.
  const counts = await inWindow
    .select(['session', 'type', 'outcome', sql<number>`count(*)`.as('n')])
    .where('session', 'is not', null)
    .where('type', 'in', [
      'statement.executed',
      'statement.completed',
      'statement.blocked',
      'result.masked',
      'connection.opened',
      'request.approved',
      // SSH sessions: commands count as statements.
      'command.executed',
      'command.blocked',
    ])
    .groupBy(['session', 'type', 'outcome'])
    .execute();
  const lifecycle = await inWindow
    .selectAll()
    .where('type', 'in', [
      'session.started',
      'session.ended',
      'credential.created',
      'credential.destroyed',
      'credential.failed',
      'request.used',
    ])
    .orderBy('id')
    .limit(MAX_SESSIONS * 6)
    .execute();

  const sessions = new Map<string, SessionEntry>();
  const entry = (id: string): SessionEntry => {
    let s = sessions.get(id);
    if (!s) {
      s = {
        id,
        user: '?',
        target: '?',
        credentials: [],
        connections: 0,
        statements: { executed: 0, failed: 0, blocked: 0, masked: 0, approvals: 0 },
      };
      sessions.set(id, s);
    }
    return s;
  };
  let truncated = false;
  const touch = (id: string): SessionEntry | undefined => {
    if (!sessions.has(id) && sessions.size >= MAX_SESSIONS) {
      truncated = true;
      return undefined;
    }
    return entry(id);
  };

  const applyLifecycle = (r: (typeof lifecycle)[number]) => {
    if (!r.session) return;
    const s = touch(r.session);
    if (!s) return;
    const d = parse(r.data);
    const t = Number(r.time);
    switch (r.type) {
      case 'session.started':
        s.user = r.actor ?? s.user;
        s.target = r.target ?? s.target;
        s.startedAt = iso(t);
        s.reason = str(d['reason']);
        s.rule = str(d['rule']);
        s.database = str(d['database']);
        s.requestId = str(d['request']) ?? str(d['requestId']) ?? s.requestId;
        break;
      case 'session.ended':
        s.endedAt = iso(t);
        s.endReason = str(d['reason']);
        if (s.user === '?') s.user = str(d['user']) ?? r.actor ?? s.user;
        if (s.target === '?') s.target = r.target ?? s.target;
        break;
      case 'request.used':
        s.requestId = str(d['request']) ?? s.requestId;
        break;
      case 'credential.created':
      case 'credential.failed':
        s.credentials.push({ role: str(d['role']), createdAt: r.type === 'credential.created' ? iso(t) : undefined, outcome: r.outcome });
        if (s.target === '?') s.target = r.target ?? s.target;
        break;
      case 'credential.destroyed': {
        const role = str(d['role']);
        const open = s.credentials.find((c) => c.role === role && !c.destroyedAt);
        if (open) {
          open.destroyedAt = iso(t);
          if (r.outcome === 'failure') open.outcome = 'failure';
        } else {
          s.credentials.push({ role, destroyedAt: iso(t), outcome: r.outcome });
        }
        break;
      }
    }
  };
  for (const r of lifecycle) applyLifecycle(r);
  if (lifecycle.length >= MAX_SESSIONS * 6) truncated = true;

  for (const c of counts) {
    const s = touch(c.session!);
    if (!s) continue;
    const n = Number(c.n);
    if (c.type === 'statement.executed' || c.type === 'command.executed') s.statements.executed += n;
    else if (c.type === 'statement.completed' && c.outcome === 'failure') s.statements.failed += n;
    else if (c.type === 'statement.blocked' || c.type === 'command.blocked') s.statements.blocked += n;
    else if (c.type === 'result.masked') s.statements.masked += n;
    else if (c.type === 'connection.opened') s.connections += n;
    else if (c.type === 'request.approved') s.statements.approvals += n;
  }

  // Sessions active in the window that started before it: their start lies outside, fetch it.
  const missing = [...sessions.values()].filter((s) => !s.startedAt).map((s) => s.id);
  for (let i = 0; i < missing.length; i += 500) {
    const older = await db
      .selectFrom('audit_events')
      .selectAll()
      .where('session', 'in', missing.slice(i, i + 500))
      .where('type', 'in', ['session.started', 'request.used'])
      .where('time', '<', w.since)
      .execute();
    for (const r of older) applyLifecycle(r);
  }
  for (const s of sessions.values()) {
    if (s.startedAt) {
      const end = s.endedAt ? Date.parse(s.endedAt) : Math.min(w.now, w.until);
      s.durationSeconds = Math.max(0, Math.round((end - Date.parse(s.startedAt)) / 1000));
    }
  }

  const deniedRows = await inWindow
    .selectAll()
    .where('type', 'in', ['session.denied', 'request.denied', 'relay.refused'])
    .orderBy('id')
    .limit(MAX_DENIED)
    .execute();
  const denied = deniedRows.map((r) => {
    const d = parse(r.data);
    return { time: iso(Number(r.time)), type: r.type, user: r.actor ?? undefined, target: r.target ?? undefined, reason: str(d['reason']) };
  });

  const list = [...sessions.values()].sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? '') || a.id.localeCompare(b.id));
  const sum = (f: (s: SessionEntry) => number) => list.reduce((n, s) => n + f(s), 0);
  return {
    generatedAt: iso(w.now),
    since: iso(w.since),
    until: iso(w.until),
    totals: {
      sessions: list.length,
      users: new Set(list.map((s) => s.user)).size,
      targets: new Set(list.map((s) => s.target)).size,
      statements: sum((s) => s.statements.executed),
      blocked: sum((s) => s.statements.blocked),
      masked: sum((s) => s.statements.masked),
      approvals: sum((s) => s.statements.approvals + (s.requestId ? 1 : 0)),
      denied: denied.length,
    },
    sessions: list,
    denied,
    truncated: truncated || deniedRows.length >= MAX_DENIED,
  };
}
