/**
 * PostgreSQL wire framing for the startup phase: the untyped first packet, typed messages
 * (type byte + int32 length), and builders/parsers for the messages the startup engine speaks.
 * Pure over bytes: no sockets, no fs, no logger. Peer input that breaks the protocol throws
 * PgProtocolError (SQLSTATE 08P01 unless stated), never anything that echoes the input back.
 */

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
export const PROTOCOL_3_0 = 196608;
/** Largest untyped first packet we accept (PostgreSQL itself allows 10000 bytes). */
export const MAX_STARTUP_PACKET = 10 * 1024;
/** Largest typed message accepted during the startup/authentication phase. */
export const MAX_STARTUP_PHASE_MESSAGE = 64 * 1024;

/** Authentication request codes (the int32 after 'R'). */
export const AUTH = {
  ok: 0,
  cleartext: 3,
  md5: 5,
  gss: 7,
  sspi: 9,
  sasl: 10,
  saslContinue: 11,
  saslFinal: 12,
} as const;

/** A peer broke the protocol; `sqlstate` is what a PostgreSQL client would be told. */
export class PgProtocolError extends Error {
  constructor(
    message: string,
    readonly sqlstate = '08P01',
  ) {
    super(message);
    this.name = 'PgProtocolError';
  }
}

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: Buffer }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> };

/**
 * Parse the untyped first packet at the start of `buf`.
 * Returns null when more bytes are needed, else the packet and its length in bytes.
 */
export function parseStartupPacket(buf: Buffer): { packet: StartupPacket; length: number } | null {
  if (buf.length < 8) return null;
  const length = buf.readInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_PACKET) throw new PgProtocolError('invalid length of startup packet');
  if (buf.length < length) return null;
  const code = buf.readInt32BE(4);
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (length !== 8) throw new PgProtocolError('invalid length of startup packet');
    return { packet: { kind: code === SSL_REQUEST_CODE ? 'ssl' : 'gssenc' }, length };
  }
  if (code === CANCEL_REQUEST_CODE) {
    // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
    if (length < 16 || length > 12 + 256) throw new PgProtocolError('invalid length of cancel request');
    return {
      packet: { kind: 'cancel', pid: buf.readInt32BE(8), secret: Buffer.from(buf.subarray(12, length)) },
      length,
    };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) throw new PgProtocolError(`unsupported frontend protocol ${major}.${minor}`, '0A000');
  const params = new Map<string, string>();
  let pos = 8;
  for (;;) {
    const end = buf.indexOf(0, pos);
    if (end < 0 || end >= length) throw new PgProtocolError('invalid startup packet layout');
    if (end === pos) {
      if (end !== length - 1) throw new PgProtocolError('invalid startup packet layout');
      break;
    }
    const name = buf.toString('utf8', pos, end);
    const vEnd = buf.indexOf(0, end + 1);
    if (vEnd < 0 || vEnd >= length) throw new PgProtocolError('invalid startup packet layout');
    if (params.has(name)) throw new PgProtocolError('duplicate startup parameter');
    params.set(name, buf.toString('utf8', end + 1, vEnd));
    pos = vEnd + 1;
  }
  return { packet: { kind: 'startup', major, minor, params }, length };
}

export interface TypedMessage {
  /** Message type byte (e.g. 0x70 'p', 0x52 'R'). */
  type: number;
  /** Body without type byte and length (a view into the input buffer). */
  body: Buffer;
  /** Total bytes consumed from the input. */
  length: number;
}

/** Read one typed message at `offset`; null when more bytes are needed. Throws on bad or oversized lengths. */
export function readTypedMessage(buf: Buffer, offset = 0, maxLength = MAX_STARTUP_PHASE_MESSAGE): TypedMessage | null {
  if (buf.length - offset < 5) return null;
  const len = buf.readInt32BE(offset + 1);
  if (len < 4) throw new PgProtocolError('invalid message length');
  if (len > maxLength) throw new PgProtocolError('message too large');
  if (buf.length - offset < len + 1) return null;
  return { type: buf[offset]!, body: buf.subarray(offset + 5, offset + 1 + len), length: len + 1 };
}

// ---- builders

