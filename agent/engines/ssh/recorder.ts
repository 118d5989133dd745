/**
 * Session recordings on the agent side: terminal traffic → asciicast v2 lines → `recording.chunk`
 * messages to the control plane, flushed every quarter second (so little is lost when the agent
 * dies) and in bounded chunks. While the control plane is unreachable, chunks wait in a bounded
 * queue; beyond it the oldest are dropped and a marker says so.
 */
import { CastEncoder, type CastHeader, castHeaderLine } from '#protocol/ssh/asciicast.js';
import { type AgentRecordingChunk, RECORDING_CHUNK_MAX } from '#shared/contract/agent.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';

export interface RecorderDeps {
  /** Send now; false when the control channel is down (the chunk is kept and retried). */
  send(msg: AgentRecordingChunk): boolean;
  clock: Clock;
  logger: Logger;
  flushMs?: number;
  /** Characters kept while disconnected (default 8 Mi). */
  maxQueued?: number;
}

/** One session's recording. */
export class SessionRecorder {
  private readonly enc: CastEncoder;
  private buffer = '';
  private seq = 0;
  private readonly queue: AgentRecordingChunk[] = [];
  private queued = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;

  /** @param resume a later stream of the same session continues the file: no new header, same clock. */
  constructor(
    readonly sessionId: string,
    header: CastHeader,
    private readonly deps: RecorderDeps,
    resume?: { seq: number },
  ) {
    this.enc = new CastEncoder(header.timestamp * 1000);
    this.startSeconds = header.timestamp;
    if (resume) this.seq = resume.seq;
    else this.buffer = castHeaderLine(header);
    this.schedule();
  }

  /** The recording's start (seconds since the epoch). */
  readonly startSeconds: number;

  /** The next chunk number. */
  get nextSeq(): number {
    return this.seq;
  }

  output(chunk: Buffer): void {
    this.add(this.enc.output(this.deps.clock.now(), chunk));
  }

  input(chunk: Buffer): void {
    this.add(this.enc.input(this.deps.clock.now(), chunk));
  }

  resize(cols: number, rows: number): void {
    this.add(this.enc.resize(this.deps.clock.now(), cols, rows));
  }

  marker(label: string): void {
    this.add(this.enc.marker(this.deps.clock.now(), label));
  }

  private add(line: string): void {
    if (this.finished || !line) return;
    this.buffer += line;
    if (this.buffer.length >= RECORDING_CHUNK_MAX) this.flush(false);
  }

  private schedule(): void {
    if (this.finished || this.timer) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      this.flush(false);
      this.schedule();
    }, this.deps.flushMs ?? 250);
    this.timer.unref?.();
  }

  /** Move the buffer into chunks and send what can be sent. */
  flush(final: boolean): void {
    while (this.buffer.length > 0) {
      // Cut at a line end when one is near, so a chunk rarely splits an event.
      let cut = Math.min(this.buffer.length, RECORDING_CHUNK_MAX);
      if (cut < this.buffer.length) {
        const nl = this.buffer.lastIndexOf('\n', cut - 1);
        if (nl > 0) cut = nl + 1;
      }
      this.enqueue(this.buffer.slice(0, cut), false);
      this.buffer = this.buffer.slice(cut);
    }
    if (final) this.enqueue('', true);
    while (this.queue.length > 0 && this.deps.send(this.queue[0]!)) {
      this.queued -= this.queue.shift()!.data.length;
    }
  }

  private enqueue(data: string, final: boolean): void {
    this.queue.push({ type: 'recording.chunk', session: this.sessionId, seq: this.seq++, data, final });
    this.queued += data.length;
    const max = this.deps.maxQueued ?? 8 * 1024 * 1024;
    while (this.queued > max && this.queue.length > 1) {
      const lost = this.queue.shift()!;
      this.queued -= lost.data.length;
      this.dropped++;
    }
    if (this.dropped > 0 && this.queue.length > 0) {
      this.deps.logger.warn(
        { session: this.sessionId, dropped: this.dropped },
        'recording chunks dropped while the control plane was unreachable',
      );
      this.dropped = 0;
    }
  }

  /** Flush everything and mark the recording complete. */
  finish(): void {
    if (this.finished) return;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.flush(true);
    this.finished = true;
  }
}

/** Recorders by session, shared by the session's streams; finished when the last stream ends. */
export class AgentRecordings {
  private readonly live = new Map<string, { rec: SessionRecorder; users: number; header: CastHeader }>();
  /** Sessions whose recording paused (no stream): a new stream continues it. */
  private readonly paused = new Map<string, { seq: number; header: CastHeader }>();

  constructor(private readonly deps: RecorderDeps) {}

  /** The session's recorder (created with `header` on first use); call the returned release() when done. */
  attach(sessionId: string, header: () => CastHeader): { rec: SessionRecorder; release(): void } {
    let e = this.live.get(sessionId);
    if (!e) {
      const p = this.paused.get(sessionId);
      this.paused.delete(sessionId);
      const h = p?.header ?? header();
      e = {
        header: h,
        rec: p ? new SessionRecorder(sessionId, p.header, this.deps, { seq: p.seq }) : new SessionRecorder(sessionId, h, this.deps),
        users: 0,
      };
      this.live.set(sessionId, e);
    }
    e.users++;
    const entry = e;
    let released = false;
    return {
      rec: entry.rec,
      release: () => {
        if (released) return;
        released = true;
        entry.users--;
        if (entry.users === 0 && this.live.get(sessionId) === entry) {
          this.live.delete(sessionId);
          entry.rec.finish();
          this.paused.set(sessionId, { seq: entry.rec.nextSeq, header: entry.header });
        }
      },
    };
  }

  /** The session has ended: nothing continues its recording. */
  forget(sessionId: string): void {
    this.paused.delete(sessionId);
  }

  /** Flush and finish every recording (agent shutdown). */
  closeAll(): void {
    for (const e of this.live.values()) e.rec.finish();
    this.live.clear();
  }
}
