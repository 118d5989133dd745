import { describe, expect, it } from 'vitest';
import { buildErrorResponse } from './messages.js';
import {
  authenticationSASL,
  backendKeyData,
  cancelRequest,
  MAX_STARTUP_PACKET,
  parseAuthentication,
  parseBackendKeyData,
  parseErrorFields,
  parseSASLInitialResponse,
  parseStartupPacket,
  PgProtocolError,
  readTypedMessage,
  saslInitialResponse,
  sslRequest,
  startupMessage,
} from './codec.js';

describe('startup packet', () => {
  it('round-trips a StartupMessage with its parameters', () => {
    const buf = startupMessage({ user: 'jit_abc', database: 'app', application_name: 'psql' });
    const r = parseStartupPacket(buf);
    expect(r?.length).toBe(buf.length);
    expect(r?.packet).toMatchObject({ kind: 'startup', major: 3, minor: 0 });
    const params = r?.packet.kind === 'startup' ? Object.fromEntries(r.packet.params) : {};
    expect(params).toEqual({ user: 'jit_abc', database: 'app', application_name: 'psql' });
  });

  it('needs more bytes for a partial packet', () => {
    const buf = startupMessage({ user: 'u' });
    expect(parseStartupPacket(buf.subarray(0, 5))).toBeNull();
    expect(parseStartupPacket(buf.subarray(0, buf.length - 1))).toBeNull();
  });

  it('recognises SSLRequest, GSSENCRequest and CancelRequest', () => {
    expect(parseStartupPacket(sslRequest())?.packet).toEqual({ kind: 'ssl' });
    const gss = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    expect(parseStartupPacket(gss)?.packet).toEqual({ kind: 'gssenc' });
    const c = parseStartupPacket(cancelRequest(1234, Buffer.from([1, 2, 3, 4])))?.packet;
    expect(c).toEqual({ kind: 'cancel', pid: 1234, secret: Buffer.from([1, 2, 3, 4]) });
  });

  it('refuses oversized, undersized, unknown-protocol and malformed packets', () => {
    const big = Buffer.alloc(16);
    big.writeInt32BE(MAX_STARTUP_PACKET + 1, 0);
    expect(() => parseStartupPacket(big)).toThrow(PgProtocolError);
    const small = Buffer.alloc(8);
    small.writeInt32BE(4, 0);
    expect(() => parseStartupPacket(small)).toThrow(PgProtocolError);
    const v2 = Buffer.from([0, 0, 0, 9, 0, 2, 0, 0, 0]);
    expect(() => parseStartupPacket(v2)).toThrow(/unsupported frontend protocol/);
    // Parameter without a terminating NUL.
    const bad = Buffer.from([0, 0, 0, 10, 0, 3, 0, 0, 0x75, 0x00]);
    expect(() => parseStartupPacket(bad)).toThrow(PgProtocolError);
  });
});

describe('typed messages', () => {
  it('reads framing and guards the size', () => {
    const m = saslInitialResponse('SCRAM-SHA-256', 'n,,n=,r=abc');
    const r = readTypedMessage(Buffer.concat([m, Buffer.from('p')]));
    expect(r?.type).toBe(0x70);
    expect(r?.length).toBe(m.length);
    expect(parseSASLInitialResponse(r!.body)).toEqual({ mechanism: 'SCRAM-SHA-256', data: 'n,,n=,r=abc' });
    expect(readTypedMessage(m.subarray(0, 6))).toBeNull();
    const huge = Buffer.from([0x70, 0x7f, 0, 0, 0]);
    expect(() => readTypedMessage(huge)).toThrow(/too large/);
  });

  it('builds messages a client can parse', () => {
    const e = readTypedMessage(buildErrorResponse({ severity: 'FATAL', code: '28P01', message: 'nope', hint: 'h' }))!;
    expect(String.fromCharCode(e.type)).toBe('E');
    expect(parseErrorFields(e.body)).toEqual({ S: 'FATAL', V: 'FATAL', C: '28P01', M: 'nope', H: 'h' });
    const a = readTypedMessage(authenticationSASL(['SCRAM-SHA-256']))!;
    expect(parseAuthentication(a.body)).toEqual({ code: 10, mechanisms: ['SCRAM-SHA-256'] });
    const k = readTypedMessage(backendKeyData(42, Buffer.from([9, 9, 9, 9])))!;
    expect(parseBackendKeyData(k.body)).toEqual({ pid: 42, secret: Buffer.from([9, 9, 9, 9]) });
  });
});
