/** The live store as a source for verifyAudit: events read in pages, never all at once. */
import type { Selectable } from 'kysely';
import type { AuditCheckpointsTable, AuditTable, Db } from '../store/db.js';
import type { ChainedEvent, Checkpoint } from '#shared/audit/chain.js';
import type { AuditEventSource } from '#shared/audit/verify.js';

const PAGE = 2000;

/** A stored row as the chain sees it. */
export function toChained(r: Selectable<AuditTable>): ChainedEvent {
  return {
    id: Number(r.id),
    stream: r.stream ?? null,
    seq: r.seq === null || r.seq === undefined ? null : Number(r.seq),
    time: Number(r.time),
    type: r.type,
    actor: r.actor,
    target: r.target,
    session: r.session,
    outcome: r.outcome,
    data: r.data,
    prevHash: r.prev_hash ?? null,
    hash: r.hash ?? null,
  };
}

/** A stored checkpoint row as the chain sees it. */
export function toCheckpoint(r: Omit<AuditCheckpointsTable, 'id'>): Checkpoint {
  const n = (v: number | null) => (v === null ? null : Number(v));
  return {
    stream: r.stream,
    lastId: Number(r.last_id),
    lastSeq: Number(r.last_seq),
    lastHash: r.last_hash,
    count: Number(r.count),
    time: Number(r.time),
    prunedThroughId: n(r.pruned_through_id),
    prunedThroughSeq: n(r.pruned_through_seq),
    prunedLastHash: r.pruned_last_hash,
    keyId: r.key_id,
    signature: r.signature,
  };
}

/** Read the audit tables of a store for verification. */
export function dbEventSource(db: Db): AuditEventSource {
  return {
    async streams() {
      const a = await db.selectFrom('audit_events').select('stream').distinct().where('stream', 'is not', null).execute();
      const b = await db.selectFrom('audit_checkpoints').select('stream').distinct().execute();
      const s = new Set([...a.map((r) => r.stream!), ...b.map((r) => r.stream)]);
      if (s.size === 0) {
        // Only unchained rows: verify them under the default stream so they are reported.
        const any = await db.selectFrom('audit_events').select('id').limit(1).executeTakeFirst();
        if (any) s.add('cp');
      }
      return [...s].sort();
    },
    async checkpoints(stream) {
      const rows = await db.selectFrom('audit_checkpoints').selectAll().where('stream', '=', stream).orderBy('last_seq').execute();
      return rows.map(toCheckpoint);
    },
    async *events(stream, afterId) {
      let after = afterId;
      for (;;) {
        const rows = await db
          .selectFrom('audit_events')
          .selectAll()
          .where('id', '>', after)
          .where((eb) => eb.or([eb('stream', '=', stream), eb('stream', 'is', null)]))
          .orderBy('id')
          .limit(PAGE)
          .execute();
        for (const r of rows) yield toChained(r);
        if (rows.length < PAGE) return;
        after = Number(rows[rows.length - 1]!.id);
      }
    },
    async idsWithSeq(stream, seq) {
      const rows = await db.selectFrom('audit_events').select('id').where('stream', '=', stream).where('seq', '=', seq).execute();
      return rows.map((r) => Number(r.id));
    },
    async firstIdAtOrAfter(time) {
      const r = await db.selectFrom('audit_events').select('id').where('time', '>=', time).orderBy('id').limit(1).executeTakeFirst();
      return r ? Number(r.id) : null;
    },
  };
}
