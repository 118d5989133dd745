/**
 * Forwards every audit event to each configured destination, from a durable outbox: the audit
 * table itself (append-only, so no second copy) plus one cursor per destination in the store,
 * the id of the last event that destination acknowledged. The cursor moves only after the
 * acknowledgement, so a receiver that is down, or a control plane that restarts, costs delay,
 * never an event: delivery is at least once, in id order, and a batch may be sent twice only if
 * the acknowledgement or the cursor write was lost (crash between the two). Receivers that
 * dedupe by event id see every event exactly once.
 */
import { sql } from 'kysely';
import type { AuditDestination } from '#shared/config/server.js';
import type { AuditForwardingStatus } from '#shared/contract/http.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Db } from '../store/db.js';
import { toRecord } from './record.js';
import type { Sink } from './sinks.js';

export interface ForwarderDeps {
  db: Db;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  /** Uniform random number in [0, 1) for retry jitter. */
  random(): number;
  retryInitialSeconds: number;
  retryMaxSeconds: number;
  /** How often an idle destination looks for events it was not told about (default 5 s). */
  idlePollMs?: number;
}

interface Lane {
  dest: AuditDestination;
  sink: Sink;
  cursor: number;
  failures: number;
  lastSuccessAt?: number;
  lastError?: string;
  nextAttemptAt?: number;
  wake?: () => void;
  running?: Promise<void>;
}

/** One delivery loop per destination. */
export class AuditForwarder {
  private readonly lanes: Lane[];
  private closed = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly deps: ForwarderDeps,
    destinations: readonly { dest: AuditDestination; sink: Sink }[],
  ) {
    this.lanes = destinations.map((d) => ({ dest: d.dest, sink: d.sink, cursor: 0, failures: 0 }));
  }

  /** Load the cursors and start delivering. */
  async start(): Promise<void> {
    for (const lane of this.lanes) {
      const row = await this.deps.db.selectFrom('audit_cursors').selectAll().where('destination', '=', lane.dest.name).executeTakeFirst();
      lane.cursor = row ? Number(row.last_id) : 0;
    }
    this.unsubscribe = this.deps.audit.onAppended(() => {
      for (const lane of this.lanes) lane.wake?.();
    });
    for (const lane of this.lanes) lane.running = this.run(lane);
  }

  /** The lowest cursor: events after it are not yet everywhere (retention keeps them). */
  minCursor(): number | undefined {
    if (this.lanes.length === 0) return undefined;
    return Math.min(...this.lanes.map((l) => l.cursor));
  }

  /** Per destination: cursor, backlog and the last failure. */
  async status(): Promise<AuditForwardingStatus> {
    const head = await this.deps.audit.lastEventId();
    const destinations = [];
    for (const l of this.lanes) {
      const c = await this.deps.db
        .selectFrom('audit_events')
        .select(sql<number>`count(*)`.as('n'))
        .where('id', '>', l.cursor)
        .executeTakeFirst();
      destinations.push({
        name: l.dest.name,
        type: l.dest.type,
        endpoint: l.sink.endpoint,
        cursor: l.cursor,
        backlog: Number(c?.n ?? 0),
        failures: l.failures,
        ...(l.lastSuccessAt ? { lastSuccessAt: new Date(l.lastSuccessAt).toISOString() } : {}),
        ...(l.lastError ? { lastError: l.lastError } : {}),
        ...(l.nextAttemptAt ? { nextAttemptAt: new Date(l.nextAttemptAt).toISOString() } : {}),
      });
    }
    return { headId: head, destinations };
  }

  /** Stop delivering; a batch in flight is abandoned (it is sent again after a restart). */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    for (const l of this.lanes) l.wake?.();
    await Promise.all(this.lanes.map((l) => l.running?.catch(() => {})));
  }

  private sleep(lane: Lane, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = this.deps.clock.setTimeout(() => {
        lane.wake = undefined;
        resolve();
      }, ms);
      lane.wake = () => {
        this.deps.clock.clearTimeout(t);
        lane.wake = undefined;
        resolve();
      };
    });
  }

  private async run(lane: Lane): Promise<void> {
    const { db, clock, logger } = this.deps;
    while (!this.closed) {
      let rows: Awaited<ReturnType<typeof this.batch>>;
      try {
        rows = await this.batch(lane);
      } catch (err) {
        if (this.closed) return;
        logger.error({ err, destination: lane.dest.name }, 'audit forwarding: reading the log failed');
        await this.sleep(lane, 1000);
        continue;
      }
      if (rows.length === 0) {
        await this.sleep(lane, this.deps.idlePollMs ?? 5000);
        continue;
      }
      try {
        await lane.sink.send(rows.map(toRecord));
      } catch (err) {
        if (this.closed) return;
        lane.failures++;
        lane.lastError = String((err as Error)?.message ?? err).slice(0, 300);
        const base = Math.min(this.deps.retryMaxSeconds, this.deps.retryInitialSeconds * 2 ** Math.min(lane.failures - 1, 20));
        const delay = Math.round(base * 1000 * (0.5 + this.deps.random() / 2));
        lane.nextAttemptAt = clock.now() + delay;
        logger.warn(
          { destination: lane.dest.name, failures: lane.failures, retryInMs: delay, error: lane.lastError },
          'audit forwarding: delivery failed',
        );
        // Retry on the timer only: new events must not make a failing receiver hammered.
        await new Promise<void>((resolve) => {
          const t = clock.setTimeout(resolve, delay);
          lane.wake = () => {
            if (this.closed) {
              clock.clearTimeout(t);
              resolve();
            }
          };
        });
        lane.wake = undefined;
        continue;
      }
      const last = Number(rows[rows.length - 1]!.id);
      // Acknowledged: only now does the cursor move (a crash before this line re-sends the batch).
      await db
        .insertInto('audit_cursors')
        .values({ destination: lane.dest.name, last_id: last, updated_at: clock.now() })
        .onConflict((oc) => oc.column('destination').doUpdateSet({ last_id: last, updated_at: clock.now() }))
        .execute();
      lane.cursor = last;
      if (lane.failures > 0) logger.info({ destination: lane.dest.name }, 'audit forwarding: delivering again');
      lane.failures = 0;
      lane.lastError = undefined;
      lane.nextAttemptAt = undefined;
      lane.lastSuccessAt = clock.now();
    }
  }

  private batch(lane: Lane) {
    return this.deps.db
      .selectFrom('audit_events')
      .selectAll()
      .where('id', '>', lane.cursor)
      .orderBy('id')
      .limit(lane.dest.batchSize)
      .execute();
  }
}
