/**
 * Masking corpus: runs every row of masking.yaml through the real masking code (DataRow, COPY, audit)
 * and checks the exact output a client would receive. Rows are never deleted.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Detector, type MaskRule } from '#shared/config/policy.js';
import { maskCopyData, maskDataRow, maskForAudit, planCopyMasking, planMasking } from '#protocol/postgres/mask.js';

const TYPES = {
  text: 25,
  varchar: 1043,
  bpchar: 1042,
  int4: 23,
  int8: 20,
  numeric: 1700,
  date: 1082,
  json: 114,
  jsonb: 3802,
  citext: 91234,
};

const Row = z
  .object({
    id: z.string().regex(/^[a-z0-9-]+$/),
    why: z.string().optional(),
    value: z.string(),
    column: z.string().optional(),
    detectors: z.array(Detector).optional(),
    style: z.enum(['full', 'partial', 'hash']).default('full'),
    type: z.enum(Object.keys(TYPES) as [keyof typeof TYPES]).default('text'),
    format: z.enum(['text', 'binary']).default('text'),
    copy: z.enum(['text', 'csv']).optional(),
    audit: z.boolean().default(false),
    expect: z.string().nullable(),
  })
  .strict()
  .refine((r) => (r.column === undefined) !== (r.detectors === undefined), { message: 'give exactly one of column, detectors' });
type Row = z.infer<typeof Row>;

const rows = z.array(Row).parse(parse(readFileSync(new URL('./masking.yaml', import.meta.url), 'utf8')));
const KEY = Buffer.alloc(32, 0x6a);

function rulesOf(r: Row): MaskRule[] {
  const base = { name: 'corpus', targets: ['*'], users: [], groups: [], style: r.style };
  return r.column ? [{ ...base, columns: [r.column], detectors: [] }] : [{ ...base, columns: [], detectors: r.detectors! }];
}

function encodeValue(r: Row): Buffer {
  if (r.format === 'binary' && (r.type === 'int4' || r.type === 'int8')) {
    const b = Buffer.alloc(r.type === 'int4' ? 4 : 8);
    if (r.type === 'int4') b.writeInt32BE(Number(r.value));
    else b.writeBigInt64BE(BigInt(r.value));
    return b;
  }
  if (r.format === 'binary' && r.type === 'jsonb') return Buffer.concat([Buffer.of(1), Buffer.from(r.value)]);
  return Buffer.from(r.value);
}

function dataRow(v: Buffer): Buffer {
  const m = Buffer.alloc(11 + v.length);
  m[0] = 0x44;
  m.writeInt32BE(m.length - 1, 1);
  m.writeInt16BE(1, 5);
  m.writeInt32BE(v.length, 7);
  v.copy(m, 11);
  return m;
}

/** What the client receives for this row: the value text, null for SQL NULL, 'refuse'. */
function run(r: Row): string | null {
  const rules = rulesOf(r);
  if (r.audit) return maskForAudit(r.value, rules, { hashKey: KEY });
  const column = r.column?.toLowerCase().split('.').pop() ?? 'notes';
  if (r.copy) {
    const cols = [
      { schema: 'public', table: 'customers', column: 'id' },
      { schema: 'public', table: 'customers', column: column === 'notes' ? 'email' : column },
      { schema: 'public', table: 'customers', column: 'notes' },
    ];
    const plan = planCopyMasking(cols, rules, r.copy, { hashKey: KEY });
    const body = Buffer.from(r.value);
    const m = Buffer.concat([Buffer.from([0x64, 0, 0, 0, 0]), body]);
    m.writeInt32BE(m.length - 1, 1);
    const out = maskCopyData(m, plan);
    if (out === null) return 'refuse';
    expect(out.readInt32BE(1)).toBe(out.length - 1);
    return out.subarray(5).toString();
  }
  const plan = planMasking(
    [{ name: column, tableOid: 1000, columnAttr: 2, typeOid: TYPES[r.type], format: r.format === 'binary' ? 1 : 0 }],
    (oid, att) => (oid === 1000 && att === 2 ? { schema: 'public', table: 'customers', column } : undefined),
    rules,
    { hashKey: KEY },
  );
  const input = dataRow(encodeValue(r));
  const out = maskDataRow(input, plan);
  if (out === null) return 'refuse';
  expect(out.readInt32BE(1)).toBe(out.length - 1);
  expect(out.readInt16BE(5)).toBe(1);
  const len = out.readInt32BE(7);
  if (len === -1) return null;
  expect(11 + len).toBe(out.length);
  return out.subarray(11).toString();
}

describe('masking corpus', () => {
  it('has unique ids', () => {
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
  });
  it.each(rows.map((r) => [r.id, r] as const))('%s', (_id, r) => {
    expect(run(r)).toBe(r.expect);
  });
});
