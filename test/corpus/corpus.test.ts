/**
 * Runs every row of the guardrail bypass corpus (guardrails.yaml) through classifySql + judge with
 * the row's rule preset. Rows are never deleted; see the file header.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { beforeAll, describe, expect, it } from 'vitest';
import { InspectionRules } from '#shared/contract/agent.js';
import { classifySql, loadSqlParser } from '#protocol/postgres/classify.js';
import { judge } from '#protocol/postgres/guard.js';

const Row = z.strictObject({
  sql: z.string(),
  preset: z.string(),
  expect: z.enum(['allow', 'block', 'require-approval']),
  rule: z.string().optional(),
  why: z.string().min(10),
});
const Corpus = z.strictObject({
  presets: z.record(z.string(), InspectionRules),
  rows: z.array(Row).min(60),
});

const corpus = Corpus.parse(parse(readFileSync(fileURLToPath(new URL('./guardrails.yaml', import.meta.url)), 'utf8')));

beforeAll(async () => {
  await loadSqlParser();
});

describe('guardrail corpus', () => {
  it('every row names a preset that exists', () => {
    for (const r of corpus.rows) expect(Object.keys(corpus.presets), r.sql).toContain(r.preset);
  });

  it.each(corpus.rows.map((r, i) => [i + 1, r.why, r] as const))('row %i: %s', (_n, _why, row) => {
    const rules = corpus.presets[row.preset]!;
    const v = judge(classifySql(row.sql), rules);
    expect({ action: v.action, ...(row.rule ? { rule: v.rule } : {}) }, `${row.sql}\n→ ${v.reason}`).toEqual({
      action: row.expect,
      ...(row.rule ? { rule: row.rule } : {}),
    });
  });
});
