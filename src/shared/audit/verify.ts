/**
 * Verification of the audit chain against its signed checkpoints, over any source of events:
 * the live store (the server's /v1/audit/verify) or an exported file (`jit audit verify --file`).
 * It answers with the FIRST event that was removed, inserted, altered or reordered.
 *
 * Trust comes from the checkpoints' signatures: the chain alone shows that rows fit together,
 * a signed checkpoint shows that the control plane wrote them. Events after the newest
 * checkpoint are reported as `unsignedTail` (they verify as a chain, but an attacker with write
 * access could have rewritten that tail wholesale; forwarding to a SIEM covers it).
 */
import type { KeyObject } from 'node:crypto';
import type { AuditProblem, AuditVerifyResult } from '../contract/http.js';
import {
  type ChainAnchor,
  type ChainedEvent,
  type ChainProblem,
  ChainVerifier,
  type Checkpoint,
  checkpointSignatureOk,
  GENESIS_HASH,
} from './chain.js';

/** Where verification reads from. */
export interface AuditEventSource {
  /** Streams that have events or checkpoints. */
  streams(): Promise<string[]>;
  checkpoints(stream: string): Promise<Checkpoint[]>;
  /** Events of the stream, and rows with no stream at all, with id > afterId, in id order. */
  events(stream: string, afterId: number): AsyncIterable<ChainedEvent>;
  idsWithSeq(stream: string, seq: number): Promise<number[]>;
  /** The first event id at or after an epoch-ms time. */
  firstIdAtOrAfter(time: number): Promise<number | null>;
}

export interface VerifyOptions {
  /** Start at the newest valid checkpoint at or before this event id… */
  sinceId?: number | undefined;
  /** …or at or before the first event at this time (epoch ms). */
  sinceTime?: number | undefined;
  now: number;
}

type StreamResult = AuditVerifyResult['streams'][number];

function rank(p: ChainProblem | AuditProblem): number {
  return p.eventId ?? Number.MAX_SAFE_INTEGER;
}

/** Verify every stream of the source; ok only when each is intact. */
export async function verifyAudit(
  source: AuditEventSource,
  keys: ReadonlyMap<string, KeyObject>,
  opts: VerifyOptions,
): Promise<AuditVerifyResult> {
  let sinceId = opts.sinceId;
  if (sinceId === undefined && opts.sinceTime !== undefined) sinceId = (await source.firstIdAtOrAfter(opts.sinceTime)) ?? undefined;
  const streams: StreamResult[] = [];
  for (const stream of await source.streams()) streams.push(await verifyStream(source, keys, stream, sinceId));
  const problems = streams.filter((s) => s.problem).map((s) => ({ ...s.problem!, stream: s.stream }));
  problems.sort((a, b) => rank(a) - rank(b));
  return {
    ok: problems.length === 0,
    verifiedAt: new Date(opts.now).toISOString(),
    keyIds: [...keys.keys()],
    streams,
    ...(problems[0] ? { problem: problems[0] } : {}),
  };
}

async function verifyStream(
  source: AuditEventSource,
  keys: ReadonlyMap<string, KeyObject>,
  stream: string,
  sinceId: number | undefined,
): Promise<StreamResult> {
  const all = await source.checkpoints(stream);
  const bad = all.filter((c) => !checkpointSignatureOk(c, keys));
  const good = all.filter((c) => checkpointSignatureOk(c, keys)).sort((a, b) => a.lastSeq - b.lastSeq);
  const prune = good.filter((c) => c.prunedThroughId !== null).at(-1);
  let anchor: ChainAnchor = prune
    ? { kind: 'pruned', id: prune.prunedThroughId, seq: prune.prunedThroughSeq ?? 0, hash: prune.prunedLastHash ?? GENESIS_HASH }
    : { kind: 'genesis', id: null, seq: 0, hash: GENESIS_HASH };
  if (sinceId !== undefined) {
    const start = good.filter((c) => c.lastId <= sinceId && c.lastSeq > anchor.seq).at(-1);
    if (start) anchor = { kind: 'checkpoint', id: start.lastId, seq: start.lastSeq, hash: start.lastHash };
  }
  const later = good.filter((c) => c.lastSeq > anchor.seq);
  const verifier = new ChainVerifier({
    stream,
    anchor,
    checkpoints: later,
    idsWithSeq: (seq) => source.idsWithSeq(stream, seq),
  });
  let problem: ChainProblem | undefined;
  for await (const e of source.events(stream, anchor.id ?? 0)) {
    problem = await verifier.push(e);
    if (problem) break;
  }
  const end = verifier.finish();
  problem ??= end.problem;
  const badProblems: ChainProblem[] = bad
    .filter((c) => c.lastSeq > anchor.seq || c.prunedThroughId !== null)
    .map((c) => ({
      kind: 'checkpoint',
      eventId: c.lastId,
      seq: c.lastSeq,
      message: keys.has(c.keyId)
        ? `the checkpoint for events through ${c.lastId} has a bad signature: it was altered or forged`
        : `the checkpoint for events through ${c.lastId} is signed by an unknown key (${c.keyId.slice(0, 40)})`,
    }));
  const first = [...(problem ? [problem] : []), ...badProblems].sort((a, b) => rank(a) - rank(b))[0];
  const lastCheckpointSeq =
    end.lastCheckpointId === null ? anchor.seq : (later.find((c) => c.lastId === end.lastCheckpointId)?.lastSeq ?? anchor.seq);
  return {
    stream,
    ok: !first,
    anchor: { kind: anchor.kind, id: anchor.id, seq: anchor.seq },
    checked: verifier.checked,
    firstId: verifier.firstId,
    lastId: verifier.lastId,
    headSeq: end.head.seq,
    checkpoints: { total: all.length, verified: end.verifiedCheckpoints, badSignatures: bad.length },
    lastCheckpointId: end.lastCheckpointId,
    unsignedTail: Math.max(0, end.head.seq - lastCheckpointSeq),
    ...(first ? { problem: { kind: first.kind, eventId: first.eventId, seq: first.seq, message: first.message } } : {}),
  };
}

/** An in-memory source (an exported file). */
export function memorySource(events: ChainedEvent[], checkpoints: Checkpoint[]): AuditEventSource {
  const sorted = [...events].sort((a, b) => a.id - b.id);
  return {
    async streams() {
      const s = new Set<string>();
      for (const e of sorted) if (e.stream) s.add(e.stream);
      for (const c of checkpoints) s.add(c.stream);
      if (s.size === 0 && sorted.length > 0) s.add('cp');
      return [...s].sort();
    },
    async checkpoints(stream) {
      return checkpoints.filter((c) => c.stream === stream);
    },
    async *events(stream, afterId) {
      for (const e of sorted) if (e.id > afterId && (e.stream === stream || e.stream === null)) yield e;
    },
    async idsWithSeq(stream, seq) {
      return sorted.filter((e) => e.stream === stream && e.seq === seq).map((e) => e.id);
    },
    async firstIdAtOrAfter(time) {
      return sorted.find((e) => e.time >= time)?.id ?? null;
    },
  };
}
