/**
 * Result masking for the inspecting PostgreSQL proxy: rewrite DataRow ('D') and COPY TO STDOUT
 * CopyData ('d') messages so that masked columns and detected values never reach the client.
 * Pure over bytes: no sockets, no fs, no logger. Masking code NEVER returns or logs the values
 * it masked; a value it cannot mask safely makes the function return null and the caller MUST
 * then refuse the whole result (fail closed) — a row is never passed on partially masked.
 *
 * Decisions (see also the report in the Layer 7 brief):
 * - Column rules match `column`, `table.column` or `schema.table.column`, case-insensitively;
 *   the first rule (in policy order) that names a column decides its style. A column rule beats
 *   detectors on the same column. A spec with more than three parts never matches.
 * - Output lengths never reveal the input length: full → `****`; partial → a fixed-width hint
 *   (e-mail `a***@example.com`, card `**** **** **** 1234`, phone `******12`, other text: first
 *   character + `***` when the value has at least 6 characters, else `****`); hash → `h:` + 12 hex
 *   of HMAC-SHA256 over the value's bytes with the per-agent key.
 * - Types: text-like types (text, varchar, bpchar, name, unknown) get the strings above in both
 *   formats (their binary form is the text bytes). json/jsonb get the same mask as a JSON string
 *   (`"****"`, `"h:…"`; partial gives `"****"`) so JSON-decoding clients keep working. Every other
 *   type (int, numeric, date, uuid, citext, enums, arrays, …), whatever the style, is sent as
 *   NULL in text format — a placeholder such as 0 or 1970-01-01 would be a plausible lie, NULL
 *   parses for every type — and refused (null) in binary format, as the brief asks. NULL stays
 *   NULL (a masked column still shows which rows have no value).
 * - Detectors run only when detector rules exist, only on non-NULL values of types that can hold
 *   text (not on numbers, dates, uuids…), and replace the matched substring in place. In json
 *   values a match is masked in place when it lies inside a JSON string; otherwise the whole value
 *   becomes `"****"`. In an unknown type sent in binary a match cannot be replaced without
 *   breaking its framing, so the row is refused.
 * - Unresolved columns: a field with a table OID that resolve() cannot name (catalog race) is
 *   refused when column rules exist, since it might be a masked column under an alias.
 * - COPY TO STDOUT: PostgreSQL sends one row per CopyData; a message that does not end on a row
 *   boundary, has the wrong number of fields, or is binary COPY (no types) is refused whenever the
 *   plan is active. Only the default DELIMITER/NULL/QUOTE/ESCAPE are understood: other options
 *   change the field count and are refused, except a single-column COPY, which is masked whole. A
 *   HEADER line is masked like data (over-masking, never a leak). Column hashes are computed over
 *   the decoded value, so COPY and DataRow give the same hash for the same value.
 * - Hash input: the value's bytes for columns; for detector matches a normal form (e-mail
 *   lowercased, card/phone digits only, IBAN without spaces, uppercased).
 * - The hash key is per agent: pass `{ hashKey }` to planMasking/planCopyMasking or call
 *   configureMasking({ hashKey }) once at agent start (agent/main.ts does: the operator's
 *   maskingKeyFile, else a key derived from the agent token, so masks are stable across sessions
 *   and restarts). Without either (tests), a random key is made per process — never a guessable one.
 */
import { randomBytes } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import type { MaskRule } from '#shared/config/policy.js';
import { JitError } from '#shared/errors/index.js';
import {
  CANNOT_SCAN,
  type CompiledDetectors,
  compileDetectors,
  findMatches,
  hashTag,
  luhnValid,
  type MaskStyle,
  mayMatch,
  applyMatches,
} from './detectors.js';

/** One field of a RowDescription. */
export interface FieldInfo {
  name: string;
  tableOid: number;
  columnAttr: number;
  typeOid: number;
  format: 0 | 1;
}

/** What a result column is in the catalog. `typeOid` (optional) lets COPY masking send NULL for non-text types. */
export interface ColumnIdentity {
  schema?: string;
  table?: string;
  column: string;
  typeOid?: number;
}

/** A decision per output column, made once per result. Opaque to callers. */
export interface MaskPlan {
  readonly active: boolean;
}

/** Options of plan creation. */
export interface MaskOptions {
  /** Per-agent HMAC key for style `hash` (≥ 16 bytes). Defaults to configureMasking's key. */
  hashKey?: Uint8Array | string;
}

