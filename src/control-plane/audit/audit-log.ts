/**
 * The audit log: append-only events at the control plane. An event is written (and the write
 * awaited) BEFORE the action it records is acknowledged, so a crash cannot lose the record of
 * something the user was told had happened.
 *
 * Every event is linked into a hash chain (audit/chain.ts) inside the same transaction that
 * commits it, in id order, and the chain is sealed now and then by a signed checkpoint. Only this
 * class writes the chain: one writer per stream, serialised by `exclusive()`.
 */
import { type Selectable, sql, type Transaction } from 'kysely';
import type { AuditEvent, AuditForwardingStatus } from '#shared/contract/http.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { AuditTable, Db, Schema } from '../store/db.js';
import type { AuditSigner } from './audit-key.js';
import { type Checkpoint, eventHash, GENESIS_HASH } from '#shared/audit/chain.js';
import { STREAM_ID_PATTERN } from '#shared/contract/ids.js';

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
  session?: string | undefined;
  /** Exact type, or a prefix when it ends with `.` or `*` (`statement.` / `statement.*`). */
  type?: string | undefined;
  actor?: string | undefined;
  target?: string | undefined;
  outcome?: Outcome | undefined;
  /** Epoch ms, inclusive. */
  since?: number | undefined;
  /** Epoch ms, exclusive. */
  until?: number | undefined;
  /** Only events with a larger id, oldest first (for tailing). */
  afterId?: number | undefined;
  limit?: number | undefined;
}

/** Keys whose values must never be stored, even if a caller passes them by mistake. */
const SECRET_KEYS = /pass|secret|token|grant|authorization|cookie/i;

function scrub(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) out[k] = SECRET_KEYS.test(k) ? '[redacted]' : v;
  return out;
}

type NewRow = Pick<AuditTable, 'time' | 'type' | 'actor' | 'target' | 'session' | 'outcome' | 'data'>;
type FullRow = Omit<AuditTable, 'id'> & { id: number };

interface Pending {
  row: NewRow;
  resolve(id: number): void;
  reject(err: unknown): void;
}

interface Head {
  id: number | null;
  seq: number;
  hash: string;
}

/** Largest number of events committed in one transaction. */
/** How long the first event of a burst waits for others to share its commit. */
const COMMIT_WINDOW_MS = 4;
const MAX_BATCH = 1000;
/** Rows per INSERT statement (SQLite allows 32766 bound values; 12 columns each). */
const INSERT_CHUNK = 250;
/** Stream ids: short, printable, safe in a syslog structured-data value. */

export interface AuditLogOptions {
  /** This writer's chain (default `cp`); replicas sharing a store each need their own. */
  stream?: string;
  /** Signs checkpoints; without it no checkpoints are written (tests of the plain log). */
  signer?: AuditSigner;
  /** Seal the chain with a checkpoint after this many events (default 1000). */
  checkpointEveryEvents?: number;
  logger?: Logger;
}

/** Convert a stored row to the API shape. */
export function toAuditEvent(r: Selectable<AuditTable>): AuditEvent {
  return {
    id: Number(r.id),
    time: new Date(Number(r.time)).toISOString(),
    type: r.type,
    actor: r.actor ?? undefined,
    target: r.target ?? undefined,
    session: r.session ?? undefined,
    outcome: r.outcome as Outcome,
    data: safeParse(r.data),
    stream: r.stream ?? undefined,
    seq: r.seq === null || r.seq === undefined ? undefined : Number(r.seq),
    prevHash: r.prev_hash ?? undefined,
    hash: r.hash ?? undefined,
  };
}

function safeParse(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { value: v };
  } catch {
    return { unparsable: String(text).slice(0, 200) };
  }
}

export class AuditLog {
  readonly stream: string;
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  private head: Head | undefined;
  private lastId = 0;
  private lastCheckpointSeq = 0;
  private readonly listeners = new Set<(lastId: number) => void>();
  private readonly checkpointEvery: number;
  /** Set by the forwarder when destinations are configured (GET /v1/audit/forwarding). */
  forwarding: { status(): Promise<AuditForwardingStatus>; minCursor(): number | undefined } | undefined;