/** A typed message: type byte, int32 length, body. */
export function typedMessage(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  if (s.includes('\0')) throw new PgProtocolError('string contains NUL');
  return Buffer.from(`${s}\0`, 'utf8');
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

export function authenticationOk(): Buffer {
  return typedMessage('R', int32(AUTH.ok));
}

export function authenticationSASL(mechanisms: string[]): Buffer {
  return typedMessage('R', Buffer.concat([int32(AUTH.sasl), ...mechanisms.map(cstr), Buffer.from([0])]));
}

export function authenticationSASLContinue(data: string): Buffer {
  return typedMessage('R', Buffer.concat([int32(AUTH.saslContinue), Buffer.from(data, 'utf8')]));
}

export function authenticationSASLFinal(data: string): Buffer {
  return typedMessage('R', Buffer.concat([int32(AUTH.saslFinal), Buffer.from(data, 'utf8')]));
}

/** BackendKeyData ('K'): process id and secret key (4 bytes under protocol 3.0). */
export function backendKeyData(pid: number, secret: Buffer): Buffer {
  return typedMessage('K', Buffer.concat([int32(pid), secret]));
}

export function parameterStatus(name: string, value: string): Buffer {
  return typedMessage('S', Buffer.concat([cstr(name), cstr(value)]));
}

/** ReadyForQuery ('Z') with transaction status I, T or E. */
export function readyForQuery(status: 'I' | 'T' | 'E' = 'I'): Buffer {
  return typedMessage('Z', Buffer.from(status, 'latin1'));
}

/** NegotiateProtocolVersion ('v'): newest minor version we speak and the options we did not recognise. */
export function negotiateProtocolVersion(newestMinor: number, unsupported: string[]): Buffer {
  return typedMessage('v', Buffer.concat([int32((3 << 16) | newestMinor), int32(unsupported.length), ...unsupported.map(cstr)]));
}

/** Untyped StartupMessage for protocol 3.0. */
export function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [int32(PROTOCOL_3_0)];
  for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  return Buffer.concat([int32(body.length + 4), body]);
}

export function sslRequest(): Buffer {
  return Buffer.concat([int32(8), int32(SSL_REQUEST_CODE)]);
}

export function cancelRequest(pid: number, secret: Buffer): Buffer {
  return Buffer.concat([int32(12 + secret.length), int32(CANCEL_REQUEST_CODE), int32(pid), secret]);
}

export function saslInitialResponse(mechanism: string, data: string): Buffer {
  const d = Buffer.from(data, 'utf8');
  return typedMessage('p', Buffer.concat([cstr(mechanism), int32(d.length), d]));
}

export function saslResponse(data: string): Buffer {
  return typedMessage('p', Buffer.from(data, 'utf8'));
}

export function passwordMessage(password: string): Buffer {
  return typedMessage('p', cstr(password));
}

/** Terminate ('X'). */
export function terminate(): Buffer {
  return typedMessage('X');
}

// ---- parsers (bodies of typed messages)

function readCString(body: Buffer, pos: number): { value: string; next: number } {
  const end = body.indexOf(0, pos);
  if (end < 0) throw new PgProtocolError('missing string terminator');
  return { value: body.toString('utf8', pos, end), next: end + 1 };
}

/** SASLInitialResponse body: mechanism and initial data (null when length is -1). */
export function parseSASLInitialResponse(body: Buffer): { mechanism: string; data: string | null } {
  const m = readCString(body, 0);
  if (body.length < m.next + 4) throw new PgProtocolError('invalid SASLInitialResponse');
  const len = body.readInt32BE(m.next);
  if (len === -1) {
    if (body.length !== m.next + 4) throw new PgProtocolError('invalid SASLInitialResponse');
    return { mechanism: m.value, data: null };
  }
  if (len < 0 || body.length !== m.next + 4 + len) throw new PgProtocolError('invalid SASLInitialResponse');
  return { mechanism: m.value, data: body.toString('utf8', m.next + 4) };
}

export type AuthenticationRequest =
  | { code: typeof AUTH.ok }
  | { code: typeof AUTH.sasl; mechanisms: string[] }
  | { code: typeof AUTH.saslContinue | typeof AUTH.saslFinal; data: string }
  | { code: number };

/** Authentication ('R') body. */
export function parseAuthentication(body: Buffer): AuthenticationRequest {
  if (body.length < 4) throw new PgProtocolError('invalid authentication request');
  const code = body.readInt32BE(0);
  if (code === AUTH.sasl) {
    const mechanisms: string[] = [];
    let pos = 4;
    while (pos < body.length && body[pos] !== 0) {
      const s = readCString(body, pos);
      mechanisms.push(s.value);
      pos = s.next;
    }
    return { code, mechanisms };
  }
  if (code === AUTH.saslContinue || code === AUTH.saslFinal) return { code, data: body.toString('utf8', 4) };
  return { code };
}

/** ErrorResponse / NoticeResponse body → fields by their one-letter code. */
export function parseErrorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const key = String.fromCharCode(body[pos]!);
    const s = readCString(body, pos + 1);
    out[key] = s.value;
    pos = s.next;
  }
  return out;
}

export function parseBackendKeyData(body: Buffer): { pid: number; secret: Buffer } {
  if (body.length < 8 || body.length > 4 + 256) throw new PgProtocolError('invalid BackendKeyData');
  return { pid: body.readInt32BE(0), secret: Buffer.from(body.subarray(4)) };
}

export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const n = readCString(body, 0);
  const v = readCString(body, n.next);
  return { name: n.value, value: v.value };
}
