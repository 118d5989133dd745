/**
 * PostgreSQL wire messages after the startup phase: a streaming framer (whole messages as views
 * into the received chunks), strict parsers for every frontend message, parsers for the backend
 * messages an inspecting proxy decides on, and builders for the messages it synthesizes.
 *
 * Type bytes clash between the directions ('D' is DataRow from the server but Describe from the
 * client; 'E', 'C', 'S' likewise): frontend and backend have separate parsers, never shared.
 * Pure over bytes: no sockets, no fs, no logger. Anything malformed throws PgProtocolError.
 */
import { isUtf8 } from 'node:buffer';
import { PgProtocolError } from './codec.js';

/** Default largest message from the server (DataRow/CopyData of a huge value). */
export const MAX_BACKEND_MESSAGE = 1024 * 1024 * 1024;
/** Default largest message from the client (a Bind with big parameters, a CopyData row). */
export const MAX_FRONTEND_MESSAGE = 64 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);

/**
 * Splits a byte stream into typed messages (type byte + int32 length + body).
 *
 * After `next()` returns true, the current message is `buf[start, end)` (type byte included),
 * a view into a received chunk whenever the message lies inside one chunk: no copy, no
 * allocation. Only a message split across chunks is assembled, once, when it is complete.
 */
/** How much of an oversized message the framer keeps (enough for the names at its start). */
const OVERSIZED_PREFIX = 1024;

export class MessageFramer {
  /** Type byte of the current message. */
  type = 0;
  /** Buffer holding the current message at [start, end). */
  buf: Buffer = EMPTY;
  start = 0;
  end = 0;

  /**
   * Set by next() for a message over maxMessage whose type `skippable` allows: only its first
   * bytes are kept (buf[start, end)), the rest is discarded as it arrives, and the caller answers
   * it with an error instead of a reset connection.
   */
  oversized: { length: number } | undefined;

  private chunk: Buffer = EMPTY;
  private pos = 0;
  /** Bytes of an incomplete message (and whatever came after it), not yet assembled. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Bytes of an oversized message still to be discarded. */
  private skip = 0;

  constructor(
    readonly maxMessage: number,
    private readonly skippable?: (type: number) => boolean,
  ) {}

  /** Bytes received but not yet returned as messages. */
  get buffered(): number {
    return this.chunk.length - this.pos + this.partsLen;
  }

  /** Add received bytes. The chunk must not be modified afterwards (messages are views of it). */
  push(chunk: Buffer): void {
    if (this.skip > 0) {
      if (chunk.length <= this.skip) {
        this.skip -= chunk.length;
        return;
      }
      chunk = chunk.subarray(this.skip);
      this.skip = 0;
    }
    if (chunk.length === 0) return;
    if (this.partsLen === 0) {
      if (this.pos >= this.chunk.length) {
        this.chunk = chunk;
        this.pos = 0;
        return;
      }
      // Whole messages still unread (the consumer paused): keep them, in order.
      this.parts.push(this.chunk.subarray(this.pos));
      this.partsLen = this.chunk.length - this.pos;
      this.chunk = EMPTY;
      this.pos = 0;
    }
    this.parts.push(chunk);
    this.partsLen += chunk.length;
  }

  /** Advance to the next whole message; false when more bytes are needed. Throws on a bad length. */
  next(): boolean {
    this.oversized = undefined;
    if (this.partsLen > 0) return this.nextFromParts();
    const avail = this.chunk.length - this.pos;
    if (avail >= 5) {
      const total = this.totalLength(this.chunk.readInt32BE(this.pos + 1), this.chunk[this.pos]!);
      if (total < 0) return this.takeOversized(-total);
      if (avail >= total) {
        this.type = this.chunk[this.pos]!;
        this.buf = this.chunk;
        this.start = this.pos;
        this.end = this.pos + total;
        this.pos = this.end;
        return true;
      }
    }
    if (avail > 0) {
      this.parts.push(this.chunk.subarray(this.pos));
      this.partsLen = avail;
    }
    this.chunk = EMPTY;
    this.pos = 0;
    return false;
  }

  /** The whole length of a message; negative (its negated length) for an oversized one the caller answers. */
  private totalLength(len: number, type: number): number {
    if (len < 4) throw new PgProtocolError('invalid message length');
    if (len + 1 > this.maxMessage) {
      if (this.skippable?.(type)) return -(len + 1);
      throw new PgProtocolError(`message too large (over jit's limit of ${this.maxMessage} bytes)`);
    }
    return len + 1;
  }

