/**
 * Session recordings (asciicast v2), stored as `<dataDir>/recordings/<session>.cast` while the
 * session runs: agents stream chunks over their control channel, so what a user was shown is
 * kept even when the agent dies mid-session. The audit log references each recording
 * (`recording.started` with the file, `recording.finished` with its size); the audit record is
 * written before the first byte of the file (audit first).
 */
import { createReadStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { AgentRecordingChunk } from '#shared/contract/agent.js';
import type { Logger } from '#shared/log.js';
import { isId } from '#shared/contract/ids.js';

interface AuditSink {
  append(e: {
    type: string;
    actor?: string;
    target?: string;
    session?: string;
    outcome: 'success' | 'failure' | 'info';
    data?: Record<string, unknown>;
  }): Promise<unknown>;
}

export interface RecordingStoreDeps {
  /** Folder for the .cast files (created 0700). */
  dir: string;
  audit: AuditSink;
  logger: Logger;
  /** A recording stops growing beyond this (audited once as recording.truncated). Default 512 MiB. */
  maxBytes?: number;
}

/** Who a chunk belongs to, as the hub verified it. */
export interface ChunkOrigin {
  agent: string;
  actor: string;
  target: string;
}

interface State {
  next: number;
  bytes: number;
  chunks: number;
  truncated: boolean;
  pending: Map<number, AgentRecordingChunk>;
  chain: Promise<void>;
}

/** Out-of-order chunks kept while an earlier one is still being handled. */
const MAX_PENDING = 64;

export class RecordingStore {
  private readonly states = new Map<string, State>();

  constructor(private readonly deps: RecordingStoreDeps) {
    mkdirSync(deps.dir, { recursive: true, mode: 0o700 });
  }

  /** The file of a session's recording (the id is validated: it goes into a path). */
  file(sessionId: string): string {
    if (!isId(sessionId)) throw new Error('not a session id');
    return path.join(this.deps.dir, `${sessionId}.cast`);
  }

  /** Whether the session has a recording, and its size. */
  stat(sessionId: string): { bytes: number } | undefined {
    const f = this.file(sessionId);
    if (!existsSync(f)) return undefined;
    return { bytes: statSync(f).size };
  }

  /** The recording's bytes. */
  open(sessionId: string): Readable {
    return createReadStream(this.file(sessionId));
  }

  /** Store one chunk; chunks are written in seq order (the hub may hand them over out of order). */
  append(chunk: AgentRecordingChunk, origin: ChunkOrigin): Promise<void> {
    let st = this.states.get(chunk.session);
    if (!st) {
      // A control plane restarted mid-recording picks up where the file is; otherwise seq 0 comes
      // first (chunks may be handed over out of order, and wait for it).
      const existing = chunk.seq > 0 ? this.stat(chunk.session) : undefined;
      st = {
        next: existing ? chunk.seq : 0,
        bytes: existing?.bytes ?? 0,
        chunks: 0,
        truncated: false,
        pending: new Map(),
        chain: Promise.resolve(),
      };
      this.states.set(chunk.session, st);
    }
    const state = st;
    if (chunk.seq < state.next) return state.chain; // a duplicate
    state.pending.set(chunk.seq, chunk);
    if (state.pending.size > MAX_PENDING) {
      // A gap that never fills: carry on from the oldest we have rather than hold everything.
      const oldest = Math.min(...state.pending.keys());
      this.deps.logger.warn({ session: chunk.session, missing: oldest - state.next }, 'recording chunks lost');
      state.next = oldest;
    }
    state.chain = state.chain.then(() => this.drain(chunk.session, state, origin));
    return state.chain;
  }

  private async drain(session: string, st: State, origin: ChunkOrigin): Promise<void> {
    for (let c = st.pending.get(st.next); c; c = st.pending.get(st.next)) {
      st.pending.delete(st.next);
      st.next++;
      try {
        await this.write(session, st, c, origin);
      } catch (err) {
        this.deps.logger.error({ err, session }, 'could not store a recording chunk');
      }
    }
  }

  private async write(session: string, st: State, c: AgentRecordingChunk, origin: ChunkOrigin): Promise<void> {
    const base = { actor: origin.actor, target: origin.target, session };
    const rel = `recordings/${session}.cast`;
    if (c.seq === 0) {
      await this.deps.audit.append({
        ...base,
        type: 'recording.started',
        outcome: 'info',
        data: { file: rel, format: 'asciicast-v2', agent: origin.agent },
      });
    }
    const data = Buffer.from(c.data, 'utf8');
    const max = this.deps.maxBytes ?? 512 * 1024 * 1024;
    if (!st.truncated && st.bytes + data.length > max) {
      st.truncated = true;
      await this.deps.audit.append({ ...base, type: 'recording.truncated', outcome: 'failure', data: { file: rel, bytes: st.bytes } });
    }
    if (!st.truncated && data.length > 0) {
      await appendFile(this.file(session), data, { mode: 0o600 });
      st.bytes += data.length;
    }
    st.chunks++;
    if (c.final) {
      this.states.delete(session);
      const size = this.stat(session)?.bytes ?? 0;
      await this.deps.audit.append({
        ...base,
        type: 'recording.finished',
        outcome: 'info',
        data: { file: rel, bytes: size, chunks: st.chunks, ...(st.truncated ? { truncated: true } : {}) },
      });
    }
  }
}
