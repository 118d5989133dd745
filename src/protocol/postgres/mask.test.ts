import { describe, expect, it } from 'vitest';
import type { Detector, MaskRule } from '#shared/config/policy.js';
import { JitError } from '#shared/errors/index.js';
import {
  type ColumnIdentity,
  configureMasking,
  describeMasking,
  type FieldInfo,
  maskCopyData,
  maskDataRow,
  maskForAudit,
  planCopyMasking,
  planMasking,
} from './mask.js';

const KEY = Buffer.alloc(32, 3);
const T = { text: 25, varchar: 1043, int4: 23, int8: 20, numeric: 1700, date: 1082, ts: 1114, json: 114, jsonb: 3802, citext: 91234 };

function rule(r: Partial<MaskRule> & { name?: string }): MaskRule {
  return { name: 'r', targets: ['*'], users: [], groups: [], columns: [], detectors: [], style: 'full', ...r };
}

/** A DataRow message from values (string → UTF-8, Buffer as is, null → NULL). */
function dataRow(values: (string | Buffer | null)[]): Buffer {
  const parts = values.map((v) => (v === null ? null : typeof v === 'string' ? Buffer.from(v) : v));
  const len = 4 + 2 + parts.reduce((n, p) => n + 4 + (p?.length ?? 0), 0);
  const out = Buffer.alloc(1 + len);
  out[0] = 0x44;
  out.writeInt32BE(len, 1);
  out.writeInt16BE(values.length, 5);
  let o = 7;
  for (const p of parts) {
    out.writeInt32BE(p === null ? -1 : p.length, o);
    o += 4;
    if (p) o += p.copy(out, o);
  }
  return out;
}

/** Parse a DataRow strictly (throws on any inconsistency). */
function parseRow(m: Buffer): (Buffer | null)[] {
  expect(m[0]).toBe(0x44);
  expect(m.readInt32BE(1)).toBe(m.length - 1);
  const n = m.readInt16BE(5);
  const out: (Buffer | null)[] = [];
  let o = 7;
  for (let i = 0; i < n; i++) {
    const len = m.readInt32BE(o);
    o += 4;
    if (len === -1) out.push(null);
    else {
      out.push(m.subarray(o, o + len));
      o += len;
    }
  }
  expect(o).toBe(m.length);
  return out;
}
const texts = (m: Buffer) => parseRow(m).map((v) => (v === null ? null : v.toString('utf8')));

// A small catalog: table OID 1000 = public.customers, 2000 = billing.accounts.
const CATALOG: Record<string, ColumnIdentity> = {
  '1000:1': { schema: 'public', table: 'customers', column: 'id' },
  '1000:2': { schema: 'public', table: 'customers', column: 'name' },
  '1000:3': { schema: 'public', table: 'customers', column: 'email' },
  '1000:4': { schema: 'public', table: 'customers', column: 'phone' },
  '1000:5': { schema: 'public', table: 'customers', column: 'card_number' },
  '1000:6': { schema: 'public', table: 'customers', column: 'created_at' },
  '1000:7': { schema: 'public', table: 'customers', column: 'notes' },
  '1000:8': { schema: 'public', table: 'customers', column: 'balance' },
  '1000:9': { schema: 'public', table: 'customers', column: 'profile' },
  '2000:1': { schema: 'billing', table: 'accounts', column: 'email' },
};
const resolve = (oid: number, att: number) => CATALOG[`${oid}:${att}`];
const field = (att: number, typeOid: number, format: 0 | 1 = 0, tableOid = 1000, name = `c${att}`): FieldInfo => ({
  name,
  tableOid,
  columnAttr: att,
  typeOid,
  format,
});

