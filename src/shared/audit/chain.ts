/**
 * The audit log's hash chain and signed checkpoints, as pure functions (no database, no clock):
 * the control plane computes hashes with them when it writes, `jit audit verify` and the
 * server's verification endpoint check with them, and so can anyone holding an export and the
 * public key.
 *
 * Each stream (one per control-plane store today; one per replica later) is its own chain. An
 * event's hash is SHA-256 over a canonical JSON array of every field that a reader relies on,
 * ending with the previous event's hash; `seq` numbers the stream's events 1, 2, 3… so that a
 * removal leaves a gap a verifier can name even where ids of several streams interleave.
 */
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';

/** The previous hash of a stream's first event. */
export const GENESIS_HASH = '0'.repeat(64);
const EVENT_DOMAIN = 'jit.audit.event/1';
const CHECKPOINT_DOMAIN = 'jit.audit.checkpoint/1';

/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, JSON.stringify for
 * strings and numbers (which for the finite numbers and strings jit stores is RFC 8785's form).
 * A store that re-serialises JSON (PostgreSQL jsonb reorders keys) yields the same bytes.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : 'null';
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'bigint') return JSON.stringify(value.toString());
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  return 'null';
}

/** An event as stored, with its chain fields (data is the stored JSON text). */
export interface ChainedEvent {
  id: number;
  stream: string | null;
  seq: number | null;
  /** Epoch milliseconds. */
  time: number;
  type: string;
  actor: string | null;
  target: string | null;
  session: string | null;
  outcome: string;
  data: string;
  prevHash: string | null;
  hash: string | null;
}

/** SHA-256 (hex) of an event's canonical encoding; undefined when its data is not JSON. */
export function eventHash(e: Omit<ChainedEvent, 'hash'>): string | undefined {
  let data: unknown;
  try {
    data = JSON.parse(e.data);
  } catch {
    return undefined;
  }
  const fields = [EVENT_DOMAIN, e.stream, e.seq, e.id, e.time, e.type, e.actor, e.target, e.session, e.outcome, data, e.prevHash];
  return createHash('sha256').update(canonicalJson(fields)).digest('hex');
}

/** A signed statement "stream S had `count` events, the last being id/seq with this hash". */
export interface Checkpoint {
  stream: string;
  lastId: number;
  lastSeq: number;
  lastHash: string;
  /** Events in the stream from its genesis through lastSeq (pruned ones included). */
  count: number;
  /** Epoch milliseconds when it was made. */
  time: number;
  /** Set on the checkpoint written by a prune: the last pruned event. */
  prunedThroughId: number | null;
  prunedThroughSeq: number | null;
  prunedLastHash: string | null;
  keyId: string;
  /** Ed25519 signature (base64url) over checkpointPayload(). */
  signature: string;
}

/** The bytes a checkpoint's signature covers. */
export function checkpointPayload(c: Omit<Checkpoint, 'signature'>): Buffer {
  return Buffer.from(
    canonicalJson({
      v: CHECKPOINT_DOMAIN,
      stream: c.stream,
      lastId: c.lastId,
      lastSeq: c.lastSeq,
      lastHash: c.lastHash,
      count: c.count,
      time: c.time,
      prunedThroughId: c.prunedThroughId,
      prunedThroughSeq: c.prunedThroughSeq,
      prunedLastHash: c.prunedLastHash,
      keyId: c.keyId,
    }),
  );
}

/** Sign a checkpoint with an Ed25519 private key. */
export function signCheckpoint(c: Omit<Checkpoint, 'signature'>, privateKey: KeyObject): Checkpoint {
  return { ...c, signature: sign(null, checkpointPayload(c), privateKey).toString('base64url') };
}

/** The public half of the audit key as a JWK (what `--key` files hold). */
export interface AuditPublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
}

/** Import public JWKs into a kid → key map. */
export function publicKeyMap(jwks: readonly AuditPublicJwk[]): Map<string, KeyObject> {
  const m = new Map<string, KeyObject>();
  for (const j of jwks) m.set(j.kid, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: j.x }, format: 'jwk' }));
  return m;
}

/** Whether a checkpoint's signature is good under one of the keys. */
export function checkpointSignatureOk(c: Checkpoint, keys: ReadonlyMap<string, KeyObject>): boolean {
  const key = keys.get(c.keyId);
  if (!key) return false;
  try {
    return verify(null, checkpointPayload(c), key, Buffer.from(c.signature, 'base64url'));
  } catch {
    return false;
  }
}

export type ProblemKind = 'removed' | 'inserted' | 'altered' | 'reordered' | 'checkpoint';

/** The first place where the log is not what the control plane wrote. */
export interface ChainProblem {
  kind: ProblemKind;
  /** The event at fault (for removals: the first event after the gap; null when the tail is gone). */
  eventId: number | null;
  /** The stream sequence number that is missing, duplicated or out of place. */
  seq: number | null;
  message: string;
}

/** Where verification of a stream starts: genesis, a prune boundary or a trusted checkpoint. */
export interface ChainAnchor {
  kind: 'genesis' | 'pruned' | 'checkpoint';
  /** Id of the anchor event (absent for genesis). */
  id: number | null;
  seq: number;
  hash: string;
}

export interface ChainVerifierOptions {
  stream: string;
  anchor: ChainAnchor;
  /** Valid checkpoints of the stream after the anchor. */
  checkpoints: readonly Checkpoint[];
  /** Ids of the stream's events with this seq (to tell a removal from a reordering). */
  idsWithSeq(seq: number): Promise<number[]>;
}

/**
 * Walks one stream's events in id order and reports the FIRST inconsistency. Feed it events
 * with push() until it returns a problem, then call finish() for what lies past the last event.
 */
