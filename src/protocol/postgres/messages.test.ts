import { describe, expect, it } from 'vitest';
import { PgProtocolError, typedMessage } from './codec.js';
import {
  buildDescribe,
  buildErrorResponse,
  buildExecute,
  buildParse,
  buildQuery,
  isSettingsIndependentSql,
  MessageFramer,
  parseCommandComplete,
  parseCopyResponse,
  parseFrontend,
  parseNoticeFields,
  parseReadyForQuery,
  parseRowDescription,
} from './messages.js';

function drain(f: MessageFramer): Buffer[] {
  const out: Buffer[] = [];
  while (f.next()) out.push(Buffer.from(f.buf.subarray(f.start, f.end)));
  return out;
}

function bind(portal: string, stmt: string, params: (string | null)[], fmts: number[] = [], resFmts: number[] = []): Buffer {
  const parts: Buffer[] = [Buffer.from(`${portal}\0${stmt}\0`)];
  const i16 = (n: number) => {
    const b = Buffer.alloc(2);
    b.writeInt16BE(n);
    return b;
  };
  const i32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    return b;
  };
  parts.push(i16(fmts.length), ...fmts.map(i16), i16(params.length));
  for (const p of params) {
    if (p === null) parts.push(i32(-1));
    else parts.push(i32(Buffer.byteLength(p)), Buffer.from(p));
  }
  parts.push(i16(resFmts.length), ...resFmts.map(i16));
  return typedMessage('B', Buffer.concat(parts));
}

const parseWhole = (m: Buffer) => parseFrontend(m, 0, m.length);

describe('MessageFramer', () => {
  const stream = Buffer.concat([buildQuery('select 1'), buildParse('s1', 'select $1'), typedMessage('S'), bind('', 's1', ['x'])]);

  it('yields whole messages as views of the chunk when a chunk holds whole messages', () => {
    const f = new MessageFramer(1024);
    f.push(stream);
    const seen: Buffer[] = [];
    while (f.next()) {
      expect(f.buf).toBe(stream);
      seen.push(f.buf.subarray(f.start, f.end));
    }
    expect(Buffer.concat(seen)).toEqual(stream);
    expect(seen.map((m) => String.fromCharCode(m[0]!))).toEqual(['Q', 'P', 'S', 'B']);
    expect(f.buffered).toBe(0);
  });

  it('reassembles the same messages whatever the chunk boundaries', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const f = new MessageFramer(1024);
      const out: Buffer[] = [];
      f.push(stream.subarray(0, cut));
      out.push(...drain(f));
      f.push(stream.subarray(cut));
      out.push(...drain(f));
      expect(Buffer.concat(out)).toEqual(stream);
    }
    // One byte at a time.
    const f = new MessageFramer(1024);
    const out: Buffer[] = [];
    for (const b of stream) {
      f.push(Buffer.from([b]));
      out.push(...drain(f));
    }
    expect(out).toHaveLength(4);
    expect(Buffer.concat(out)).toEqual(stream);
  });

  it('keeps unread whole messages when more bytes arrive before they are read', () => {
    const f = new MessageFramer(1024);
    f.push(stream.subarray(0, 20));
    f.push(stream.subarray(20));
    expect(Buffer.concat(drain(f))).toEqual(stream);
  });

  it('refuses a message larger than its bound, or a length below 4, before buffering it', () => {
    const f = new MessageFramer(100);
    const big = Buffer.alloc(5);
    big[0] = 0x51;
    big.writeInt32BE(1000, 1);
    f.push(big);
    expect(() => f.next()).toThrow(PgProtocolError);
    const g = new MessageFramer(100);
    const bad = Buffer.from([0x51, 0, 0, 0, 3]);
    g.push(bad);
    expect(() => g.next()).toThrow('invalid message length');
  });
});

