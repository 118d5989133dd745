import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configurationReference, GENERATED_BEGIN } from './doc.js';

const DOC = new URL('../../../docs/configuration.md', import.meta.url);

describe('docs/configuration.md', () => {
  it('matches the configuration schemas (regenerate with JIT_UPDATE_DOCS=1 npx vitest run src/shared/config)', () => {
    const text = readFileSync(DOC, 'utf8');
    const head = text.split(GENERATED_BEGIN)[0] ?? text;
    const expected = head + configurationReference();
    if (process.env['JIT_UPDATE_DOCS'] === '1') writeFileSync(DOC, expected);
    expect(readFileSync(DOC, 'utf8')).toBe(expected);
  });
});
