/**
 * Content detectors for masking: find e-mail addresses, payment card numbers (Luhn-valid),
 * phone numbers, IBANs (mod-97 valid) and custom patterns inside text, and replace each match in
 * place according to its rule's style. Pure: no I/O, never logs or returns what it masked except
 * through the masked output itself.
 *
 * Why the built-in detectors are hand-written scanners or regexes with bounded quantifiers only:
 * they run on every text value of a result, so their cost must stay linear in the value length
 * whatever the (hostile) content. Custom patterns come from the policy author and are screened by
 * checkCustomPattern (no nested quantifiers, no backreferences) and only run on values up to
 * MAX_CUSTOM_SCAN_CHARS; a longer value cannot be scanned safely and is refused by the caller.
 */
import { createHmac } from 'node:crypto';
import type { Detector, MaskRule } from '#shared/config/policy.js';

export type MaskStyle = 'full' | 'partial' | 'hash';
export type DetectorKind = 'email' | 'credit-card' | 'phone' | 'iban' | 'custom';

/** Longest value (in UTF-16 units) a custom regex is run on; longer values are refused. */
export const MAX_CUSTOM_SCAN_CHARS = 64 * 1024;
/** Longest custom pattern accepted (the policy schema allows 500). */
const MAX_CUSTOM_PATTERN = 500;

/** A match found in a string: [start, end) in UTF-16 units. */
export interface DetectorMatch {
  start: number;
  end: number;
  kind: DetectorKind;
  style: MaskStyle;
}

/** `h:` + the first 12 hex digits of HMAC-SHA256(key, data): stable per key, not reversible. */
export function hashTag(key: Uint8Array, data: Uint8Array | string): string {
  return 'h:' + createHmac('sha256', key).update(data).digest('hex').slice(0, 12);
}

/** Luhn checksum over a string of ASCII digits (other characters make it invalid). */
export function luhnValid(digits: string): boolean {
  if (digits.length === 0) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** IBAN check: 2 letters, 2 check digits, 11–30 alphanumerics, ISO 13616 mod-97 = 1. Spaces are ignored, case-insensitive. */
export function ibanValid(value: string): boolean {
  const s = value.replace(/ /g, '').toUpperCase();
  if (s.length < 15 || s.length > 34) return false;
  if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]+$/.test(s)) return false;
  const check = Number(s.slice(2, 4));
  if (check < 2 || check > 98) return false;
  const rearranged = s.slice(4) + s.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const c = rearranged.charCodeAt(i);
    if (c <= 57) rem = (rem * 10 + (c - 48)) % 97;
    else rem = (rem * 100 + (c - 55)) % 97;
  }
  return rem === 1;
}

/**
 * Screen a custom detector pattern. Returns a reason when it is refused, undefined when it may be
 * used. Refused: invalid syntax, longer than 500 characters, backreferences, and quantified groups
 * that themselves contain a quantifier or an alternation (the shapes behind catastrophic
 * backtracking such as `(a+)+` or `(a|aa)*`). The control plane should run this at policy load.
 */
export function checkCustomPattern(pattern: string): string | undefined {
  if (pattern.length === 0 || pattern.length > MAX_CUSTOM_PATTERN) return 'pattern must be 1–500 characters';
  try {
    new RegExp(pattern, 'g');
  } catch {
    return 'not a valid JavaScript regular expression';
  }
  if (/\\[1-9]|\\k</.test(pattern)) return 'backreferences are not allowed';
  // Walk the pattern tracking groups; a group that contains a quantifier or `|` and is itself
  // repeated (*, +, {n,m}) can backtrack exponentially.
  const stack: { risky: boolean }[] = [];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      continue;
    }
    if (c === '(') {
      stack.push({ risky: false });
      if (pattern[i + 1] === '?') {
        // Skip the group prefix (?: (?= (?! (?<= (?<! (?<name> so its '?' is not read as a quantifier.
        const after = pattern[i + 2];
        if (after === '<' && pattern[i + 3] !== '=' && pattern[i + 3] !== '!') i = Math.max(i + 2, pattern.indexOf('>', i));
        else i += after === '<' ? 3 : 2;
      }
      continue;
    }
    if (c === '*' || c === '+' || c === '?' || c === '{' || c === '|') {
      const top = stack[stack.length - 1];
      if (top) top.risky = true;
      continue;
    }
    if (c === ')') {
      const group = stack.pop();
      const next = pattern[i + 1];
      if (group?.risky && (next === '*' || next === '+' || next === '{')) {
        return 'nested quantifiers or alternation under a quantifier are not allowed';
      }
      const parent = stack[stack.length - 1];
      if (group?.risky && parent) parent.risky = true;
    }
  }
  return undefined;
}

