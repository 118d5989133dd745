/**
 * The agent's live client streams: closed together when their session ends, and the map from
 * the BackendKeyData we hand out to the target's real one (for CancelRequest).
 */

export interface BackendKey {
  pid: number;
  secret: Buffer;
}

export interface LiveStream {
  id: string;
  sessionId: string;
  target: string;
  /** Close both legs now. */
  destroy(): void;
}

interface KeyEntry {
  stream: LiveStream;
  real: BackendKey;
}

function keyOf(pid: number, secret: Buffer): string {
  return `${pid}:${secret.toString('hex')}`;
}

export class StreamRegistry {
  private readonly bySession = new Map<string, Set<LiveStream>>();
  private readonly keys = new Map<string, KeyEntry>();
  private readonly keyOfStream = new Map<LiveStream, string>();

  add(s: LiveStream): void {
    let set = this.bySession.get(s.sessionId);
    if (!set) {
      set = new Set();
      this.bySession.set(s.sessionId, set);
    }
    set.add(s);
  }

  remove(s: LiveStream): void {
    const set = this.bySession.get(s.sessionId);
    set?.delete(s);
    if (set && set.size === 0) this.bySession.delete(s.sessionId);
    const k = this.keyOfStream.get(s);
    if (k) {
      this.keys.delete(k);
      this.keyOfStream.delete(s);
    }
  }

  /** Map the key we gave the client to the target's real key; false when the key is already taken. */
  setCancelKey(s: LiveStream, ours: BackendKey, real: BackendKey): boolean {
    const k = keyOf(ours.pid, ours.secret);
    if (this.keys.has(k)) return false;
    this.keys.set(k, { stream: s, real });
    this.keyOfStream.set(s, k);
    return true;
  }

  /** The live stream and real key behind a key we handed out, if any. */
  lookupCancelKey(pid: number, secret: Buffer): { stream: LiveStream; real: BackendKey } | undefined {
    return this.keys.get(keyOf(pid, secret));
  }

  /** Number of live streams (of one session, or all). */
  count(sessionId?: string): number {
    if (sessionId) return this.bySession.get(sessionId)?.size ?? 0;
    let n = 0;
    for (const set of this.bySession.values()) n += set.size;
    return n;
  }

  /** Close every stream of a session. */
  closeSession(sessionId: string): number {
    const set = this.bySession.get(sessionId);
    if (!set) return 0;
    const all = [...set];
    for (const s of all) s.destroy();
    return all.length;
  }

  closeAll(): void {
    for (const set of [...this.bySession.values()]) for (const s of [...set]) s.destroy();
  }
}
