/**
 * The audit log: append-only events at the control plane. An event is written (and the write
 * awaited) BEFORE the action it records is acknowledged, so a crash cannot lose the record of
 * something the user was told had happened.
 */
import type { AuditEvent } from '../../shared/contract/http.js';
import type { Clock } from '../../shared/runtime/ctx.js';
import type { Db } from '../store/db.js';

export type Outcome = 'success' | 'failure' | 'info';

export interface AuditInput {
  type: string;
  actor?: string | undefined;
  target?: string | undefined;
  session?: string | undefined;
  outcome?: Outcome;
  data?: Record<string, unknown>;
}

export interface AuditQuery {
  session?: string;
  type?: string;
  actor?: string;
  target?: string;
  since?: number;
  limit?: number;
}

/** Keys whose values must never be stored, even if a caller passes them by mistake. */
const SECRET_KEYS = /pass|secret|token|grant|authorization|cookie/i;

function scrub(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) out[k] = SECRET_KEYS.test(k) ? '[redacted]' : v;
  return out;
}

export class AuditLog {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {}

  /** Append one event; resolves once it is durable. */
  async append(e: AuditInput): Promise<number> {
    const row = await this.db
      .insertInto('audit_events')
      .values({
        time: this.clock.now(),
        type: e.type,
        actor: e.actor ?? null,
        target: e.target ?? null,
        session: e.session ?? null,
        outcome: e.outcome ?? 'info',
        data: JSON.stringify(scrub(e.data ?? {})),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
  }

  /** Newest-last list of events matching the filters. */
  async query(q: AuditQuery = {}): Promise<AuditEvent[]> {
    let query = this.db.selectFrom('audit_events').selectAll();
    if (q.session) query = query.where('session', '=', q.session);
    if (q.type) query = query.where('type', '=', q.type);
    if (q.actor) query = query.where('actor', '=', q.actor);
    if (q.target) query = query.where('target', '=', q.target);
    if (q.since) query = query.where('time', '>=', q.since);
    const limit = Math.min(Math.max(q.limit ?? 1000, 1), 10_000);
    const rows = await query.orderBy('id', 'desc').limit(limit).execute();
    return rows.reverse().map((r) => ({
      id: r.id,
      time: new Date(Number(r.time)).toISOString(),
      type: r.type,
      actor: r.actor ?? undefined,
      target: r.target ?? undefined,
      session: r.session ?? undefined,
      outcome: r.outcome as Outcome,
      data: JSON.parse(r.data) as Record<string, unknown>,
    }));
  }
}