  /** Keep the first bytes of an oversized message of `total` bytes as the current message; discard the rest as it comes. */
  private takeOversized(total: number): boolean {
    const all = this.partsLen > 0 ? Buffer.concat(this.parts) : this.chunk.subarray(this.pos);
    const keep = Math.min(all.length, OVERSIZED_PREFIX);
    this.type = all[0]!;
    this.buf = Buffer.from(all.subarray(0, keep));
    this.start = 0;
    this.end = keep;
    this.oversized = { length: total };
    this.parts = [];
    this.partsLen = 0;
    this.chunk = EMPTY;
    this.pos = 0;
    if (all.length >= total) this.push(all.subarray(total));
    else this.skip = total - all.length;
    return true;
  }

  private nextFromParts(): boolean {
    if (this.partsLen < 5) return false;
    const first = this.parts[0]!;
    let header: Buffer = first;
    if (first.length < 5) header = Buffer.concat(this.parts.slice(0, 5)).subarray(0, 5);
    const total = this.totalLength(header.readInt32BE(1), header[0]!);
    if (total < 0) return this.takeOversized(-total);
    if (this.partsLen < total) return false;
    let msg: Buffer;
    if (first.length >= total) {
      msg = first.subarray(0, total);
      this.dropFromParts(total);
    } else {
      msg = Buffer.allocUnsafe(total);
      let off = 0;
      for (let i = 0; off < total; i++) {
        const p = this.parts[i]!;
        const take = Math.min(p.length, total - off);
        p.copy(msg, off, 0, take);
        off += take;
      }
      this.dropFromParts(total);
    }
    this.type = msg[0]!;
    this.buf = msg;
    this.start = 0;
    this.end = total;
    return true;
  }

  /** Remove n bytes from the front of parts; a single remaining part becomes the fast-path chunk. */
  private dropFromParts(n: number): void {
    let left = n;
    while (left > 0) {
      const p = this.parts[0]!;
      if (p.length <= left) {
        this.parts.shift();
        left -= p.length;
      } else {
        this.parts[0] = p.subarray(left);
        left = 0;
      }
    }
    this.partsLen -= n;
    if (this.parts.length === 1) {
      this.chunk = this.parts[0]!;
      this.pos = 0;
      this.parts = [];
      this.partsLen = 0;
    } else if (this.parts.length === 0) {
      this.partsLen = 0;
    }
  }
}

// ---- reading helpers over (buf, pos, end): every read is bounds-checked

class Cursor {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}
  int16(): number {
    if (this.pos + 2 > this.end) throw new PgProtocolError('message too short');
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  int32(): number {
    if (this.pos + 4 > this.end) throw new PgProtocolError('message too short');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  byte(): number {
    if (this.pos + 1 > this.end) throw new PgProtocolError('message too short');
    return this.buf[this.pos++]!;
  }
  cstring(): string {
    const z = this.buf.indexOf(0, this.pos);
    if (z < 0 || z >= this.end) throw new PgProtocolError('missing string terminator');
    const s = this.buf.toString('utf8', this.pos, z);
    this.pos = z + 1;
    return s;
  }
  /** A NUL-terminated string as raw bytes (a view). */
  cstringBytes(): Buffer {
    const z = this.buf.indexOf(0, this.pos);
    if (z < 0 || z >= this.end) throw new PgProtocolError('missing string terminator');
    const b = this.buf.subarray(this.pos, z);
    this.pos = z + 1;
    return b;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.end) throw new PgProtocolError('message too short');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  done(): void {
    if (this.pos !== this.end) throw new PgProtocolError('unexpected bytes at the end of a message');
  }
}

function formats(c: Cursor): number[] {
  const n = c.int16();
  if (n < 0) throw new PgProtocolError('invalid format count');
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const f = c.int16();
    if (f !== 0 && f !== 1) throw new PgProtocolError('invalid format code');
    out[i] = f;
  }
  return out;
}

function values(c: Cursor): (Buffer | null)[] {
  const n = c.int16();
  if (n < 0) throw new PgProtocolError('invalid parameter count');
  const out = new Array<Buffer | null>(n);
  for (let i = 0; i < n; i++) {
    const len = c.int32();
    if (len === -1) out[i] = null;
    else if (len < 0) throw new PgProtocolError('invalid value length');
    else out[i] = c.bytes(len);
  }
  return out;
}

// ---- frontend (client → server)

export type DescribeTarget = 'S' | 'P';

