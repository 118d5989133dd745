import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI_GENERATED_BEGIN, cliReference } from './doc.js';

const DOC = new URL('../../docs/cli/reference.md', import.meta.url);

describe('docs/cli/reference.md', () => {
  it('matches the commands and flags (regenerate with JIT_UPDATE_DOCS=1 npx vitest run src/cli/doc.test.ts)', () => {
    const text = readFileSync(DOC, 'utf8');
    const head = text.split(CLI_GENERATED_BEGIN)[0] ?? text;
    const expected = head + cliReference();
    if (process.env['JIT_UPDATE_DOCS'] === '1') writeFileSync(DOC, expected);
    expect(readFileSync(DOC, 'utf8')).toBe(expected);
  });
});