describe('planMasking', () => {
  it('is inactive when no column is masked and no detector exists (caller skips it)', () => {
    const plan = planMasking([field(1, T.int4), field(2, T.text)], resolve, [rule({ columns: ['customers.email'] })], { hashKey: KEY });
    expect(plan.active).toBe(false);
    const row = dataRow(['1', 'Alice']);
    expect(maskDataRow(row, plan)).toBe(row);
    expect(planMasking([field(2, T.text)], resolve, [], { hashKey: KEY }).active).toBe(false);
  });
  it.each([
    ['email', true],
    ['customers.email', true],
    ['public.customers.email', true],
    ['PUBLIC.Customers.EMAIL', true],
    ['billing.customers.email', false],
    ['orders.email', false],
    ['x.public.customers.email', false],
  ])('column spec %s masks public.customers.email: %s', (spec, masked) => {
    const plan = planMasking([field(3, T.text)], resolve, [rule({ columns: [spec] })], { hashKey: KEY });
    expect(plan.active).toBe(masked);
  });
  it('the first rule naming a column decides its style, and describeMasking names it', () => {
    const plan = planMasking(
      [field(3, T.text, 0, 1000, 'e')],
      resolve,
      [rule({ name: 'first', columns: ['email'], style: 'hash' }), rule({ name: 'second', columns: ['customers.email'] })],
      { hashKey: KEY },
    );
    expect(texts(maskDataRow(dataRow(['alice@example.com']), plan)!)[0]).toMatch(/^h:[0-9a-f]{12}$/);
    expect(describeMasking(plan)).toEqual({ columns: [{ name: 'e', rule: 'first' }], detectorRules: [] });
  });
  it('refuses a field whose table OID cannot be resolved while column rules exist (it may be a masked column under an alias)', () => {
    const plan = planMasking([field(1, T.text, 0, 9999)], resolve, [rule({ columns: ['email'] })], { hashKey: KEY });
    expect(maskDataRow(dataRow(['alice@example.com']), plan)).toBeNull();
    expect(texts(maskDataRow(dataRow([null]), plan)!)).toEqual([null]);
  });
  it('does not mask a computed field (table OID 0) by column rules', () => {
    const plan = planMasking([field(0, T.text, 0, 0)], resolve, [rule({ columns: ['email'] })], { hashKey: KEY });
    expect(plan.active).toBe(false);
  });
  it("regression: a function returning a masked table's rows (table OID 0) leaked the column — masked by name", () => {
    // SELECT * FROM all_customers() — RETURNS SETOF customers: the server reports no table for
    // the fields, so only their names can tie them to customers.email.
    const fields = [field(0, T.text, 0, 0, 'email'), field(0, T.text, 0, 0, 'name')];
    const plan = planMasking(fields, resolve, [rule({ columns: ['customers.email'], style: 'full' })], { hashKey: KEY });
    expect(texts(maskDataRow(dataRow(['alice@example.com', 'Alice']), plan)!)).toEqual(['****', 'Alice']);
    expect(describeMasking(plan).columns).toEqual([{ name: 'email', rule: 'r' }]);
  });
  it('rejects a hash key shorter than 16 bytes', () => {
    expect(() => planMasking([], resolve, [], { hashKey: 'short' })).toThrow(JitError);
    expect(() => configureMasking({ hashKey: Buffer.alloc(8) })).toThrow(JitError);
  });
});

