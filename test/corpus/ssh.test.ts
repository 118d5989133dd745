/**
 * SSH command corpus: every row of ssh/commands.yaml through the real command guard (shell parser
 * included). Rows are never deleted.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Guardrail } from '#shared/config/policy.js';
import { judgeCommand, loadShellParser } from '#protocol/ssh/guard.js';

const Preset = z.object({
  mode: z.enum(['denylist', 'allowlist']),
  otherwise: z.enum(['block', 'require-approval']).default('block'),
  guardrails: z.array(Guardrail),
});
const Row = z
  .object({
    line: z.string(),
    preset: z.string(),
    expect: z.enum(['allow', 'block', 'require-approval']),
    rule: z.string().optional(),
    why: z.string().min(3),
  })
  .strict();
const corpus = z
  .object({ presets: z.record(z.string(), Preset), rows: z.array(Row) })
  .parse(parse(readFileSync(new URL('./ssh/commands.yaml', import.meta.url), 'utf8')));

beforeAll(async () => {
  await loadShellParser();
});

describe('ssh command corpus', () => {
  it.each(corpus.rows.map((r, i) => [i + 1, r] as const))('row %i: %o', (_i, row) => {
    const p = corpus.presets[row.preset];
    expect(p, `preset ${row.preset}`).toBeDefined();
    const v = judgeCommand(row.line, p!.guardrails, { mode: p!.mode, otherwise: p!.otherwise });
    expect({ action: v.action, ...(row.rule ? { rule: v.rule } : {}) }, `${row.line}\n→ ${v.reason} (${row.why})`).toEqual({
      action: row.expect,
      ...(row.rule ? { rule: row.rule } : {}),
    });
  });
});