describe('parseFrontend', () => {
  it('parses Query, Parse, Bind, Describe, Execute, Close, Sync, Flush, copy and Terminate', () => {
    expect(parseWhole(buildQuery('select 1'))).toMatchObject({ type: 'Q', sql: Buffer.from('select 1') });
    const p = parseWhole(typedMessage('P', Buffer.from('s1\0select $1\0\0\x01\0\0\0\x17')));
    expect(p).toMatchObject({ type: 'P', name: 's1', sql: Buffer.from('select $1'), paramTypes: [23] });
    const b = parseWhole(bind('p', 's1', ['42', null], [0], [1]));
    expect(b).toMatchObject({ type: 'B', portal: 'p', statement: 's1', paramFormats: [0], resultFormats: [1] });
    expect(b.type === 'B' && b.params.map((x) => x?.toString() ?? null)).toEqual(['42', null]);
    expect(parseWhole(buildDescribe('P', 'p'))).toEqual({ type: 'D', target: 'P', name: 'p' });
    expect(parseWhole(buildExecute('p', 10))).toEqual({ type: 'E', portal: 'p', maxRows: 10 });
    expect(parseWhole(typedMessage('C', Buffer.from('Ss1\0')))).toEqual({ type: 'C', target: 'S', name: 's1' });
    expect(parseWhole(typedMessage('S'))).toEqual({ type: 'S' });
    expect(parseWhole(typedMessage('H'))).toEqual({ type: 'H' });
    expect(parseWhole(typedMessage('d', Buffer.from('1\t2\n')))).toEqual({ type: 'd' });
    expect(parseWhole(typedMessage('c'))).toEqual({ type: 'c' });
    expect(parseWhole(typedMessage('f', Buffer.from('oops\0')))).toEqual({ type: 'f', message: 'oops' });
    expect(parseWhole(typedMessage('X'))).toEqual({ type: 'X' });
  });

  it('refuses unknown types, trailing bytes, missing terminators and bad counts', () => {
    for (const m of [
      typedMessage('p', Buffer.from('secret\0')), // password message after authentication
      typedMessage('Z'),
      typedMessage('Q', Buffer.from('select 1')), // no NUL
      typedMessage('Q', Buffer.from('select 1\0x')), // trailing byte
      typedMessage('S', Buffer.from('x')),
      typedMessage('D', Buffer.from('Xname\0')),
      typedMessage('E', Buffer.from('p\0\0\0')),
      typedMessage('B', Buffer.from('\0\0\0\x01\0\x07')), // format code 7
      typedMessage('B', Buffer.from('\0\0\0\0\0\x01\0\0\0\x10ab\0\0')), // value longer than the message
      typedMessage('B', Buffer.from('\0\0\0\x02\0\0\0\0\0\x01\xff\xff\xff\xff\0\0')), // 2 formats, 1 param
      typedMessage('P', Buffer.from('s\0q\0\xff\xff')), // negative count
    ]) {
      expect(() => parseWhole(m), m.toString('latin1')).toThrow(PgProtocolError);
    }
  });

  it('tells which SQL text lexes the same under any client_encoding / standard_conforming_strings', () => {
    expect(isSettingsIndependentSql(Buffer.from("select 'a' from t"))).toBe(true);
    expect(isSettingsIndependentSql(Buffer.from("select 'a\\' from t"))).toBe(false);
    expect(isSettingsIndependentSql(Buffer.from("select 'é'"))).toBe(false);
  });
});

describe('backend parsers and builders', () => {
  it('reads RowDescription, CommandComplete, ErrorResponse, ReadyForQuery, CopyOutResponse', () => {
    const field = Buffer.alloc(18);
    field.writeInt32BE(16384, 0);
    field.writeInt16BE(2, 4);
    field.writeInt32BE(25, 6);
    field.writeInt16BE(-1, 10);
    field.writeInt32BE(-1, 12);
    field.writeInt16BE(1, 16);
    const t = typedMessage('T', Buffer.concat([Buffer.from([0, 1]), Buffer.from('email\0'), field]));
    expect(parseRowDescription(t, 0, t.length)).toEqual([
      { name: 'email', tableOid: 16384, columnAttr: 2, typeOid: 25, typeSize: -1, typeModifier: -1, format: 1 },
    ]);
    const c = typedMessage('C', Buffer.from('INSERT 0 5\0'));
    expect(parseCommandComplete(c, 0, c.length)).toEqual({ tag: 'INSERT', rows: 5 });
    const c2 = typedMessage('C', Buffer.from('CREATE TABLE\0'));
    expect(parseCommandComplete(c2, 0, c2.length)).toEqual({ tag: 'CREATE TABLE', rows: 0 });
    const e = buildErrorResponse({ code: '42501', message: 'jit: no', detail: 'rule: r1', hint: 'ask' });
    expect(parseNoticeFields(e, 0, e.length)).toEqual({ S: 'ERROR', V: 'ERROR', C: '42501', M: 'jit: no', D: 'rule: r1', H: 'ask' });
    const z = typedMessage('Z', Buffer.from('T'));
    expect(parseReadyForQuery(z, 0, z.length)).toBe('T');
    const h = typedMessage('H', Buffer.from([0, 0, 2, 0, 0, 0, 0]));
    expect(parseCopyResponse(h, 0, h.length)).toEqual({ format: 0, columnFormats: [0, 0] });
  });

  it('builds messages the frontend parser reads back', () => {
    expect(parseWhole(buildParse('x', 'JIT BLOCKED'))).toEqual({ type: 'P', name: 'x', sql: Buffer.from('JIT BLOCKED'), paramTypes: [] });
    expect(() => buildQuery('a\0b')).toThrow(PgProtocolError);
  });
});
