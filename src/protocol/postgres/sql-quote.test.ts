import { describe, expect, it } from 'vitest';
import { quoteIdent, quoteLiteral } from './sql-quote.js';

describe('SQL quoting', () => {
  it('doubles quotes in identifiers and refuses NUL/empty', () => {
    expect(quoteIdent('jit_abc')).toBe('"jit_abc"');
    expect(quoteIdent('a"; DROP ROLE x; --')).toBe('"a""; DROP ROLE x; --"');
    expect(() => quoteIdent('')).toThrow();
    expect(() => quoteIdent('a\0b')).toThrow();
  });

  it('quotes literals safely with and without backslashes', () => {
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral("a\\' OR 1=1 --")).toBe("E'a\\\\'' OR 1=1 --'");
    expect(() => quoteLiteral('\0')).toThrow();
  });
});