export type FrontendMessage =
  /** `sql` is the raw text bytes (validated separately: see isPlainUtf8Sql). */
  | { type: 'Q'; sql: Buffer }
  | { type: 'P'; name: string; sql: Buffer; paramTypes: number[] }
  | {
      type: 'B';
      portal: string;
      statement: string;
      paramFormats: number[];
      params: (Buffer | null)[];
      resultFormats: number[];
    }
  | { type: 'D'; target: DescribeTarget; name: string }
  | { type: 'E'; portal: string; maxRows: number }
  | { type: 'C'; target: DescribeTarget; name: string }
  | { type: 'S' }
  | { type: 'H' }
  | { type: 'd' }
  | { type: 'c' }
  | { type: 'f'; message: string }
  | { type: 'F'; oid: number; argFormats: number[]; args: (Buffer | null)[]; resultFormat: number }
  | { type: 'X' };

function target(c: Cursor): DescribeTarget {
  const t = c.byte();
  if (t === 0x53) return 'S';
  if (t === 0x50) return 'P';
  throw new PgProtocolError('invalid describe/close target');
}

function empty(c: Cursor): void {
  c.done();
}

/**
 * Parse one whole frontend message at buf[start, end) (type byte included). Throws
 * PgProtocolError for an unknown type or any layout error: a message that does not parse is
 * never forwarded.
 */
export function parseFrontend(buf: Buffer, start: number, end: number): FrontendMessage {
  const type = buf[start]!;
  const c = new Cursor(buf, start + 5, end);
  switch (type) {
    case 0x51 /* Q */:
      {
        const sql = c.cstringBytes();
        c.done();
        return { type: 'Q', sql };
      }
    case 0x50 /* P */:
      {
        const name = c.cstring();
        const sql = c.cstringBytes();
        const n = c.int16();
        if (n < 0) throw new PgProtocolError('invalid parameter type count');
        const paramTypes = new Array<number>(n);
        for (let i = 0; i < n; i++) paramTypes[i] = c.int32() >>> 0;
        c.done();
        return { type: 'P', name, sql, paramTypes };
      }
    case 0x42 /* B */:
      {
        const portal = c.cstring();
        const statement = c.cstring();
        const paramFormats = formats(c);
        const params = values(c);
        const resultFormats = formats(c);
        c.done();
        if (paramFormats.length > 1 && paramFormats.length !== params.length) {
          throw new PgProtocolError('bind message has a format count that does not match its parameters');
        }
        return { type: 'B', portal, statement, paramFormats, params, resultFormats };
      }
    case 0x44 /* D */:
      {
        const t = target(c);
        const name = c.cstring();
        c.done();
        return { type: 'D', target: t, name };
      }
    case 0x45 /* E */:
      {
        const portal = c.cstring();
        const maxRows = c.int32();
        c.done();
        return { type: 'E', portal, maxRows };
      }
    case 0x43 /* C */:
      {
        const t = target(c);
        const name = c.cstring();
        c.done();
        return { type: 'C', target: t, name };
      }
    case 0x53 /* S */:
      empty(c);
      return { type: 'S' };
    case 0x48 /* H */:
      empty(c);
      return { type: 'H' };
    case 0x64 /* d */:
      return { type: 'd' };
    case 0x63 /* c */:
      empty(c);
      return { type: 'c' };
    case 0x66 /* f */:
      {
        const message = c.cstring();
        c.done();
        return { type: 'f', message };
      }
    case 0x46 /* F */:
      {
        const oid = c.int32() >>> 0;
        const argFormats = formats(c);
        const args = values(c);
        const resultFormat = c.int16();
        if (resultFormat !== 0 && resultFormat !== 1) throw new PgProtocolError('invalid format code');
        c.done();
        return { type: 'F', oid, argFormats, args, resultFormat };
      }
    case 0x58 /* X */:
      empty(c);
      return { type: 'X' };
    default:
      throw new PgProtocolError('invalid frontend message type');
  }
}

/**
 * True when SQL text lexes the same whatever the session's client_encoding and
 * standard_conforming_strings: pure ASCII without backslashes. Anything else may only be judged
 * once those settings are known to be UTF8 / on.
 */
export function isSettingsIndependentSql(sql: Buffer): boolean {
  for (let i = 0; i < sql.length; i++) {
    const b = sql[i]!;
    if (b >= 0x80 || b === 0x5c) return false;
  }
  return true;
}