const MIN_KEY_BYTES = 16;
let moduleKey: Buffer | undefined;

function toKey(key: Uint8Array | string): Buffer {
  const buf = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  if (buf.length < MIN_KEY_BYTES) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: 'The masking hash key is too short',
      hint: `use at least ${MIN_KEY_BYTES} random bytes`,
    });
  }
  return buf;
}

/** Set the per-agent HMAC key used by style `hash` (call once at agent start; ≥ 16 bytes). */
export function configureMasking(opts: { hashKey: Uint8Array | string }): void {
  moduleKey = toKey(opts.hashKey);
}

function resolveKey(opts: MaskOptions | undefined): Buffer {
  if (opts?.hashKey !== undefined) return toKey(opts.hashKey);
  // A random per-process key: hashes are not stable across restarts, but never guessable.
  moduleKey ??= randomBytes(32);
  return moduleKey;
}

// ---- type classes (PostgreSQL built-in type OIDs)

const TEXT_TYPES = new Set([25, 1043, 1042, 19, 705]); // text, varchar, bpchar, name, unknown
const JSON_OID = 114;
const JSONB_OID = 3802;
/** Types whose values cannot hold free text: detectors never run on them. */
const NON_TEXT_SCALARS = new Set([
  16, 17, 20, 21, 23, 24, 26, 27, 28, 29, 700, 701, 790, 1700, 1082, 1083, 1114, 1184, 1186, 1266, 2950, 869, 650, 829, 774, 1560, 1562,
  3220, 5069, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 600, 601, 602, 603, 604, 628, 718, 3614, 3615, 3904, 3906, 3908, 3910,
  3912, 3926,
]);

// ---- field actions

const PASS = 0;
const MASK_TEXT = 1; // text-like value → string mask
const MASK_JSON = 2; // json (text or binary), jsonb text → JSON string mask
const MASK_JSONB_BIN = 3; // jsonb binary: version byte 1 + JSON string mask
const MASK_NULL = 4; // non-text type in text format → NULL
const REFUSE = 5; // non-NULL value → refuse the row
const DETECT_TEXT = 6; // text-like (or unknown type in text format): in-place detector masking
const DETECT_JSON = 7;
const DETECT_JSONB_BIN = 8;
const DETECT_OPAQUE = 9; // unknown type in binary: any match → refuse

const STYLE_CODES: Record<MaskStyle, number> = { full: 0, partial: 1, hash: 2 };

class Plan implements MaskPlan {
  readonly active: boolean;
  /** Scratch space reused by every call (sync, single-threaded): no per-row allocation for the bookkeeping. */
  readonly lenPos: Int32Array;
  readonly replStart: Int32Array;
  readonly replLen: Int32Array;
  /** Replacement bytes of the row being masked (grows for large values, never shrinks). */
  scratch: Buffer;
  constructor(
    readonly actions: Uint8Array,
    readonly styles: Uint8Array,
    readonly detectors: CompiledDetectors | undefined,
    readonly hashKey: Buffer,
    readonly masked: { name: string; rule: string }[],
    readonly copyFormat: 'text' | 'csv' | 'binary' | undefined,
  ) {
    this.active = actions.some((a) => a !== PASS);
    this.lenPos = new Int32Array(actions.length);
    this.replStart = new Int32Array(actions.length);
    this.replLen = new Int32Array(actions.length);
    this.scratch = Buffer.allocUnsafe(this.active ? 4096 : 0);
  }
}

interface ColumnSpec {
  schema?: string;
  table?: string;
  column: string;
  rule: MaskRule;
}

function compileColumnSpecs(rules: readonly MaskRule[]): ColumnSpec[] {
  const specs: ColumnSpec[] = [];
  for (const rule of rules) {
    for (const raw of rule.columns) {
      const parts = raw.toLowerCase().split('.');
      if (parts.length === 1) specs.push({ column: parts[0]!, rule });
      else if (parts.length === 2) specs.push({ table: parts[0]!, column: parts[1]!, rule });
      else if (parts.length === 3) specs.push({ schema: parts[0]!, table: parts[1]!, column: parts[2]!, rule });
    }
  }
  return specs;
}

