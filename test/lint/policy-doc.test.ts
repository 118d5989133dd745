/**
 * docs/policy.md stays true to the code: it names every statement kind a guardrail can use, every
 * function class and every member of each class.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { classMembers, FUNCTION_CLASSES } from '#protocol/postgres/function-classes.js';
import { STATEMENT_KINDS } from '#shared/config/policy.js';

const doc = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8');

describe('docs/policy.md', () => {
  it('lists every statement kind', () => {
    expect(STATEMENT_KINDS.filter((k) => !doc.includes(`\`${k}\``))).toEqual([]);
  });

  it('lists every function class and its members', () => {
    const missing: string[] = [];
    for (const c of FUNCTION_CLASSES) {
      if (!doc.includes(`\`${c}\``)) missing.push(c);
      for (const m of classMembers(c)) if (!doc.includes(`\`${m}\``)) missing.push(`${c}: ${m}`);
    }
    expect(missing).toEqual([]);
  });
});