describe('maskDataRow styles on text columns', () => {
  const customers = [field(1, T.int4), field(2, T.text), field(3, T.varchar), field(4, T.text), field(5, T.text), field(6, T.ts)];
  const row = ['42', 'Alice Smith', 'alice@example.com', '+44 20 7946 0958', '4111 1111 1111 1111', '2024-01-15 10:00:00'];
  const plan = (style: MaskRule['style'], cols = ['email', 'phone', 'card_number']) =>
    planMasking(customers, resolve, [rule({ columns: cols, style })], { hashKey: KEY });

  it('full: ****, other columns untouched', () => {
    expect(texts(maskDataRow(dataRow(row), plan('full'))!)).toEqual(['42', 'Alice Smith', '****', '****', '****', row[5]]);
  });
  it('partial: a hint per kind of value', () => {
    expect(texts(maskDataRow(dataRow(row), plan('partial'))!)).toEqual([
      '42',
      'Alice Smith',
      'a***@example.com',
      '******58',
      '**** **** **** 1111',
      row[5],
    ]);
  });
  it('partial on other text: first character + *** from 6 characters on, else ****', () => {
    const p = plan('partial', ['name']);
    expect(texts(maskDataRow(dataRow(['1', 'Alice Smith', 'a', 'b', 'c', 'd']), p)!)[1]).toBe('A***');
    expect(texts(maskDataRow(dataRow(['1', 'Bob', 'a', 'b', 'c', 'd']), p)!)[1]).toBe('****');
    expect(texts(maskDataRow(dataRow(['1', 'Émilie Zola', 'a', 'b', 'c', 'd']), p)!)[1]).toBe('É***');
    expect(texts(maskDataRow(dataRow(['1', '😀 smile face', 'a', 'b', 'c', 'd']), p)!)[1]).toBe('😀***');
  });
  it('hash: stable for equal values, different for different values and keys', () => {
    const a = texts(maskDataRow(dataRow(row), plan('hash'))!)[2]!;
    expect(a).toMatch(/^h:[0-9a-f]{12}$/);
    expect(texts(maskDataRow(dataRow(row), plan('hash'))!)[2]).toBe(a);
    const other = [...row];
    other[2] = 'bob@example.com';
    expect(texts(maskDataRow(dataRow(other), plan('hash'))!)[2]).not.toBe(a);
    const otherKey = planMasking(customers, resolve, [rule({ columns: ['email'], style: 'hash' })], { hashKey: Buffer.alloc(32, 4) });
    expect(texts(maskDataRow(dataRow(row), otherKey)!)[2]).not.toBe(a);
  });
  it('module-level key from configureMasking is used when the plan gets none', () => {
    configureMasking({ hashKey: KEY });
    const a = planMasking(customers, resolve, [rule({ columns: ['email'], style: 'hash' })]);
    expect(texts(maskDataRow(dataRow(row), a)!)[2]).toBe(texts(maskDataRow(dataRow(row), plan('hash'))!)[2]);
  });
  it('masks never reveal the original length', () => {
    for (const style of ['full', 'partial', 'hash'] as const) {
      const p = plan(style, ['name']);
      const lens = ['Alexander Hamilton-Smythe the Third', 'Alice Smith', 'Zoe Q.'].map(
        (n) => parseRow(maskDataRow(dataRow(['1', n, 'a', 'b', 'c', 'd']), p)!)[1]!.length,
      );
      expect(new Set(lens).size).toBe(1);
    }
  });
  it('NULL stays NULL; unchanged rows come back as the same buffer', () => {
    const r = dataRow(['1', 'x', null, null, null, null]);
    expect(maskDataRow(r, plan('full'))).toBe(r);
  });
  it('masks text-like columns sent in binary format (same bytes as text)', () => {
    const p = planMasking([field(3, T.text, 1)], resolve, [rule({ columns: ['email'] })], { hashKey: KEY });
    expect(texts(maskDataRow(dataRow(['alice@example.com']), p)!)).toEqual(['****']);
  });
});

describe('maskDataRow on non-text columns', () => {
  const r = [rule({ columns: ['balance', 'created_at', 'profile', 'id'], style: 'partial' })];
  it('text format: numbers, dates and unknown types become NULL (they would not parse as ****)', () => {
    const p = planMasking([field(8, T.numeric), field(6, T.date), field(1, T.citext)], resolve, r, { hashKey: KEY });
    expect(texts(maskDataRow(dataRow(['1234.50', '2024-01-15', 'x']), p)!)).toEqual([null, null, null]);
  });
  it('binary format: a masked non-text value is refused, a NULL passes', () => {
    const p = planMasking([field(1, T.int4, 1)], resolve, r, { hashKey: KEY });
    expect(maskDataRow(dataRow([Buffer.from([0, 0, 0, 42])]), p)).toBeNull();
    expect(texts(maskDataRow(dataRow([null]), p)!)).toEqual([null]);
  });
  it('json/jsonb stay valid JSON: a JSON string mask, jsonb binary keeps its version byte', () => {
    const p = planMasking([field(9, T.json), field(9, T.jsonb), field(9, T.jsonb, 1)], resolve, [rule({ columns: ['profile'] })], {
      hashKey: KEY,
    });
    const out = parseRow(maskDataRow(dataRow(['{"a":1}', '{"a": 1}', Buffer.from('\x01{"a": 1}', 'latin1')]), p)!);
    expect(JSON.parse(out[0]!.toString())).toBe('****');
    expect(JSON.parse(out[1]!.toString())).toBe('****');
    expect(out[2]![0]).toBe(1);
    expect(JSON.parse(out[2]!.subarray(1).toString())).toBe('****');
    const h = planMasking([field(9, T.json)], resolve, [rule({ columns: ['profile'], style: 'hash' })], { hashKey: KEY });
    expect(JSON.parse(parseRow(maskDataRow(dataRow(['{"a":1}']), h)!)[0]!.toString())).toMatch(/^h:[0-9a-f]{12}$/);
  });
});

