/**
 * SQL classification with the real PostgreSQL parser (libpg-query 18, WebAssembly): what each
 * statement of a query string is, what it reads, writes and calls, and which columns it returns
 * plainly or computes on. The guard (guard.ts) turns this into allow/block decisions.
 *
 * Decisions written here (see also docs/policy.md):
 * - A string is judged statement by statement; each statement's `text` is its own slice of the input.
 * - `kind` is the top-level statement's kind. `effects` lists every kind the statement performs,
 *   including its own: a data-modifying CTE (`WITH d AS (DELETE …) SELECT …` → effects has
 *   `delete`), the statement EXPLAIN ANALYZE runs, the statement PREPARE stores (judged when it is
 *   prepared, because EXECUTE only names it), `set-role` / `set-session-authorization` for
 *   `set_config('role'|'session_authorization', …)` (or a set_config whose setting name is not a
 *   literal), and for RESET ALL / DISCARD ALL. Guardrail `kinds` match against `effects`.
 * - `hasWhere` is set when the statement is or contains an UPDATE/DELETE; it is false when any of
 *   them has no WHERE. `WHERE true` is still a WHERE: the guardrail catches the forgotten clause,
 *   not the deliberate one.
 * - Identifiers are as PostgreSQL folds them: unquoted names lowercased, quoted names keep case
 *   (`"Customers"` → `Customers`); U&"…" escapes are decoded by the parser. The guard compares
 *   names case-insensitively, so a rule on `customers` also covers `"Customers"`.
 * - Anything that cannot be parsed is `ok: false`; callers fail closed.
 */
import { loadModule, parseSync } from 'libpg-query';
import type { StatementKind } from '#shared/config/policy.js';
import { Acc, type ColumnRef, outputsOf, walkStatement } from './classify-walk.js';

export type { ColumnRef } from './classify-walk.js';

/** Largest query text classified; larger text is refused (callers fail closed). */
export const MAX_SQL_LENGTH = 16 * 1024 * 1024;

export interface StatementInfo {
  /** this statement's own text (slice of the input) */
  text: string;
  kind: StatementKind;
  /** 'table' or 'schema.table', de-duplicated */
  relationsRead: string[];
  /** tables written: INSERT/UPDATE/DELETE/MERGE/COPY FROM/TRUNCATE targets, and DDL subjects */
  relationsWritten: string[];
  /** every function called anywhere, 'schema.fn' when qualified */
  functions: string[];
  /** set when the statement is or contains an UPDATE/DELETE; false when one of them lacks WHERE */
  hasWhere?: boolean;
  /** DO, CREATE FUNCTION/PROCEDURE with a body, EXECUTE, CALL */
  opaque: boolean;
  /** select-like: each output column that is a PLAIN column reference (null when computed or `*`) */
  outputs?: (ColumnRef | null)[];
  /** column refs used anywhere else: expressions, function args, WHERE, GROUP BY, ORDER BY, … */
  computedColumns: ColumnRef[];
  /** relations whose whole row is used as a value: row_to_json(t), t in the select list, … */
  wholeRowRefs: string[];
  /** SELECT * / t.* in the returned columns */
  star: boolean;
  copy?: { direction: 'to' | 'from'; relation?: string; columns?: string[]; query: boolean; program: boolean; stdio: boolean };
  /** every kind the statement performs, its own included (see the module comment); always set by classifySql */
  effects?: StatementKind[];
  /**
   * Why what the statement runs cannot be known from its text: dynamic SQL in a code body, SQL
   * text or a table name given to a function as something other than a constant, a body in a
   * language jit cannot read. The guard refuses it whenever a rule could apply.
   */
  unjudgeable?: string;
  /** Why some value it returns cannot be traced to the columns it comes from (refused under column masking). */
  untraced?: string;
  /** Operators used, 'schema.op' when qualified (set only when there are some): user-defined ones run functions. */
  operators?: string[];
}