/** Valid UTF-8 (what the classifier reads must be what the server reads). */
export function isValidUtf8(b: Buffer): boolean {
  return isUtf8(b);
}

// ---- backend (server → client)

export interface FieldDescription {
  name: string;
  tableOid: number;
  columnAttr: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  format: 0 | 1;
}

/** RowDescription ('T') body at buf[start+5, end). */
export function parseRowDescription(buf: Buffer, start: number, end: number): FieldDescription[] {
  const c = new Cursor(buf, start + 5, end);
  const n = c.int16();
  if (n < 0) throw new PgProtocolError('invalid field count');
  const out = new Array<FieldDescription>(n);
  for (let i = 0; i < n; i++) {
    const name = c.cstring();
    const tableOid = c.int32() >>> 0;
    const columnAttr = c.int16();
    const typeOid = c.int32() >>> 0;
    const typeSize = c.int16();
    const typeModifier = c.int32();
    const f = c.int16();
    if (f !== 0 && f !== 1) throw new PgProtocolError('invalid format code');
    out[i] = { name, tableOid, columnAttr, typeOid, typeSize, typeModifier, format: f };
  }
  c.done();
  return out;
}

/** CommandComplete ('C'): the command tag and the row count it reports (0 when it has none). */
export function parseCommandComplete(buf: Buffer, start: number, end: number): { tag: string; rows: number } {
  const c = new Cursor(buf, start + 5, end);
  const tag = c.cstring();
  c.done();
  const sp = tag.lastIndexOf(' ');
  const n = sp >= 0 ? Number(tag.slice(sp + 1)) : Number.NaN;
  return { tag: sp >= 0 && Number.isFinite(n) ? tag.slice(0, tag.indexOf(' ')) : tag, rows: Number.isFinite(n) ? n : 0 };
}

/** ErrorResponse / NoticeResponse fields by their one-letter code. */
export function parseNoticeFields(buf: Buffer, start: number, end: number): Record<string, string> {
  const c = new Cursor(buf, start + 5, end);
  const out: Record<string, string> = {};
  for (;;) {
    const k = c.byte();
    if (k === 0) break;
    out[String.fromCharCode(k)] = c.cstring();
  }
  c.done();
  return out;
}

/** ReadyForQuery ('Z') transaction status. */
export function parseReadyForQuery(buf: Buffer, start: number, end: number): 'I' | 'T' | 'E' {
  if (end - start !== 6) throw new PgProtocolError('invalid ReadyForQuery');
  const s = buf[start + 5]!;
  if (s === 0x49) return 'I';
  if (s === 0x54) return 'T';
  if (s === 0x45) return 'E';
  throw new PgProtocolError('invalid transaction status');
}

/** CopyInResponse ('G'), CopyOutResponse ('H'), CopyBothResponse ('W'). */
export function parseCopyResponse(buf: Buffer, start: number, end: number): { format: 0 | 1; columnFormats: number[] } {
  const c = new Cursor(buf, start + 5, end);
  const f = c.byte();
  if (f !== 0 && f !== 1) throw new PgProtocolError('invalid copy format');
  const columnFormats = formats(c);
  c.done();
  return { format: f, columnFormats };
}

/** ParameterStatus ('S'). */
export function parseParameterStatusMessage(buf: Buffer, start: number, end: number): { name: string; value: string } {
  const c = new Cursor(buf, start + 5, end);
  const name = c.cstring();
  const value = c.cstring();
  c.done();
  return { name, value };
}

/** ParameterDescription ('t'): parameter type OIDs. */
export function parseParameterDescription(buf: Buffer, start: number, end: number): number[] {
  const c = new Cursor(buf, start + 5, end);
  const n = c.int16();
  if (n < 0) throw new PgProtocolError('invalid parameter count');
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = c.int32() >>> 0;
  c.done();
  return out;
}

/** Backend message types (for readability at call sites). */
export const BE = {
  parseComplete: 0x31, // 1
  bindComplete: 0x32, // 2
  closeComplete: 0x33, // 3
  notification: 0x41, // A
  commandComplete: 0x43, // C
  dataRow: 0x44, // D
  error: 0x45, // E
  copyIn: 0x47, // G
  copyOut: 0x48, // H
  emptyQuery: 0x49, // I
  backendKey: 0x4b, // K
  notice: 0x4e, // N
  auth: 0x52, // R
  parameterStatus: 0x53, // S
  rowDescription: 0x54, // T
  functionResult: 0x56, // V
  copyBoth: 0x57, // W
  ready: 0x5a, // Z
  copyDone: 0x63, // c
  copyData: 0x64, // d
  noData: 0x6e, // n
  portalSuspended: 0x73, // s
  parameterDescription: 0x74, // t
  negotiate: 0x76, // v
} as const;