describe('maskDataRow detectors', () => {
  const det = (d: Detector[], style: MaskRule['style'] = 'full') => [rule({ name: 'pii', detectors: d, style })];
  it('mask an address inside a free-text note in place, keeping multi-byte text around it', () => {
    const p = planMasking([field(7, T.text)], resolve, det(['email'], 'partial'), { hashKey: KEY });
    expect(texts(maskDataRow(dataRow(['Größe 42 — écrire à jean.dupont@exemple.fr ✓']), p)!)).toEqual([
      'Größe 42 — écrire à j***@exemple.fr ✓',
    ]);
    expect(describeMasking(p).detectorRules).toEqual(['pii']);
  });
  it('do not touch numbers, even a Luhn-valid bigint', () => {
    const p = planMasking([field(1, T.int8), field(7, T.text)], resolve, det(['credit-card']), { hashKey: KEY });
    const r = dataRow(['4111111111111111', 'no card here']);
    expect(maskDataRow(r, p)).toBe(r);
  });
  it('leave a row without matches as the same buffer', () => {
    const p = planMasking([field(7, T.text)], resolve, det(['email', 'phone']), { hashKey: KEY });
    const r = dataRow(['nothing to see']);
    expect(maskDataRow(r, p)).toBe(r);
  });
  it('json: in place inside strings, whole value when a match is outside a string', () => {
    const p = planMasking([field(9, T.jsonb), field(9, T.json)], resolve, det(['email', 'credit-card']), { hashKey: KEY });
    const out = texts(maskDataRow(dataRow(['{"mail": "a@example.com", "n": 1}', '{"card": 4111111111111111}']), p)!);
    expect(JSON.parse(out[0]!)).toEqual({ mail: '****', n: 1 });
    expect(JSON.parse(out[1]!)).toBe('****');
  });
  it('unknown type: in place in text format, refused in binary', () => {
    const t = planMasking([field(7, T.citext, 0)], resolve, det(['email']), { hashKey: KEY });
    expect(texts(maskDataRow(dataRow(['x a@example.com']), t)!)).toEqual(['x ****']);
    const b = planMasking([field(7, T.citext, 1)], resolve, det(['email']), { hashKey: KEY });
    expect(maskDataRow(dataRow(['x a@example.com']), b)).toBeNull();
    const clean = dataRow(['nothing']);
    expect(maskDataRow(clean, b)).toBe(clean);
  });
  it('a value a custom regex cannot scan safely refuses the row', () => {
    const p = planMasking([field(7, T.text)], resolve, det([{ regex: '(a+)+$' }]), { hashKey: KEY });
    expect(maskDataRow(dataRow(['aaaa']), p)).toBeNull();
  });
  it('non-UTF-8 bytes (another client_encoding) round-trip untouched around a match', () => {
    const p = planMasking([field(7, T.text)], resolve, det(['email']), { hashKey: KEY });
    const latin1 = Buffer.from('caf\xe9 a@example.com \xff', 'latin1');
    expect(parseRow(maskDataRow(dataRow([latin1]), p)!)[0]).toEqual(Buffer.from('caf\xe9 **** \xff', 'latin1'));
  });
});