  constructor(
    private readonly db: Db,
    readonly clock: Clock,
    private readonly opts: AuditLogOptions = {},
  ) {
    this.stream = opts.stream ?? 'cp';
    if (!STREAM_ID_PATTERN.test(this.stream)) throw new Error(`audit stream id "${this.stream}" is not valid`);
    this.checkpointEvery = Math.max(1, opts.checkpointEveryEvents ?? 1000);
  }

  /** The signer, if checkpoints are on. */
  get signer(): AuditSigner | undefined {
    return this.opts.signer;
  }

  /**
   * Append one event; resolves once it is durable. Events that arrive while a commit is running
   * are committed together in the next transaction (group commit), so a busy agent reporting
   * thousands of statements a second costs one fsync per batch, not one per event.
   */
  append(e: AuditInput): Promise<number> {
    const row: NewRow = {
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
      // Wait a moment before committing, so events arriving in the same burst (an agent reports
      // every statement) share one transaction instead of paying a commit each.
      this.flushing ??= new Promise<void>((r) => this.clock.setTimeout(r, this.queue.length >= MAX_BATCH ? 0 : COMMIT_WINDOW_MS)).then(() =>
        this.flush(),
      );
    });
  }

  /** Number of events waiting to be committed (a backlog metric). */
  backlog(): number {
    return this.queue.length;
  }

  /** Called with the newest id after each commit (tailing, forwarding). Returns an unsubscribe. */
  onAppended(fn: (lastId: number) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Wait until everything appended so far is committed. */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /** Run fn alone: commits, checkpoints and prunes never interleave. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => {});
    return run;
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          const ids = await this.exclusive(() => this.commit(batch.map((p) => p.row)));
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(ids[i]!);
          for (const l of this.listeners) l(ids[ids.length - 1]!);
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** Chain and insert one batch in one transaction; the head moves only once it committed. */
  private async commit(rows: NewRow[]): Promise<number[]> {
    const { head, lastId, rowsToInsert, checkpoint } = await this.db.transaction().execute(async (trx) => {
      let h = this.head ?? (await this.loadHead(trx));
      // Never reuse an id, even one whose row has since vanished. This process is the store's
      // only writer, so after the first commit its own counter is the truth.
      let id = this.lastId;
      if (id === 0) {
        const max = await trx.selectFrom('audit_events').select(sql<number | null>`max(id)`.as('m')).executeTakeFirst();
        id = Number(max?.m ?? 0);
      }
      const out: FullRow[] = [];
      for (const r of rows) {
        id++;
        const chained = { ...r, id, stream: this.stream, seq: h.seq + 1, prev_hash: h.hash };
        const hash = eventHash({ ...chained, prevHash: chained.prev_hash })!;
        out.push({ ...chained, hash });
        h = { id, seq: chained.seq, hash };
      }
      for (let i = 0; i < out.length; i += INSERT_CHUNK) {
        await trx
          .insertInto('audit_events')
          .values(out.slice(i, i + INSERT_CHUNK))
          .execute();
      }
      let cp: Checkpoint | undefined;
      if (this.opts.signer && h.seq - this.lastCheckpointSeq >= this.checkpointEvery) {
        cp = await this.writeCheckpoint(trx, h, null);
      }
      return { head: h, lastId: id, rowsToInsert: out, checkpoint: cp };
    });
    this.head = head;
    this.lastId = lastId;
    if (checkpoint) this.lastCheckpointSeq = checkpoint.lastSeq;
    return rowsToInsert.map((r) => r.id);
  }

  /**
   * The chain head of this stream: its newest chained event, else the newest checkpoint (all
   * events pruned), else genesis. A store made before chaining existed gets its rows chained
   * here, once, while no chained row exists yet; an unchained row that shows up later is never
   * chained (verification reports it as inserted).
   */
  private async loadHead(trx: Transaction<Schema>): Promise<Head> {
    const cp = await trx
      .selectFrom('audit_checkpoints')
      .selectAll()
      .where('stream', '=', this.stream)
      .orderBy('last_seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    this.lastCheckpointSeq = cp ? Number(cp.last_seq) : 0;
    const last = await trx
      .selectFrom('audit_events')
      .select(['id', 'seq', 'hash'])
      .where('stream', '=', this.stream)
      .where('hash', 'is not', null)
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    if (last) return { id: Number(last.id), seq: Number(last.seq), hash: last.hash! };
    if (cp) return { id: Number(cp.last_id), seq: Number(cp.last_seq), hash: cp.last_hash };
    const anyChained = await trx.selectFrom('audit_events').select('id').where('hash', 'is not', null).limit(1).executeTakeFirst();
    let h: Head = { id: null, seq: 0, hash: GENESIS_HASH };
    if (!anyChained) {
      const legacy = await trx.selectFrom('audit_events').selectAll().where('hash', 'is', null).orderBy('id').execute();
      for (const r of legacy) {
        const chained = { ...r, id: Number(r.id), time: Number(r.time), stream: this.stream, seq: h.seq + 1, prevHash: h.hash };
        const hash = eventHash(chained) ?? eventHash({ ...chained, data: '{}' })!;
        await trx
          .updateTable('audit_events')
          .set({ stream: this.stream, seq: chained.seq, prev_hash: h.hash, hash })
          .where('id', '=', chained.id)
          .execute();
        h = { id: chained.id, seq: chained.seq, hash };
      }
      if (legacy.length > 0) this.opts.logger?.info({ events: legacy.length }, 'audit: chained the events of an older store');
    }
    return h;
  }

  private async writeCheckpoint(
    trx: Transaction<Schema>,
    h: Head,
    pruned: { id: number; seq: number; hash: string } | null,
  ): Promise<Checkpoint> {
    const signer = this.opts.signer!;
    const c = signer.sign({
      stream: this.stream,
      lastId: h.id ?? 0,
      lastSeq: h.seq,
      lastHash: h.hash,
      count: h.seq,
      time: this.clock.now(),
      prunedThroughId: pruned?.id ?? null,
      prunedThroughSeq: pruned?.seq ?? null,
      prunedLastHash: pruned?.hash ?? null,
    });
    await trx
      .insertInto('audit_checkpoints')
      .values({
        stream: c.stream,
        last_id: c.lastId,
        last_seq: c.lastSeq,
        last_hash: c.lastHash,
        count: c.count,
        time: c.time,
        pruned_through_id: c.prunedThroughId,
        pruned_through_seq: c.prunedThroughSeq,
        pruned_last_hash: c.prunedLastHash,
        key_id: c.keyId,
        signature: c.signature,
      })
      .execute();
    return c;
  }

  /** Seal the chain now if events were added since the last checkpoint (timer, shutdown). */
  async checkpoint(): Promise<Checkpoint | undefined> {
    if (!this.opts.signer) return undefined;
    await this.drain();
    return this.exclusive(async () => {
      const made = await this.db.transaction().execute(async (trx) => {
        const h = this.head ?? (await this.loadHead(trx));
        this.head = h;
        if (h.seq === 0 || h.seq <= this.lastCheckpointSeq) return undefined;
        return this.writeCheckpoint(trx, h, null);
      });
      if (made) this.lastCheckpointSeq = made.lastSeq;
      return made;
    });
  }

  /**
   * Delete this stream's events older than `before` (epoch ms), but only up to a checkpoint, so
   * what remains still verifies: the new checkpoint carries the last pruned event's hash, which
   * the first remaining event links to. Audited as `audit.pruned`.
   */
  async prune(
    before: number,
    opts: { notAfterId?: number | undefined } = {},
  ): Promise<{ throughId: number; throughSeq: number; deleted: number } | undefined> {
    if (!this.opts.signer) return undefined;
    await this.drain();
    const result = await this.exclusive(() =>
      this.db.transaction().execute(async (trx) => {
        const h = this.head ?? (await this.loadHead(trx));
        this.head = h;
        const boundary = await trx
          .selectFrom('audit_events')
          .select(sql<number | null>`max(id)`.as('m'))
          .where('stream', '=', this.stream)
          .where('time', '<', before)
          // Events a forwarding destination has not acknowledged yet are kept.
          .$if(opts.notAfterId !== undefined, (q) => q.where('id', '<=', opts.notAfterId!))
          .executeTakeFirst();
        if (boundary?.m === null || boundary?.m === undefined) return undefined;
        const cp = await trx
          .selectFrom('audit_checkpoints')
          .selectAll()
          .where('stream', '=', this.stream)
          .where('last_id', '<=', Number(boundary.m))
          .orderBy('last_id', 'desc')
          .limit(1)
          .executeTakeFirst();
        // The head itself stays: the stream is never left without its newest event.
        if (!cp || h.id === null || Number(cp.last_id) >= h.id) return undefined;
        const pruned = { id: Number(cp.last_id), seq: Number(cp.last_seq), hash: cp.last_hash };
        const del = await trx.deleteFrom('audit_events').where('stream', '=', this.stream).where('id', '<=', pruned.id).executeTakeFirst();
        await trx.deleteFrom('audit_checkpoints').where('stream', '=', this.stream).where('last_id', '<=', pruned.id).execute();
        await trx.deleteFrom('audit_checkpoints').where('stream', '=', this.stream).where('pruned_through_id', 'is not', null).execute();
        const c = await this.writeCheckpoint(trx, h, pruned);
        this.lastCheckpointSeq = c.lastSeq;
        return { throughId: pruned.id, throughSeq: pruned.seq, deleted: Number(del.numDeletedRows) };
      }),
    );
    if (result) {
      await this.append({
        type: 'audit.pruned',
        outcome: 'info',
        data: {
          stream: this.stream,
          throughId: result.throughId,
          throughSeq: result.throughSeq,
          deleted: result.deleted,
          before: new Date(before).toISOString(),
        },
      });
    }
    return result;
  }

  /** Newest-last list of events matching the filters; with afterId, the oldest after it. */
  async query(q: AuditQuery = {}): Promise<AuditEvent[]> {
    let query = this.db.selectFrom('audit_events').selectAll();
    if (q.session) query = query.where('session', '=', q.session);
    if (q.type) {
      const prefix = /[.*]$/.test(q.type) ? q.type.replace(/\*$/, '') : undefined;
      query = prefix ? query.where(sql<boolean>`substr(type, 1, ${prefix.length}) = ${prefix}`) : query.where('type', '=', q.type);
    }
    if (q.actor) query = query.where('actor', '=', q.actor);
    if (q.target) query = query.where('target', '=', q.target);
    if (q.outcome) query = query.where('outcome', '=', q.outcome);
    if (q.since !== undefined) query = query.where('time', '>=', q.since);
    if (q.until !== undefined) query = query.where('time', '<', q.until);
    const limit = Math.min(Math.max(q.limit ?? 1000, 1), 10_000);
    if (q.afterId !== undefined) {
      const rows = await query.where('id', '>', q.afterId).orderBy('id', 'asc').limit(limit).execute();
      return rows.map(toAuditEvent);
    }
    const rows = await query.orderBy('id', 'desc').limit(limit).execute();
    return rows.reverse().map(toAuditEvent);
  }

  /** The newest event id in the store (0 when empty). */
  async lastEventId(): Promise<number> {
    const r = await this.db.selectFrom('audit_events').select(sql<number | null>`max(id)`.as('m')).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /** Commit what is queued and seal the chain (shutdown). */
  async close(): Promise<void> {
    await this.drain();
    await this.checkpoint().catch((err) => this.opts.logger?.error({ err }, 'audit: final checkpoint failed'));
  }
}