// ---- builders

function header(type: number, bodyLength: number): Buffer {
  const out = Buffer.allocUnsafe(5 + bodyLength);
  out[0] = type;
  out.writeInt32BE(4 + bodyLength, 1);
  return out;
}

function cstrLen(s: string): number {
  if (s.includes('\0')) throw new PgProtocolError('string contains NUL');
  return Buffer.byteLength(s, 'utf8') + 1;
}

function writeCstr(out: Buffer, pos: number, s: string): number {
  const n = out.write(s, pos, 'utf8');
  out[pos + n] = 0;
  return pos + n + 1;
}

/** Query ('Q') with the given text. */
export function buildQuery(sql: string): Buffer {
  const out = header(0x51, cstrLen(sql));
  writeCstr(out, 5, sql);
  return out;
}

/** Parse ('P') of `sql` as statement `name`, no parameter types. */
export function buildParse(name: string, sql: string): Buffer {
  const out = header(0x50, cstrLen(name) + cstrLen(sql) + 2);
  let p = writeCstr(out, 5, name);
  p = writeCstr(out, p, sql);
  out.writeInt16BE(0, p);
  return out;
}

/** Execute ('E') of `portal`. */
export function buildExecute(portal: string, maxRows = 0): Buffer {
  const out = header(0x45, cstrLen(portal) + 4);
  const p = writeCstr(out, 5, portal);
  out.writeInt32BE(maxRows, p);
  return out;
}

/** Describe ('D') of a statement or portal. */
export function buildDescribe(t: DescribeTarget, name: string): Buffer {
  const out = header(0x44, 1 + cstrLen(name));
  out[5] = t.charCodeAt(0);
  writeCstr(out, 6, name);
  return out;
}

/** Bind ('B') of portal `portal` to statement `statement`, with no parameters and default result formats. */
export function buildBind(portal: string, statement: string): Buffer {
  const out = header(0x42, cstrLen(portal) + cstrLen(statement) + 6);
  let p = writeCstr(out, 5, portal);
  p = writeCstr(out, p, statement);
  out.writeInt16BE(0, p);
  out.writeInt16BE(0, p + 2);
  out.writeInt16BE(0, p + 4);
  return out;
}

/** CopyFail ('f') with the reason the server puts in its error. */
export function buildCopyFail(reason: string): Buffer {
  const out = header(0x66, cstrLen(reason));
  writeCstr(out, 5, reason);
  return out;
}

/** The NUL-terminated string at the start of a message body buf[start + 5, end), or undefined when it does not end there. */
export function leadingCstr(buf: Buffer, start: number, end: number): string | undefined {
  const z = buf.indexOf(0, start + 5);
  return z < 0 || z >= end ? undefined : buf.toString('utf8', start + 5, z);
}

/** Flush ('H'). */
export function buildFlush(): Buffer {
  return header(0x48, 0);
}

export interface ErrorResponseFields {
  severity?: 'ERROR' | 'FATAL' | 'WARNING';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** ErrorResponse ('E'): S, V, C, M and optional D, H. */
export function buildErrorResponse(f: ErrorResponseFields, type = 0x45): Buffer {
  const sev = f.severity ?? (type === 0x45 ? 'ERROR' : 'WARNING');
  const fields: [string, string][] = [
    ['S', sev],
    ['V', sev],
    ['C', f.code],
    ['M', f.message],
  ];
  if (f.detail) fields.push(['D', f.detail]);
  if (f.hint) fields.push(['H', f.hint]);
  let len = 1;
  for (const [, v] of fields) len += 1 + cstrLen(v);
  const out = header(type, len);
  let p = 5;
  for (const [k, v] of fields) {
    out[p++] = k.charCodeAt(0);
    p = writeCstr(out, p, v);
  }
  out[p] = 0;
  return out;
}

/** NoticeResponse ('N'): the same fields as an error, severity WARNING unless given. */
export function buildNoticeResponse(f: ErrorResponseFields): Buffer {
  return buildErrorResponse(f, 0x4e);
}

/** CommandComplete ('C') with a tag. */
export function buildCommandComplete(tag: string): Buffer {
  const out = header(0x43, cstrLen(tag));
  writeCstr(out, 5, tag);
  return out;
}