describe('maskDataRow on malformed messages', () => {
  const p = planMasking([field(1, T.int4), field(3, T.text)], resolve, [rule({ columns: ['email'] })], { hashKey: KEY });
  const good = dataRow(['1', 'alice@example.com']);
  const variants: [string, Buffer][] = [
    ['wrong type byte', Buffer.concat([Buffer.from('T'), good.subarray(1)])],
    [
      'length larger than the message',
      (() => {
        const b = Buffer.from(good);
        b.writeInt32BE(b.length + 10, 1);
        return b;
      })(),
    ],
    [
      'length smaller than the message',
      (() => {
        const b = Buffer.from(good);
        b.writeInt32BE(b.length - 3, 1);
        return b;
      })(),
    ],
    ['truncated', good.subarray(0, good.length - 3)],
    [
      'value length overruns',
      (() => {
        const b = dataRow(['1', 'alice@example.com']);
        b.writeInt32BE(9999, 7 + 4 + 1);
        return b;
      })(),
    ],
    [
      'negative length other than -1',
      (() => {
        const b = dataRow(['1', 'alice@example.com']);
        b.writeInt32BE(-2, 7 + 4 + 1);
        return b;
      })(),
    ],
    ['column count mismatch', dataRow(['1', 'alice@example.com', 'x'])],
    ['too few columns', dataRow(['1'])],
    [
      'trailing bytes',
      (() => {
        const b = Buffer.concat([good, Buffer.from('xx')]);
        b.writeInt32BE(b.length - 1, 1);
        return b;
      })(),
    ],
    ['empty', Buffer.alloc(0)],
    ['header only', Buffer.from([0x44, 0, 0, 0, 4])],
  ];
  it.each(variants)('%s → null', (_n, m) => {
    expect(maskDataRow(m, p)).toBeNull();
  });
  it('a plan from elsewhere is refused', () => {
    expect(maskDataRow(good, { active: true })).toBeNull();
  });

  it('random mutations never throw and never leak a masked value', () => {
    const secretEmail = 'alice@example.com';
    const card = '4111111111111111';
    const fields = [field(1, T.int4), field(3, T.text), field(5, T.text, 1), field(7, T.text), field(8, T.numeric)];
    const plan = planMasking(
      fields,
      resolve,
      [rule({ columns: ['email', 'card_number', 'balance'] }), rule({ name: 'pii', detectors: ['email'] })],
      {
        hashKey: KEY,
      },
    );
    const base = dataRow(['7', secretEmail, card, `note ${secretEmail}`, '12.50']);
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let nonNull = 0;
    for (let iter = 0; iter < 20000; iter++) {
      let m = Buffer.from(base);
      const k = 1 + rnd(4);
      for (let j = 0; j < k; j++) {
        const op = rnd(5);
        if (op === 0) m[rnd(m.length)] = rnd(256);
        else if (op === 1) m.writeInt32BE([-1, -2, 0, 3, 17, 1 << 30, -2147483648][rnd(7)]!, Math.min(rnd(m.length), m.length - 4));
        else if (op === 2) m = m.subarray(0, rnd(m.length + 1));
        else if (op === 3) m = Buffer.concat([m, Buffer.from([rnd(256), rnd(256), rnd(256)])]);
        else if (m.length >= 5) m.writeInt32BE(m.length - 1, 1); // make the outer length consistent again
      }
      const out = maskDataRow(m, plan);
      if (out === null) continue;
      nonNull++;
      if (out === m) {
        // Unchanged: then the masked columns must already be NULL or not contain the secret.
      }
      const vals = parseRow(out);
      expect(vals.length).toBe(5);
      for (const i of [1, 2, 4]) expect(vals[i] === null || vals[i]!.toString() === '****').toBe(true);
      expect(out.includes(secretEmail)).toBe(false);
      expect(out.includes(card)).toBe(false);
    }
    expect(nonNull).toBeGreaterThan(100); // the loop does exercise the masking path
  });
});

