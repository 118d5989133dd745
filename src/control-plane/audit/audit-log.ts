/**
 * The audit log: append-only events at the control plane. An event is written (and the write
 * awaited) BEFORE the action it records is acknowledged, so a crash cannot lose the record of
 * something the user was told had happened.
 */
import type { AuditEvent } from '../../shared/contract/http.js';
import type { Clock } from '../../shared/runtime/ctx.js';
import type { AuditTable, Db } from '../store/db.js';

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

interface Pending {
  row: Omit<AuditTable, 'id'>;
  resolve(id: number): void;
  reject(err: unknown): void;
}

/** Largest number of events committed in one transaction. */
const MAX_BATCH = 1000;

export class AuditLog {
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {}

  /**
   * Append one event; resolves once it is durable. Events that arrive while a commit is running
   * are committed together in the next transaction (group commit), so a busy agent reporting
   * thousands of statements a second costs one fsync per batch, not one per event.
   */
  append(e: AuditInput): Promise<number> {
    const row = {
      time: this.clock.now(),
      type: e.type,
      actor: e.actor ?? null,
      target: e.target ?? null,
      session: e.session ?? null,
      outcome: e.outcome ?? 'info',
      data: JSON.stringify(scrub(e.data ?? {})),
    };
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  /** Number of events waiting to be committed (a backlog metric). */
  backlog(): number {
    return this.queue.length;
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          const ids = await this.db.transaction().execute(async (trx) => {
            const out: number[] = [];
            for (const p of batch) {
              const r = await trx.insertInto('audit_events').values(p.row).returning('id').executeTakeFirstOrThrow();
              out.push(r.id);
            }
            return out;
          });
          batch.forEach((p, i) => p.resolve(ids[i]!));
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
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