export class ChainVerifier {
  private prev: { id: number | null; seq: number; hash: string };
  private readonly byLastId: Map<number, Checkpoint>;
  private verifiedCheckpoints = 0;
  private lastCheckpointId: number | null;
  checked = 0;
  firstId: number | null = null;
  lastId: number | null = null;

  constructor(private readonly opts: ChainVerifierOptions) {
    this.prev = { id: opts.anchor.id, seq: opts.anchor.seq, hash: opts.anchor.hash };
    this.byLastId = new Map(opts.checkpoints.map((c) => [c.lastId, c]));
    this.lastCheckpointId = opts.anchor.kind === 'genesis' ? null : opts.anchor.id;
  }

  /** Check the next event; a problem ends the walk. */
  async push(e: ChainedEvent): Promise<ChainProblem | undefined> {
    const expectedSeq = this.prev.seq + 1;
    const after = this.prev.id === null ? 'the start of the log' : `event ${this.prev.id}`;
    if (e.hash === null || e.seq === null || e.prevHash === null || e.stream === null) {
      return {
        kind: 'inserted',
        eventId: e.id,
        seq: e.seq,
        message: `event ${e.id} was inserted: it carries no chain fields, so the control plane did not write it`,
      };
    }
    const computed = eventHash(e);
    const contentOk = computed === e.hash;
    const linkOk = e.prevHash === this.prev.hash;
    if (e.seq !== expectedSeq) {
      const others = await this.opts.idsWithSeq(expectedSeq);
      if (e.seq > expectedSeq && others.length === 0) {
        const missing = e.seq - expectedSeq;
        return {
          kind: 'removed',
          eventId: e.id,
          seq: expectedSeq,
          message: `${missing === 1 ? 'an event was' : `${missing} events were`} removed after ${after}: event ${e.id} is #${e.seq} of stream ${this.opts.stream}, #${expectedSeq} is missing`,
        };
      }
      const dup = (await this.opts.idsWithSeq(e.seq)).filter((id) => id !== e.id);
      if (dup.length > 0) {
        const first = Math.min(e.id, ...dup);
        return {
          kind: 'inserted',
          eventId: first,
          seq: e.seq,
          message: `an event was inserted: events ${[e.id, ...dup].sort((a, b) => a - b).join(' and ')} both claim #${e.seq} of stream ${this.opts.stream}`,
        };
      }
      if (e.seq < expectedSeq) {
        return {
          kind: 'reordered',
          eventId: e.id,
          seq: e.seq,
          message: `event ${e.id} is out of order: it is #${e.seq} of stream ${this.opts.stream} but follows #${this.prev.seq}`,
        };
      }
      return {
        kind: 'reordered',
        eventId: e.id,
        seq: e.seq,
        message: `event ${e.id} is out of order: it is #${e.seq} of stream ${this.opts.stream}, but #${expectedSeq} (event ${others[0]}) comes later`,
      };
    }
    if (!contentOk) {
      const dup = (await this.opts.idsWithSeq(e.seq)).filter((id) => id !== e.id);
      if (dup.length > 0) {
        return {
          kind: 'inserted',
          eventId: e.id,
          seq: e.seq,
          message: `event ${e.id} was inserted: it claims #${e.seq} of stream ${this.opts.stream}, which event ${dup[0]} holds`,
        };
      }
      return {
        kind: 'altered',
        eventId: e.id,
        seq: e.seq,
        message: `event ${e.id} was altered: its content no longer matches its hash`,
      };
    }
    if (!linkOk) {
      // The event itself is intact but does not link to its predecessor: the predecessor was
      // changed and re-hashed (its successor still remembers the original hash).
      return {
        kind: 'altered',
        eventId: this.prev.id ?? e.id,
        seq: this.prev.id === null ? e.seq : this.prev.seq,
        message:
          this.prev.id === null
            ? `event ${e.id} was altered: it does not link to the start of the chain`
            : `event ${this.prev.id} was altered and re-hashed: event ${e.id} links to a different hash`,
      };
    }
    const cp = this.byLastId.get(e.id);
    if (cp) {
      if (cp.lastHash !== e.hash || cp.lastSeq !== e.seq) {
        return {
          kind: 'altered',
          eventId: e.id,
          seq: e.seq,
          message: `event ${e.id} was altered or replaced: a signed checkpoint recorded a different hash for it`,
        };
      }
      this.verifiedCheckpoints++;
      this.lastCheckpointId = e.id;
    }
    this.checked++;
    this.firstId ??= e.id;
    this.lastId = e.id;
    this.prev = { id: e.id, seq: e.seq, hash: e.hash };
    return undefined;
  }

  /** After the last event: a checkpoint beyond it proves the tail was removed. */
  finish(): {
    problem?: ChainProblem;
    verifiedCheckpoints: number;
    lastCheckpointId: number | null;
    head: { id: number | null; seq: number };
  } {
    const beyond = this.opts.checkpoints.filter((c) => c.lastSeq > this.prev.seq).sort((a, b) => a.lastSeq - b.lastSeq)[0];
    const base = {
      verifiedCheckpoints: this.verifiedCheckpoints,
      lastCheckpointId: this.lastCheckpointId,
      head: { id: this.prev.id, seq: this.prev.seq },
    };
    if (beyond) {
      const after = this.prev.id === null ? 'the start of the log' : `event ${this.prev.id}`;
      return {
        ...base,
        problem: {
          kind: 'removed',
          eventId: null,
          seq: this.prev.seq + 1,
          message: `${beyond.lastSeq - this.prev.seq} event(s) were removed after ${after}: a signed checkpoint covers stream ${this.opts.stream} through event ${beyond.lastId} (#${beyond.lastSeq})`,
        },
      };
    }
    return base;
  }
}