describe('maskCopyData', () => {
  const cols: ColumnIdentity[] = [
    { schema: 'public', table: 'customers', column: 'id' },
    { schema: 'public', table: 'customers', column: 'email' },
    { schema: 'public', table: 'customers', column: 'notes' },
  ];
  const copy = (s: string | Buffer) => {
    const body = typeof s === 'string' ? Buffer.from(s) : s;
    const m = Buffer.alloc(5 + body.length);
    m[0] = 0x64;
    m.writeInt32BE(4 + body.length, 1);
    body.copy(m, 5);
    return m;
  };
  const body = (m: Buffer | null) => {
    expect(m).not.toBeNull();
    expect(m![0]).toBe(0x64);
    expect(m!.readInt32BE(1)).toBe(m!.length - 1);
    return m!.subarray(5).toString();
  };
  const rules = [rule({ columns: ['customers.email'], style: 'partial' }), rule({ name: 'pii', detectors: ['credit-card'] })];

  it('text: masks one row, and several rows in one message', () => {
    const p = planCopyMasking(cols, rules, 'text', { hashKey: KEY });
    expect(body(maskCopyData(copy('1\talice@example.com\thello\n'), p))).toBe('1\ta***@example.com\thello\n');
    expect(body(maskCopyData(copy('1\ta@x.io\tcard 4111111111111111\n2\t\\N\tok\n'), p))).toBe('1\ta***@x.io\tcard ****\n2\t\\N\tok\n');
  });
  it('text: decodes escapes before masking and re-escapes the output', () => {
    const p = planCopyMasking(cols, [rule({ columns: ['email'], style: 'hash' })], 'text', { hashKey: KEY });
    const dr = planMasking([field(3, T.text)], resolve, [rule({ columns: ['email'], style: 'hash' })], { hashKey: KEY });
    const expected = texts(maskDataRow(dataRow(['a\tb\\c@x.io']), dr)!)[0];
    expect(body(maskCopyData(copy('1\ta\\tb\\\\c@x.io\tnote\\twith tab\n'), p))).toBe(`1\t${expected}\tnote\\twith tab\n`);
    const partial = planCopyMasking(cols, [rule({ columns: ['email'], style: 'partial' })], 'text', { hashKey: KEY });
    expect(body(maskCopyData(copy('1\tab@x\\\\y.io\tz\n'), partial))).toBe('1\ta***@x\\\\y.io\tz\n');
  });
  it('text: detectors see decoded values (octal and hex escapes)', () => {
    const p = planCopyMasking(cols, [rule({ detectors: ['email'] })], 'text', { hashKey: KEY });
    expect(body(maskCopyData(copy('1\ta\\100x.io\tb\\x40y.io\n'), p))).toBe('1\t****\t****\n');
  });
  it('text: refuses partial rows, wrong column counts and binary COPY', () => {
    const p = planCopyMasking(cols, rules, 'text', { hashKey: KEY });
    expect(maskCopyData(copy('1\talice@example.com\thel'), p)).toBeNull();
    expect(maskCopyData(copy('1\talice@example.com\n'), p)).toBeNull();
    expect(maskCopyData(copy('1\ta\tb\tc\n'), p)).toBeNull();
    expect(maskCopyData(copy('PGCOPY\n\xff\r\n\0'), planCopyMasking(cols, rules, 'binary', { hashKey: KEY }))).toBeNull();
  });
  it('inactive plans and empty messages pass through unchanged', () => {
    const p = planCopyMasking(cols, [rule({ columns: ['orders.total'] })], 'text', { hashKey: KEY });
    expect(p.active).toBe(false);
    const m = copy('1\ta@x.io\tn\n');
    expect(maskCopyData(m, p)).toBe(m);
    const e = copy('');
    expect(maskCopyData(e, planCopyMasking(cols, rules, 'text', { hashKey: KEY }))).toBe(e);
  });
  it('non-text column types (when known) become \\N', () => {
    const typed = [{ ...cols[0]!, typeOid: 23 }, cols[1]!, cols[2]!];
    const p = planCopyMasking(typed, [rule({ columns: ['id'] })], 'text', { hashKey: KEY });
    expect(body(maskCopyData(copy('1\ta\tb\n'), p))).toBe('\\N\ta\tb\n');
  });
  it('csv: quoted fields, "" escapes, commas and newlines inside quotes, NULL vs empty string', () => {
    const p = planCopyMasking(cols, rules, 'csv', { hashKey: KEY });
    expect(body(maskCopyData(copy('1,alice@example.com,hello\n'), p))).toBe('1,a***@example.com,hello\n');
    expect(body(maskCopyData(copy('1,"al""i,ce@ex.io","a, ""b""\ncard 4111111111111111"\n2,,""\n'), p))).toBe(
      '1,a***@ex.io,"a, ""b""\ncard ****"\n2,,""\n',
    );
  });
  it('csv: refuses rows that continue in the next message or are not PostgreSQL CSV', () => {
    const p = planCopyMasking(cols, rules, 'csv', { hashKey: KEY });
    expect(maskCopyData(copy('1,"alice@example.com,x\n'), p)).toBeNull();
    expect(maskCopyData(copy('1,alice@example.com,x'), p)).toBeNull();
    expect(maskCopyData(copy('1,al"ice,x\n'), p)).toBeNull();
    expect(maskCopyData(copy('1,a,b,c\n'), p)).toBeNull();
  });
  it('random mutations never throw and never leak the masked column', () => {
    const p = planCopyMasking(cols, [rule({ columns: ['email'] })], 'csv', { hashKey: KEY });
    const tp = planCopyMasking(cols, [rule({ columns: ['email'] })], 'text', { hashKey: KEY });
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const alphabet = Buffer.from(',"\n\t\\Nab@x.1');
    for (let i = 0; i < 20000; i++) {
      const base = Buffer.from(
        i % 2 ? '1,"alice@example.com",n\n2,bob@example.com,""\n' : '1\talice@example.com\tn\n2\tbob@example.com\t\\N\n',
      );
      const b = Buffer.from(base);
      for (let k = 0; k < 1 + rnd(3); k++) b[rnd(b.length)] = alphabet[rnd(alphabet.length)]!;
      const out = maskCopyData(copy(b), i % 2 ? p : tp);
      if (out === null) continue;
      expect(out.readInt32BE(1)).toBe(out.length - 1);
      expect(out.includes('alice@example.com')).toBe(false);
      expect(out.includes('bob@example.com')).toBe(false);
    }
  });
});

