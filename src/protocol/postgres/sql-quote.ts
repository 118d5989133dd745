/**
 * Quoting for the few statements that take no bind parameters (CREATE/ALTER/DROP ROLE, COMMENT).
 * Pure; refuses NUL, which PostgreSQL cannot carry in a string anyway.
 */

/** Quote an identifier: `"a""b"`. */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.includes('\0')) throw new Error('invalid SQL identifier');
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Quote a string literal. Like PostgreSQL's quote_literal: a value with a backslash uses the E''
 * form with doubled backslashes, so the result is correct whatever standard_conforming_strings is.
 */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('invalid SQL literal');
  const body = value.replaceAll("'", "''");
  return value.includes('\\') ? `E'${body.replaceAll('\\', '\\\\')}'` : `'${body}'`;
}