interface CompiledCustom {
  re: RegExp | null; // null: refused pattern → values it would scan are refused (fail closed)
  style: MaskStyle;
}

/** The detectors of a set of mask rules, compiled once (per session rules). */
export interface CompiledDetectors {
  email?: MaskStyle;
  card?: MaskStyle;
  phone?: MaskStyle;
  iban?: MaskStyle;
  custom: CompiledCustom[];
  /** Least number of ASCII digits a value needs before a numeric detector can match. */
  minDigits: number;
  /** Rule names that carry detectors (for the audit record). */
  ruleNames: string[];
}

const compiledCache = new WeakMap<readonly MaskRule[], CompiledDetectors | null>();

/** Compile the detectors of `rules` (first rule naming a detector decides its style); undefined when there are none. Cached per rules array. */
export function compileDetectors(rules: readonly MaskRule[]): CompiledDetectors | undefined {
  const cached = compiledCache.get(rules);
  if (cached !== undefined) return cached ?? undefined;
  const out: CompiledDetectors = { custom: [], minDigits: Number.POSITIVE_INFINITY, ruleNames: [] };
  let any = false;
  for (const rule of rules) {
    if (rule.detectors.length === 0) continue;
    out.ruleNames.push(rule.name);
    for (const d of rule.detectors as Detector[]) {
      any = true;
      const style = rule.style;
      if (typeof d === 'string') {
        if (d === 'email') out.email ??= style;
        else if (d === 'credit-card') out.card ??= style;
        else if (d === 'phone') out.phone ??= style;
        else if (d === 'iban') out.iban ??= style;
      } else {
        const refused = checkCustomPattern(d.regex);
        out.custom.push({ re: refused ? null : new RegExp(d.regex, 'g'), style });
      }
    }
  }
  if (out.card) out.minDigits = Math.min(out.minDigits, 13);
  if (out.phone) out.minDigits = Math.min(out.minDigits, 8);
  if (out.iban) out.minDigits = Math.min(out.minDigits, 2);
  compiledCache.set(rules, any ? out : null);
  return any ? out : undefined;
}

/** Families of detectors, as bits of the mask mayMatch returns. */
export const MAY_EMAIL = 1;
export const MAY_CARD = 2;
export const MAY_PHONE = 4;
export const MAY_IBAN = 8;
export const MAY_CUSTOM = 16;
export const MAY_ALL = 31;

/**
 * Cheap byte-level pre-check: which detectors can match in bytes[start, end)? 0 lets callers skip
 * decoding values that cannot contain a match (no '@', too few digits, no custom pattern).
 */
export function mayMatch(det: CompiledDetectors, bytes: Uint8Array, start: number, end: number): number {
  let digits = 0;
  let at = false;
  for (let i = start; i < end; i++) {
    const b = bytes[i]!;
    if (b >= 48 && b <= 57) digits++;
    else if (b === 64) at = true;
  }
  let may = det.custom.length > 0 ? MAY_CUSTOM : 0;
  if (at && det.email) may |= MAY_EMAIL;
  if (det.card && digits >= 13) may |= MAY_CARD;
  if (det.phone && digits >= 8) may |= MAY_PHONE;
  if (det.iban && digits >= 2 && end - start >= 15) may |= MAY_IBAN;
  return may;
}

const LOCAL_CHAR = new Uint8Array(128);
const DOMAIN_CHAR = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9._%+-]/.test(ch)) LOCAL_CHAR[c] = 1;
  if (/[A-Za-z0-9.-]/.test(ch)) DOMAIN_CHAR[c] = 1;
}
/** Non-ASCII letters (internationalised addresses), excluding Unicode spaces and punctuation blocks. */
const isWideLetter = (c: number) =>
  c >= 0xc0 &&
  !(c >= 0x2000 && c <= 0x206f) &&
  !(c >= 0x3000 && c <= 0x303f) &&
  !(c >= 0xfe30 && c <= 0xfe4f) &&
  !(c >= 0xff00 && c <= 0xff0f);