describe('maskForAudit', () => {
  it('masks detected values in parameters and statement text with the rule style', () => {
    const rules = [rule({ detectors: ['email'], style: 'partial' }), rule({ detectors: ['credit-card'] })];
    expect(maskForAudit("insert into t values ('alice@example.com', '4111111111111111')", rules, { hashKey: KEY })).toBe(
      "insert into t values ('a***@example.com', '****')",
    );
  });
  it('returns the value unchanged without detector rules, **** when it cannot be scanned', () => {
    expect(maskForAudit('alice@example.com', [rule({ columns: ['email'] })])).toBe('alice@example.com');
    expect(maskForAudit('aaaa', [rule({ detectors: [{ regex: '(a+)+' }] })])).toBe('****');
  });
});

describe('benchmark (prints, does not assert timing)', () => {
  it('customers rows: email partial + card full over 200k rows', () => {
    const fields = [field(1, T.int4), field(2, T.text), field(3, T.text), field(4, T.text), field(5, T.text), field(6, T.ts)];
    const plan = planMasking(
      fields,
      resolve,
      [rule({ columns: ['email'], style: 'partial' }), rule({ name: 'c', columns: ['card_number'] })],
      {
        hashKey: KEY,
      },
    );
    const rows: Buffer[] = [];
    for (let i = 0; i < 1000; i++) {
      rows.push(
        dataRow([
          String(i),
          `Customer Number ${i}`,
          `user${i}@example.com`,
          `+44 20 7946 ${1000 + i}`,
          '4111 1111 1111 1111',
          '2024-01-15 10:00:00.123456',
        ]),
      );
    }
    const N = 200_000;
    const run = (fn: (m: Buffer) => Buffer | null) => {
      let bytes = 0;
      const t0 = performance.now();
      for (let i = 0; i < N; i++) bytes += fn(rows[i % 1000]!)!.length;
      return { rps: N / ((performance.now() - t0) / 1000), bytes };
    };
    const detectPlan = planMasking(fields, resolve, [rule({ detectors: ['email', 'credit-card', 'phone'] })], { hashKey: KEY });
    // Interleaved rounds, best of three: the machine may be shared, so single runs are noisy.
    let masked = { rps: 0, bytes: 0 };
    let copyBase = { rps: 0, bytes: 0 };
    let detected = { rps: 0, bytes: 0 };
    for (let round = 0; round < 3; round++) {
      const m = run((r) => maskDataRow(r, plan));
      if (m.rps > masked.rps) masked = m;
      const c = run((r) => Buffer.from(r)); // a per-row copy: the least a relay that reframes costs
      if (c.rps > copyBase.rps) copyBase = c;
      const d = run((r) => maskDataRow(r, detectPlan));
      if (d.rps > detected.rps) detected = d;
    }
    const fmt = (x: { rps: number }) => `${Math.round(x.rps).toLocaleString('en')} rows/s (${Math.round(1e9 / x.rps)} ns/row)`;
    console.log(
      `maskDataRow, email partial + card full: ${fmt(masked)}\n` +
        `maskDataRow, detectors email+card+phone on every text column: ${fmt(detected)}\n` +
        `baseline Buffer copy per row: ${fmt(copyBase)}`,
    );
    expect(masked.bytes).toBeGreaterThan(0);
  });
});
