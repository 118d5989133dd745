/**
 * A hand-driven PostgreSQL client for the inspecting engine's wire tests: logs in through the
 * harness's engine, sends raw frontend messages, reads every backend message.
 */
import net from 'node:net';
import { loginUpstream } from '#agent/engines/postgres-upstream.js';
import { typedMessage } from '#protocol/postgres/codec.js';
import { MessageFramer } from '#protocol/postgres/messages.js';
import type { Harness } from './inspect-harness.js';

export interface Msg {
  type: string;
  body: Buffer;
}

export class RawClient {
  private readonly framer = new MessageFramer(1 << 30);
  private readonly inbox: Msg[] = [];
  private wake: (() => void) | undefined;
  closed = false;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (b: Buffer) => {
      this.framer.push(b);
      while (this.framer.next()) {
        this.inbox.push({
          type: String.fromCharCode(this.framer.type),
          body: Buffer.from(this.framer.buf.subarray(this.framer.start + 5, this.framer.end)),
        });
      }
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }
  static async connect(h: Harness, rules?: unknown): Promise<RawClient> {
    const s = h.newSession(rules);
    const sock = net.connect(h.port, '127.0.0.1');
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
    await loginUpstream(sock, { user: s.user, database: h.db }, s.secret);
    const c = new RawClient(sock);
    sock.resume();
    return c;
  }
  send(...msgs: Buffer[]): void {
    this.sock.write(Buffer.concat(msgs));
  }
  /** Messages up to and including the next ReadyForQuery. */
  untilReady(): Promise<Msg[]> {
    return this.until('Z');
  }
  /** Messages up to and including the next one of this type. */
  async until(type: string): Promise<Msg[]> {
    for (;;) {
      const i = this.inbox.findIndex((m) => m.type === type);
      if (i >= 0) return this.inbox.splice(0, i + 1);
      if (this.closed) throw new Error(`closed; got ${this.inbox.map((m) => m.type).join('')}`);
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
  }
  end(): void {
    this.sock.end(typedMessage('X'));
  }
}

export const i16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
export const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
export function bind(stmt: string, params: string[] = [], resultFormat = 0, portal = ''): Buffer {
  const parts = [Buffer.from(`${portal}\0${stmt}\0`), i16(0), i16(params.length)];
  for (const p of params) parts.push(i32(Buffer.byteLength(p)), Buffer.from(p));
  parts.push(i16(1), i16(resultFormat));
  return typedMessage('B', Buffer.concat(parts));
}
export const sync = () => typedMessage('S');
export const types = (ms: Msg[]) => ms.map((m) => m.type).join('');
export const dataValues = (m: Msg): (string | null)[] => {
  const n = m.body.readInt16BE(0);
  const out: (string | null)[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const len = m.body.readInt32BE(p);
    p += 4;
    if (len < 0) out.push(null);
    else {
      out.push(m.body.toString('utf8', p, p + len));
      p += len;
    }
  }
  return out;
};

/** FunctionCall ('F') of `oid` with text arguments and a text result. */
export function fcall(oid: number, args: (string | null)[]): Buffer {
  const parts = [i32(oid), i16(1), i16(0), i16(args.length)];
  for (const a of args) parts.push(...(a === null ? [i32(-1)] : [i32(Buffer.byteLength(a)), Buffer.from(a)]));
  parts.push(i16(0));
  return typedMessage('F', Buffer.concat(parts));
}