function matchColumn(specs: readonly ColumnSpec[], id: ColumnIdentity): MaskRule | undefined {
  const column = id.column.toLowerCase();
  const table = id.table?.toLowerCase();
  const schema = id.schema?.toLowerCase();
  for (const s of specs) {
    if (s.column !== column) continue;
    if (s.table !== undefined && s.table !== table) continue;
    if (s.schema !== undefined && s.schema !== schema) continue;
    return s.rule;
  }
  return undefined;
}

function asPlan(plan: MaskPlan): Plan | undefined {
  return plan instanceof Plan ? plan : undefined;
}

/** Decide per output field how to mask it. resolve() maps (tableOid, attnum) → identity (catalog lookup done by the caller, cached). */
export function planMasking(
  fields: FieldInfo[],
  resolve: (tableOid: number, attnum: number) => ColumnIdentity | undefined,
  rules: MaskRule[],
  opts?: MaskOptions,
): MaskPlan {
  const specs = compileColumnSpecs(rules);
  const detectors = compileDetectors(rules);
  const actions = new Uint8Array(fields.length);
  const styles = new Uint8Array(fields.length);
  const masked: { name: string; rule: string }[] = [];
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    const binary = f.format === 1;
    let rule: MaskRule | undefined;
    if (specs.length > 0 && f.tableOid !== 0) {
      const id = resolve(f.tableOid, f.columnAttr);
      if (id === undefined) {
        actions[i] = REFUSE; // might be a masked column under an alias
        masked.push({ name: f.name, rule: 'jit.unresolved-column' });
        continue;
      }
      rule = matchColumn(specs, id);
    } else if (specs.length > 0) {
      // No table behind the field (a function's rows, a computed value): its name is all that ties
      // it to a masked column. `SELECT * FROM f()` where f returns SETOF customers must not leak
      // customers.email, so a computed field named like a masked column is masked (over-masking a
      // harmless value of the same name is the safe mistake).
      const name = f.name.toLowerCase();
      rule = specs.find((s) => s.column === name)?.rule;
    }
    if (rule) {
      styles[i] = STYLE_CODES[rule.style];
      masked.push({ name: f.name, rule: rule.name });
      if (TEXT_TYPES.has(f.typeOid)) actions[i] = MASK_TEXT;
      else if (f.typeOid === JSON_OID || (f.typeOid === JSONB_OID && !binary)) actions[i] = MASK_JSON;
      else if (f.typeOid === JSONB_OID) actions[i] = MASK_JSONB_BIN;
      else actions[i] = binary ? REFUSE : MASK_NULL;
      continue;
    }
    if (detectors && !NON_TEXT_SCALARS.has(f.typeOid)) {
      if (TEXT_TYPES.has(f.typeOid)) actions[i] = DETECT_TEXT;
      else if (f.typeOid === JSON_OID || (f.typeOid === JSONB_OID && !binary)) actions[i] = DETECT_JSON;
      else if (f.typeOid === JSONB_OID) actions[i] = DETECT_JSONB_BIN;
      else actions[i] = binary ? DETECT_OPAQUE : DETECT_TEXT;
    }
  }
  return new Plan(actions, styles, detectors, resolveKey(opts), masked, undefined);
}

/** Which columns a plan masks and under which rule, plus the rules whose detectors it applies (for the `result.masked` audit event). */
export function describeMasking(plan: MaskPlan): { columns: { name: string; rule: string }[]; detectorRules: string[] } {
  const p = asPlan(plan);
  if (!p) return { columns: [], detectorRules: [] };
  return { columns: p.masked.map((c) => ({ ...c })), detectorRules: [...(p.detectors?.ruleNames ?? [])] };
}

// ---- value masks

const STARS = Buffer.from('****');
const JSON_STARS = Buffer.from('"****"');
const JSONB_STARS = Buffer.from('\x01"****"', 'latin1');
/** Marks "replace by SQL NULL" in the replacement table. */
const NULL_VALUE = Buffer.alloc(0);