/** `code`: the SQLSTATE the refusal carries (42601 syntax, 54000/54001 too big; absent: a policy refusal, 42501). */
export type Classification = { ok: true; statements: StatementInfo[] } | { ok: false; error: string; code?: string };

let loaded: Promise<void> | undefined;
let ready = false;

/** Load the parser (WebAssembly). Idempotent; await once at agent start. */
export async function loadSqlParser(): Promise<void> {
  loaded ??= loadModule().then(() => {
    ready = true;
  });
  return loaded;
}

const NON_ASCII = /[^\u0000-\u007f]/;

/** Classify every statement of a query string. Sync; needs loadSqlParser() first. */
export function classifySql(sql: string): Classification {
  if (!ready) return { ok: false, error: 'the SQL parser is not loaded' };
  if (typeof sql !== 'string') return { ok: false, error: 'query is not text' };
  if (sql.length > MAX_SQL_LENGTH) {
    const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;
    return { ok: false, code: '54000', error: `query text of ${mib(sql.length)} is over the ${mib(MAX_SQL_LENGTH)} jit inspects` };
  }
  // The parser reads a C string: text after a NUL would be invisible to it.
  if (sql.includes('\u0000')) return { ok: false, code: '42601', error: 'query text contains a NUL byte' };
  if (sql.trim() === '') return { ok: true, statements: [] };
  let tree: { stmts?: { stmt?: unknown; stmt_location?: number; stmt_len?: number }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch (e) {
    return { ok: false, code: '42601', error: parseErrorText(e) };
  }
  const raw = tree.stmts ?? [];
  // stmt_location/stmt_len are byte offsets into the UTF-8 text
  const bytes = NON_ASCII.test(sql) ? Buffer.from(sql, 'utf8') : undefined;
  const total = bytes ? bytes.length : sql.length;
  const statements: StatementInfo[] = [];
  try {
    for (const r of raw) {
      const start = r.stmt_location ?? 0;
      const end = r.stmt_len ? start + r.stmt_len : total;
      const text = (bytes ? bytes.subarray(start, end).toString('utf8') : sql.slice(start, end)).trim();
      const info = classifyOne(r.stmt, text);
      if (typeof info === 'string') return { ok: false, error: info };
      statements.push(info);
    }
  } catch (e) {
    // e.g. nesting deep enough to exhaust the stack: refuse rather than guess
    const deep = e instanceof RangeError;
    return {
      ok: false,
      ...(deep ? { code: '54001' } : {}),
      error: `cannot inspect this query (${deep ? 'too deeply nested' : 'internal error'})`,
    };
  }
  return { ok: true, statements };
}

function classifyOne(stmt: unknown, text: string): StatementInfo | string {
  const acc = new Acc();
  const w = walkStatement(stmt, acc);
  if (acc.integrity) return acc.integrity;
  const info: StatementInfo = {
    text,
    kind: w.kind,
    relationsRead: [...acc.read],
    relationsWritten: [...acc.written],
    functions: [...acc.functions],
    opaque: acc.opaque,
    computedColumns: [...acc.computed.values()],
    wholeRowRefs: [...acc.wholeRow],
    star: false,
    effects: [...acc.effects],
  };
  if (acc.hasWhere !== undefined) info.hasWhere = acc.hasWhere;
  if (acc.unjudgeable !== undefined) info.unjudgeable = acc.unjudgeable;
  if (acc.untraced !== undefined) info.untraced = acc.untraced;
  if (acc.operators.size > 0) info.operators = [...acc.operators];
  if (w.outs) {
    const o = outputsOf(w.outs);
    info.outputs = o.outputs;
    info.star = o.star;
  }
  if (w.copy) info.copy = w.copy;
  return info;
}

function parseErrorText(e: unknown): string {
  const err = e as { message?: unknown; sqlDetails?: { cursorPosition?: number } };
  const msg = typeof err?.message === 'string' ? err.message : 'syntax error';
  const pos = err?.sqlDetails?.cursorPosition;
  return typeof pos === 'number' ? `${msg} (at character ${pos + 1})` : msg;
}