const isLocal = (c: number) => (c < 128 ? LOCAL_CHAR[c] === 1 : isWideLetter(c));
const isDomain = (c: number) => (c < 128 ? DOMAIN_CHAR[c] === 1 : isWideLetter(c));

function findEmails(s: string, style: MaskStyle, out: DetectorMatch[]): void {
  let from = 0;
  let floor = 0;
  for (;;) {
    const at = s.indexOf('@', from);
    if (at < 0) return;
    from = at + 1;
    let a = at;
    while (a > floor && at - a < 64 && isLocal(s.charCodeAt(a - 1))) a--;
    while (a < at && s.charCodeAt(a) === 46) a++; // a local part does not start with '.'
    if (a === at) continue;
    let b = at + 1;
    while (b < s.length && b - at - 1 < 253 && isDomain(s.charCodeAt(b))) b++;
    while (b > at + 1 && (s.charCodeAt(b - 1) === 46 || s.charCodeAt(b - 1) === 45)) b--; // "mail a@b.com." ends a sentence
    const domain = s.slice(at + 1, b);
    const dot = domain.lastIndexOf('.');
    if (dot <= 0 || domain.includes('..') || domain.startsWith('-')) continue;
    if (!/^\p{L}{2,24}$/u.test(domain.slice(dot + 1))) continue;
    out.push({ start: a, end: b, kind: 'email', style });
    floor = b;
    from = b;
  }
}

// Bounded quantifiers only: at most 19 digits with optional single separators.
const CARD_RE = /(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)/g;
function findCards(s: string, style: MaskStyle, out: DetectorMatch[]): void {
  CARD_RE.lastIndex = 0;
  for (let m = CARD_RE.exec(s); m !== null; m = CARD_RE.exec(s)) {
    if (luhnValid(m[0].replace(/[ -]/g, ''))) {
      out.push({ start: m.index, end: m.index + m[0].length, kind: 'credit-card', style });
    } else {
      CARD_RE.lastIndex = m.index + 1; // a valid number may start at a later group
    }
  }
}

const PHONE_RE = /(?<![\w+.-])(\+\d{1,3}[ .-]?)?(\(\d{1,4}\)[ .-]?)?\d{1,15}(?:[ .-]\d{1,15}){0,5}(?![\w]|[.-]\d)/g;
function isPhone(text: string, plus: boolean, parens: boolean): boolean {
  const digits = text.replace(/\D/g, '').length;
  if (digits < 8 || digits > 15) return false;
  const separated = /[ .-]/.test(text);
  if (!plus && !parens && !separated && digits < 10) return false; // a bare short number is an id, not a phone
  if (!plus && !parens) {
    const groups = text.split(/[ .-]/);
    const lens = groups.map((g) => g.length).join(',');
    if (lens === '4,2,2' || lens === '2,2,4') return false; // dates
    if (/^\d+\.\d+$/.test(text)) return false; // decimals
    if (groups.length === 4 && text.includes('.') && groups.every((g) => g.length <= 3)) return false; // IPv4
  }
  return true;
}
function findPhones(s: string, style: MaskStyle, out: DetectorMatch[]): void {
  PHONE_RE.lastIndex = 0;
  for (let m = PHONE_RE.exec(s); m !== null; m = PHONE_RE.exec(s)) {
    if (isPhone(m[0], m[1] !== undefined, m[2] !== undefined)) {
      out.push({ start: m.index, end: m.index + m[0].length, kind: 'phone', style });
    }
  }
}

const IBAN_RE = /(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])/g;
function findIbans(s: string, style: MaskStyle, out: DetectorMatch[]): void {
  IBAN_RE.lastIndex = 0;
  for (let m = IBAN_RE.exec(s); m !== null; m = IBAN_RE.exec(s)) {
    // The greedy match may swallow a following space-separated word: also try each group boundary.
    let end = m[0].length;
    let found = -1;
    while (end > 0) {
      if (ibanValid(m[0].slice(0, end))) {
        found = end;
        break;
      }
      end = m[0].lastIndexOf(' ', end - 1);
    }
    if (found > 0) {
      out.push({ start: m.index, end: m.index + found, kind: 'iban', style });
      IBAN_RE.lastIndex = m.index + found;
    }
  }
}