/** Byte length of the UTF-8 character starting at bytes[i], or 0 when it is not a complete valid one. */
function utf8CharLen(bytes: Uint8Array, i: number, end: number): number {
  const b = bytes[i]!;
  const n = b < 0x80 ? 1 : b >= 0xc2 && b < 0xe0 ? 2 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xf0 && b < 0xf5 ? 4 : 0;
  if (n === 0 || i + n > end) return 0;
  for (let k = 1; k < n; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return 0;
  return n;
}

const isDigit = (b: number) => b >= 48 && b <= 57;
const isPhoneSep = (b: number) => b === 32 || b === 45 || b === 46 || b === 40 || b === 41 || b === 43; // space - . ( ) +

/** Largest output of partialInto beyond the input length. */
const PARTIAL_SLACK = 32;

/**
 * Partial style on a whole column value: a fixed-width hint that depends on what the value looks
 * like. Writes into dst at o (room for e - s + PARTIAL_SLACK bytes) and returns the length.
 */
function partialInto(src: Buffer, s: number, e: number, dst: Buffer, o: number): number {
  let at = -1;
  let digits = 0;
  let other = false;
  for (let i = s; i < e; i++) {
    const b = src[i]!;
    if (isDigit(b)) digits++;
    else if (b === 64) {
      at = i;
      other = true;
    } else if (!isPhoneSep(b)) other = true;
  }
  if (at > s && at < e - 3) {
    let dot = false;
    for (let i = at + 1; i < e; i++) if (src[i] === 46) dot = true;
    const first = utf8CharLen(src, s, at);
    if (dot && first > 0) {
      let k = o;
      for (let i = s; i < s + first; i++) dst[k++] = src[i]!;
      dst[k++] = 42;
      dst[k++] = 42;
      dst[k++] = 42;
      for (let i = at; i < e; i++) dst[k++] = src[i]!;
      return k - o;
    }
  }
  if (!other && digits >= 8) {
    // 16–19 digits is a card; 13–15 may be a long phone number, so only a Luhn-valid one is a card.
    let isCard = digits >= 16 && digits <= 19;
    if (!isCard && digits >= 13 && digits <= 15) {
      let all = '';
      for (let i = s; i < e; i++) if (isDigit(src[i]!)) all += String.fromCharCode(src[i]!);
      isCard = luhnValid(all);
    }
    if (!isCard && digits > 15) return writeConst(STARS, dst, o);
    const prefix = isCard ? CARD_PREFIX : PHONE_PREFIX;
    let k = o + writeConst(prefix, dst, o);
    const keep = isCard ? 4 : 2;
    // The last `keep` digits, in order.
    let from = e;
    for (let seen = 0; from > s && seen < keep; ) if (isDigit(src[--from]!)) seen++;
    for (let i = from; i < e; i++) if (isDigit(src[i]!)) dst[k++] = src[i]!;
    return k - o;
  }
  let chars = 0;
  for (let i = s; i < e && chars < 6; i++) if ((src[i]! & 0xc0) !== 0x80) chars++;
  const first = chars >= 6 ? utf8CharLen(src, s, e) : 0;
  if (first === 0) return writeConst(STARS, dst, o);
  for (let k = 0; k < first; k++) dst[o + k] = src[s + k]!;
  dst[o + first] = dst[o + first + 1] = dst[o + first + 2] = 42; // ***
  return first + 3;
}
const CARD_PREFIX = Buffer.from('**** **** **** ');
const PHONE_PREFIX = Buffer.from('******');

function writeConst(c: Buffer, dst: Buffer, o: number): number {
  for (let k = 0; k < c.length; k++) dst[o + k] = c[k]!;
  return c.length;
}

function partialBytes(src: Buffer, s: number, e: number): Buffer {
  const out = Buffer.allocUnsafe(e - s + PARTIAL_SLACK);
  return out.subarray(0, partialInto(src, s, e, out, 0));
}

/** The whole-value mask of a text-like value bytes[s, e). */
function textMask(src: Buffer, s: number, e: number, style: number, key: Buffer): Buffer {
  if (style === 0) return STARS;
  if (style === 1) return partialBytes(src, s, e);
  return Buffer.from(hashTag(key, src.subarray(s, e)), 'latin1');
}

function jsonMask(src: Uint8Array, s: number, e: number, style: number, key: Buffer, jsonbBinary: boolean): Buffer {
  if (style !== 2) return jsonbBinary ? JSONB_STARS : JSON_STARS;
  const tag = `"${hashTag(key, src.subarray(s, e))}"`;
  return Buffer.from(jsonbBinary ? '\x01' + tag : tag, 'latin1');
}

/** Decode for detectors: UTF-8 when valid (lossless both ways), else latin1 (lossless for any bytes; the built-in detectors look for ASCII only). */
function decode(src: Buffer, s: number, e: number): { text: string; enc: 'utf8' | 'latin1' } {
  const enc = isUtf8(src.subarray(s, e)) ? 'utf8' : 'latin1';
  return { text: src.toString(enc, s, e), enc };
}

/** Spans [start, end) of JSON string contents (between the quotes) in `s`. */
function jsonStringSpans(s: string): number[] {
  const spans: number[] = [];
  let i = 0;
  while (i < s.length) {
    if (s.charCodeAt(i) === 34) {
      const start = i + 1;
      i++;
      while (i < s.length && s.charCodeAt(i) !== 34) i += s.charCodeAt(i) === 92 ? 2 : 1;
      spans.push(start, Math.min(i, s.length));
    }
    i++;
  }
  return spans;
}

/**
 * Run detectors on bytes[s, e). Returns undefined when nothing matched (keep the original bytes),
 * a Buffer with the replacement, or null when the value cannot be masked safely.
 */
function detectValue(p: Plan, src: Buffer, s: number, e: number, action: number): Buffer | null | undefined {
  const det = p.detectors!;
  let off = s;
  if (action === DETECT_JSONB_BIN) {
    if (e === s) return undefined;
    if (src[s] !== 1) return null; // unknown jsonb binary version: cannot scan
    off = s + 1;
  }
  const may = mayMatch(det, src, off, e);
  if (may === 0) return undefined;
  const { text, enc } = decode(src, off, e);
  const matches = findMatches(text, det, may);
  if (matches === CANNOT_SCAN) return null;
  if (matches.length === 0) return undefined;
  if (action === DETECT_OPAQUE) return null;
  if (action === DETECT_JSON || action === DETECT_JSONB_BIN) {
    const spans = jsonStringSpans(text);
    const inside = matches.every((m) => {
      for (let k = 0; k < spans.length; k += 2) {
        if (m.start >= spans[k]! && m.end <= spans[k + 1]!) return !text.slice(m.start, m.end).includes('\\');
      }
      return false;
    });
    if (!inside) return action === DETECT_JSONB_BIN ? JSONB_STARS : JSON_STARS;
    const masked = Buffer.from(applyMatches(text, matches, p.hashKey), enc);
    return action === DETECT_JSONB_BIN ? Buffer.concat([Buffer.of(1), masked]) : masked;
  }
  return Buffer.from(applyMatches(text, matches, p.hashKey), enc);
}

/** Replacement for one non-NULL DataRow value: undefined = unchanged, NULL_VALUE = send NULL, null = refuse. */
function maskValue(p: Plan, i: number, src: Buffer, s: number, e: number): Buffer | null | undefined {
  const action = p.actions[i]!;
  switch (action) {
    case MASK_TEXT:
      return textMask(src, s, e, p.styles[i]!, p.hashKey);
    case MASK_JSON:
      return jsonMask(src, s, e, p.styles[i]!, p.hashKey, false);
    case MASK_JSONB_BIN:
      return jsonMask(src, s + 1, e, p.styles[i]!, p.hashKey, true);
    case MASK_NULL:
      return NULL_VALUE;
    case REFUSE:
      return null;
    default:
      return detectValue(p, src, s, e, action);
  }
}

/** Rewrite one whole DataRow message (type 'D' + int32 length + body). Returns the SAME buffer when nothing changed, a new buffer when masked, or null when a value cannot be masked safely (caller then refuses the result). */
export function maskDataRow(message: Buffer, plan: MaskPlan): Buffer | null {
  const p = asPlan(plan);
  if (!p) return null;
  if (!p.active) return message;
  try {
    return maskDataRowUnsafe(message, p);
  } catch {
    // Backstop only: every bound is checked below; a throw would mean a bug, and a bug must not leak.
    return null;
  }
}

/** Make room for `n` bytes of replacements, keeping the first `used`. */
function ensureScratch(p: Plan, n: number, used: number): Buffer {
  if (p.scratch.length < n) {
    const grown = Buffer.allocUnsafe(Math.max(n, p.scratch.length * 2));
    p.scratch.copy(grown, 0, 0, used);
    p.scratch = grown;
  }
  return p.scratch;
}

/** Copy src[s, e) to dst at o; a byte loop beats Buffer#copy's call overhead for the short runs of a row. */
function copyBytes(src: Buffer, s: number, e: number, dst: Buffer, o: number): number {
  if (e - s > 64) return src.copy(dst, o, s, e);
  for (let i = s; i < e; i++) dst[o++] = src[i]!;
  return e - s;
}

/** Big-endian int32 at o (caller checked o + 4 <= length); inlined by V8, unlike Buffer#readInt32BE. */
function readI32(m: Buffer, o: number): number {
  return (m[o]! << 24) | (m[o + 1]! << 16) | (m[o + 2]! << 8) | m[o + 3]!;
}

function maskDataRowUnsafe(message: Buffer, p: Plan): Buffer | null {
  const n = message.length;
  if (n < 7 || message[0] !== 0x44 || message.readInt32BE(1) !== n - 1) return null;
  const count = message.readInt16BE(5);
  if (count !== p.actions.length) return null;
  const actions = p.actions;
  let pos = 7;
  let replaced = 0;
  let newLength = n;
  let sp = 0; // bytes used in p.scratch
  for (let i = 0; i < count; i++) {
    if (pos + 4 > n) return null;
    const len = readI32(message, pos);
    if (len === -1) {
      pos += 4;
      continue; // NULL stays NULL
    }
    if (len < 0 || len > n - pos - 4) return null;
    const action = actions[i]!;
    if (action !== PASS) {
      const vs = pos + 4;
      let rl: number; // replacement length; -1 = NULL, -2 = unchanged
      if (action === MASK_TEXT && p.styles[i] !== 2) {
        // Hot path (full/partial on text): written straight into the scratch buffer, no allocation.
        const dst = ensureScratch(p, sp + len + PARTIAL_SLACK, sp);
        rl = p.styles[i] === 0 ? writeConst(STARS, dst, sp) : partialInto(message, vs, vs + len, dst, sp);
      } else {
        const r = maskValue(p, i, message, vs, vs + len);
        if (r === null) return null;
        if (r === undefined) rl = -2;
        else if (r === NULL_VALUE) rl = -1;
        else rl = copyBytes(r, 0, r.length, ensureScratch(p, sp + r.length, sp), sp);
      }
      if (rl !== -2) {
        p.lenPos[replaced] = pos;
        p.replStart[replaced] = sp;
        p.replLen[replaced] = rl;
        replaced++;
        if (rl > 0) sp += rl;
        newLength += Math.max(rl, 0) - len;
      }
    }
    pos += 4 + len;
  }
  if (pos !== n) return null; // trailing bytes: not a DataRow we understand
  if (replaced === 0) return message;
  const out = Buffer.allocUnsafe(newLength);
  out[0] = 0x44;
  out.writeInt32BE(newLength - 1, 1);
  let from = 5; // copy the column count and everything up to the first replaced length
  let to = 5;
  const scratch = p.scratch;
  for (let k = 0; k < replaced; k++) {
    const lp = p.lenPos[k]!;
    to += copyBytes(message, from, lp, out, to);
    const oldLen = readI32(message, lp);
    const rl = p.replLen[k]!;
    out.writeInt32BE(rl, to);
    to += 4;
    if (rl > 0) to += copyBytes(scratch, p.replStart[k]!, p.replStart[k]! + rl, out, to);
    from = lp + 4 + oldLen;
  }
  to += copyBytes(message, from, n, out, to);
  return to === newLength ? out : null;
}

// ---- COPY TO STDOUT

/** Plan for one COPY … TO STDOUT: `columns` in output order. */
export function planCopyMasking(
  columns: ColumnIdentity[],
  rules: MaskRule[],
  format: 'text' | 'csv' | 'binary',
  opts?: MaskOptions,
): MaskPlan {
  const specs = compileColumnSpecs(rules);
  const detectors = compileDetectors(rules);
  const actions = new Uint8Array(columns.length);
  const styles = new Uint8Array(columns.length);
  const masked: { name: string; rule: string }[] = [];
  for (let i = 0; i < columns.length; i++) {
    const c = columns[i]!;
    const rule = matchColumn(specs, c);
    const t = c.typeOid;
    if (rule) {
      styles[i] = STYLE_CODES[rule.style];
      masked.push({ name: c.column, rule: rule.name });
      // COPY carries no type information: without a typeOid the value is masked as text.
      if (t === undefined || TEXT_TYPES.has(t)) actions[i] = MASK_TEXT;
      else if (t === JSON_OID || t === JSONB_OID) actions[i] = MASK_JSON;
      else actions[i] = MASK_NULL;
    } else if (detectors && (t === undefined || !NON_TEXT_SCALARS.has(t))) {
      actions[i] = t === JSON_OID || t === JSONB_OID ? DETECT_JSON : DETECT_TEXT;
    }
  }
  return new Plan(actions, styles, detectors, resolveKey(opts), masked, format);
}

const BACKSLASH = 92;

/** Decode a COPY text-format field (backslash escapes) into its bytes. */
function copyUnescape(src: Buffer, s: number, e: number): Buffer {
  if (src.indexOf(BACKSLASH, s) < 0 || src.indexOf(BACKSLASH, s) >= e) return src.subarray(s, e);
  const out = Buffer.allocUnsafe(e - s);
  let o = 0;
  for (let i = s; i < e; i++) {
    const b = src[i]!;
    if (b !== BACKSLASH || i + 1 >= e) {
      out[o++] = b;
      continue;
    }
    const c = src[++i]!;
    if (c >= 48 && c <= 55) {
      let v = c - 48;
      for (let k = 0; k < 2 && i + 1 < e && src[i + 1]! >= 48 && src[i + 1]! <= 55; k++) v = v * 8 + (src[++i]! - 48);
      out[o++] = v & 0xff;
    } else if (c === 120 && i + 1 < e && isHex(src[i + 1]!)) {
      let v = hexVal(src[++i]!);
      if (i + 1 < e && isHex(src[i + 1]!)) v = v * 16 + hexVal(src[++i]!);
      out[o++] = v;
    } else {
      out[o++] = c === 98 ? 8 : c === 102 ? 12 : c === 110 ? 10 : c === 114 ? 13 : c === 116 ? 9 : c === 118 ? 11 : c;
    }
  }
  return out.subarray(0, o);
}
const isHex = (b: number) => (b >= 48 && b <= 57) || (b >= 65 && b <= 70) || (b >= 97 && b <= 102);
const hexVal = (b: number) => (b <= 57 ? b - 48 : (b | 0x20) - 87);

/** Encode bytes as a COPY text-format field. */
function copyEscape(v: Buffer): Buffer {
  let extra = 0;
  for (const b of v) if (b === BACKSLASH || b === 9 || b === 10 || b === 13) extra++;
  if (extra === 0) return v;
  const out = Buffer.allocUnsafe(v.length + extra);
  let o = 0;
  for (const b of v) {
    if (b === BACKSLASH || b === 9 || b === 10 || b === 13) {
      out[o++] = BACKSLASH;
      out[o++] = b === BACKSLASH ? BACKSLASH : b === 9 ? 116 : b === 10 ? 110 : 114;
    } else out[o++] = b;
  }
  return out;
}

/** Encode bytes as a CSV field (quoted when needed so that it never reads as NULL or splits). */
function csvEscape(v: Buffer): Buffer {
  let needs = v.length === 0;
  let quotes = 0;
  for (const b of v) {
    if (b === 34) quotes++;
    if (b === 44 || b === 34 || b === 10 || b === 13) needs = true;
  }
  if (!needs && !(v.length === 2 && v[0] === BACKSLASH && v[1] === 46)) return v;
  const out = Buffer.allocUnsafe(v.length + quotes + 2);
  let o = 0;
  out[o++] = 34;
  for (const b of v) {
    if (b === 34) out[o++] = 34;
    out[o++] = b;
  }
  out[o++] = 34;
  return out;
}

/** Mask one decoded COPY value; undefined = unchanged, NULL_VALUE = NULL, null = refuse. */
function maskCopyValue(p: Plan, i: number, v: Buffer): Buffer | null | undefined {
  const action = p.actions[i]!;
  if (action === DETECT_TEXT || action === DETECT_JSON) return detectValue(p, v, 0, v.length, action);
  return maskValue(p, i, v, 0, v.length);
}

/** COPY … TO STDOUT in text/csv format: mask one CopyData message ('d' …) holding whole rows. null = cannot mask safely. */
export function maskCopyData(message: Buffer, plan: MaskPlan): Buffer | null {
  const p = asPlan(plan);
  if (!p || p.copyFormat === undefined) return null;
  if (!p.active) return message;
  try {
    const n = message.length;
    if (n < 5 || message[0] !== 0x64 || message.readInt32BE(1) !== n - 1) return null;
    if (n === 5) return message;
    if (p.copyFormat === 'binary') return null; // binary COPY tuples carry no types: refuse
    const parts: Buffer[] = [];
    let from = 5;
    const put = (s: number, e: number, r: Buffer) => {
      parts.push(message.subarray(from, s), r);
      from = e;
    };
    const ok = p.copyFormat === 'csv' ? scanCsv(message, p, put) : scanText(message, p, put);
    if (!ok) return null;
    if (parts.length === 0) return message;
    parts.push(message.subarray(from, n));
    let len = 5;
    for (const b of parts) len += b.length;
    const out = Buffer.allocUnsafe(len);
    out[0] = 0x64;
    out.writeInt32BE(len - 1, 1);
    let o = 5;
    for (const b of parts) o += b.copy(out, o);
    return out;
  } catch {
    return null; // backstop: never leak on a bug
  }
}

type Put = (start: number, end: number, replacement: Buffer) => void;

/** Walk text-format rows (\t between fields, \n after each row, \N = NULL); false = refuse. */
function scanText(m: Buffer, p: Plan, put: Put): boolean {
  const n = m.length;
  if (m[n - 1] !== 10) return false; // a row continues in the next message: cannot mask it safely
  const cols = p.actions.length;
  let pos = 5;
  while (pos < n) {
    const lineEnd = m.indexOf(10, pos);
    let col = 0;
    let s = pos;
    for (;;) {
      let e = m.indexOf(9, s);
      if (e < 0 || e > lineEnd) e = lineEnd;
      if (col >= cols) return false;
      if (p.actions[col] !== PASS && !(e - s === 2 && m[s] === BACKSLASH && m[s + 1] === 78)) {
        const r = maskCopyValue(p, col, copyUnescape(m, s, e));
        if (r === null) return false;
        if (r !== undefined) put(s, e, r === NULL_VALUE ? Buffer.from('\\N') : copyEscape(r));
      }
      col++;
      if (e === lineEnd) break;
      s = e + 1;
    }
    if (col !== cols) return false;
    pos = lineEnd + 1;
  }
  return true;
}

/** Walk CSV rows (`,` between fields, `"` quoting with `""`, unquoted empty = NULL); false = refuse. */
function scanCsv(m: Buffer, p: Plan, put: Put): boolean {
  const n = m.length;
  const cols = p.actions.length;
  let pos = 5;
  while (pos < n) {
    let col = 0;
    for (;;) {
      if (col >= cols) return false;
      const s = pos;
      let value: Buffer;
      let isNull = false;
      if (m[pos] === 34) {
        const bytes: number[] = [];
        pos++;
        for (;;) {
          if (pos >= n) return false; // unterminated quote: the row spans messages
          const b = m[pos]!;
          if (b === 34) {
            if (m[pos + 1] === 34) {
              bytes.push(34);
              pos += 2;
              continue;
            }
            pos++;
            break;
          }
          bytes.push(b);
          pos++;
        }
        value = Buffer.from(bytes);
      } else {
        while (pos < n && m[pos] !== 44 && m[pos] !== 10 && !(m[pos] === 13 && m[pos + 1] === 10)) {
          if (m[pos] === 34) return false; // a quote inside an unquoted field: not PostgreSQL's CSV
          pos++;
        }
        value = m.subarray(s, pos);
        isNull = pos === s;
      }
      const e = pos;
      if (p.actions[col] !== PASS && !isNull) {
        const r = maskCopyValue(p, col, value);
        if (r === null) return false;
        if (r !== undefined) put(s, e, r === NULL_VALUE ? Buffer.alloc(0) : csvEscape(r));
      }
      col++;
      if (pos >= n) return false; // no row terminator: the row continues in the next message
      if (m[pos] === 44) {
        pos++;
        continue;
      }
      if (m[pos] === 13) pos++;
      if (m[pos] !== 10) return false;
      pos++;
      break;
    }
    if (col !== cols) return false;
  }
  return true;
}

// ---- audit

/** Mask a parameter value or any string for the audit record (detectors only). */
export function maskForAudit(value: string, rules: MaskRule[], opts?: MaskOptions): string {
  const det = compileDetectors(rules);
  if (!det) return value;
  const matches = findMatches(value, det);
  if (matches === CANNOT_SCAN) return '****';
  return applyMatches(value, matches, resolveKey(opts));
}