/** Why a value could not be scanned: the caller must refuse the result rather than pass it on. */
export const CANNOT_SCAN = Symbol('cannot-scan');

/** All detector matches in `s`, sorted, non-overlapping (earliest start wins, then the longest). */
export function findMatches(s: string, det: CompiledDetectors, may = MAY_ALL): DetectorMatch[] | typeof CANNOT_SCAN {
  const all: DetectorMatch[] = [];
  if (det.email && may & MAY_EMAIL && s.includes('@')) findEmails(s, det.email, all);
  if (det.card && may & MAY_CARD) findCards(s, det.card, all);
  if (det.phone && may & MAY_PHONE) findPhones(s, det.phone, all);
  if (det.iban && may & MAY_IBAN) findIbans(s, det.iban, all);
  if (det.custom.length > 0 && may & MAY_CUSTOM) {
    if (s.length > MAX_CUSTOM_SCAN_CHARS) return CANNOT_SCAN;
    for (const c of det.custom) {
      if (c.re === null) return CANNOT_SCAN;
      c.re.lastIndex = 0;
      for (let m = c.re.exec(s); m !== null; m = c.re.exec(s)) {
        if (m[0].length === 0) {
          c.re.lastIndex++; // empty matches mask nothing; step over them
          continue;
        }
        all.push({ start: m.index, end: m.index + m[0].length, kind: 'custom', style: c.style });
      }
    }
  }
  if (all.length <= 1) return all;
  all.sort((x, y) => x.start - y.start || y.end - x.end);
  const kept: DetectorMatch[] = [];
  let last = -1;
  for (const m of all) {
    if (m.start >= last) {
      kept.push(m);
      last = m.end;
    }
  }
  return kept;
}

/** Fixed-width replacement of one detected value (never reveals its length). */
export function renderMatch(text: string, kind: DetectorKind, style: MaskStyle, hashKey: Uint8Array): string {
  if (style === 'hash') return hashTag(hashKey, normalizeForHash(text, kind));
  if (style === 'full') return '****';
  switch (kind) {
    case 'email': {
      const at = text.lastIndexOf('@');
      return String.fromCodePoint(text.codePointAt(0)!) + '***' + text.slice(at);
    }
    case 'credit-card':
      return '**** **** **** ' + text.replace(/\D/g, '').slice(-4);
    case 'phone':
      return '******' + text.replace(/\D/g, '').slice(-2);
    case 'iban': {
      const compact = text.replace(/ /g, '').toUpperCase();
      return compact.slice(0, 2) + '** **** ' + compact.slice(-4);
    }
    default:
      return '****';
  }
}

/** The same e-mail, card or IBAN written differently hashes the same. */
function normalizeForHash(text: string, kind: DetectorKind): string {
  switch (kind) {
    case 'email':
      return text.toLowerCase();
    case 'credit-card':
    case 'phone':
      return text.replace(/\D/g, '');
    case 'iban':
      return text.replace(/ /g, '').toUpperCase();
    default:
      return text;
  }
}

/** Replace every match in `s`; `s` itself when there is none. */
export function applyMatches(s: string, matches: readonly DetectorMatch[], hashKey: Uint8Array): string {
  if (matches.length === 0) return s;
  let out = '';
  let pos = 0;
  for (const m of matches) {
    out += s.slice(pos, m.start) + renderMatch(s.slice(m.start, m.end), m.kind, m.style, hashKey);
    pos = m.end;
  }
  return out + s.slice(pos);
}

/** Mask every detected value in `s`; returns `s` unchanged when nothing matched, CANNOT_SCAN when it cannot be scanned safely. */
export function maskText(s: string, det: CompiledDetectors, hashKey: Uint8Array): string | typeof CANNOT_SCAN {
  const matches = findMatches(s, det);
  if (matches === CANNOT_SCAN) return CANNOT_SCAN;
  return applyMatches(s, matches, hashKey);
}
