/**
 * The parse-tree walk behind classifySql: one generic recursive walker over every node (so a node
 * type nobody special-cased still has its tables, function calls and column references found) plus
 * statement- and clause-specific logic where meaning depends on position (FROM items, select lists,
 * data-modifying CTEs, EXPLAIN ANALYZE, COPY …).
 *
 * The tree is the JSON libpg-query returns: nodes in `Node` positions are wrapped (`{ColumnRef:{…}}`),
 * fields typed as one specific node are not (`DeleteStmt.relation` is a bare RangeVar). The walker
 * dispatches on wrapper keys and recognises a bare RangeVar by its `relname` field (no other raw
 * parse node has one).
 *
 * Security stance: whenever the provenance of a value is unclear, the column is reported as
 * computed (or the relation as used whole-row). A false "computes on a masked column" costs a
 * refused query; a missed one leaks data.
 */
import { parsePlPgSQLSync, parseSync } from 'libpg-query';
import type { StatementKind } from '#shared/config/policy.js';
import { sqlTextArgs } from './function-classes.js';

// biome-ignore lint/suspicious/noExplicitAny: the parse tree is untyped JSON from libpg-query; every access is guarded
type N = any;

export interface ColumnRef {
  relation?: string;
  column: string;
}

/** Provenance of one output column of a (sub)select. */
export interface Out {
  /** Column refs the value passes through unchanged (plain) or was computed from. */
  refs: ColumnRef[];
  /** Relations used whole-row in the value. */
  whole: string[];
  /** True when the value is a plain column reference (the server reports its origin table/column). */
  plain: boolean;
  /** A `*` / `t.*` entry: expands to these relations' columns and these derived columns. */
  star?: { relations: string[]; cols: Map<string, Out>; outs: Out[] };
}

const COMPUTED: Out = { refs: [], whole: [], plain: false };

function emptyStar(): NonNullable<Out['star']> {
  return { relations: [], cols: new Map(), outs: [] };
}

/** A FROM item visible to column references. */
interface Item {
  /** The name it is referenced by (alias, else relation name). */
  alias: string;
  kind: 'table' | 'derived' | 'join' | 'other';
  relation?: string;
  /** table with column aliases `t(a, b)` / derived with column aliases */
  renamed?: string[];
  /** derived: named output columns */
  cols?: Map<string, Out>;
  /** derived: every output (for whole-row use) */
  outs?: Out[];
  /** derived: relations whose columns arrive through a `*` */
  starRelations?: string[];
  /** derived: column aliases over a `*`, so names no longer tell which column is which */
  scrambled?: boolean;
  /** join alias: its members */
  members?: Item[];
}

interface Scope {
  items: Item[];
  ctes: Map<string, Item> | undefined;
  parent: Scope | undefined;
}

/** What one statement does, accumulated while walking it. */
export class Acc {
  read = new Set<string>();
  written = new Set<string>();
  functions = new Set<string>();
  computed = new Map<string, ColumnRef>();
  wholeRow = new Set<string>();
  effects = new Set<StatementKind>();
  opaque = false;
  /** set when an UPDATE/DELETE (anywhere in the statement) is seen; false once one lacks WHERE */
  hasWhere: boolean | undefined = undefined;
  /** non-null when the statement changes how jit's parser would split later text */
  integrity: string | undefined = undefined;
  /** how deep we are inside code bodies (DO, functions) being looked into */
  bodyDepth = 0;
  /** operators used ('schema.op' when qualified): user-defined ones run functions */
  operators = new Set<string>();
  /** why what this statement runs cannot be known from its text (first reason found) */
  unjudgeable: string | undefined = undefined;
  /** why some value it returns cannot be traced to its columns (first reason found) */
  untraced: string | undefined = undefined;

  cannotJudge(why: string): void {
    this.unjudgeable ??= why;
  }

  addComputed(r: ColumnRef): void {
    const key = (r.relation ?? '') + '\u0000' + r.column;
    if (!this.computed.has(key)) this.computed.set(key, r);
  }
}

const EMPTY_SCOPE: Scope = { items: [], ctes: undefined, parent: undefined };

// ---------------------------------------------------------------------------------------------
// names

function str(n: N): string | undefined {
  return n && typeof n.String === 'object' ? n.String.sval : undefined;
}

function nameList(list: N): string[] {
  const out: string[] = [];
  if (Array.isArray(list)) for (const x of list) out.push(str(x) ?? '');
  return out;
}

/** 'schema.table' or 'table' for a RangeVar (the catalog part, when given, is ignored). */
export function relationName(rv: N): string {
  return rv.schemaname ? `${rv.schemaname}.${rv.relname}` : String(rv.relname);
}

// ---------------------------------------------------------------------------------------------
// generic walk

/** Walk any subtree in a "computed" position: every column reference found is computed. */
function walk(v: N, scope: Scope, acc: Acc): void {
  if (v === null || typeof v !== 'object') return;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) walk(v[i], scope, acc);
    return;
  }
  if (typeof v.relname === 'string') {
    // a bare RangeVar in a typed field
    acc.read.add(relationName(v));
    return;
  }
  for (const key in v) {
    const child = v[key];
    if (child === null || typeof child !== 'object') continue;
    const h = HANDLERS[key];
    if (h !== undefined) h(child, scope, acc);
    else walk(child, scope, acc);
  }
}

function walkExcept(v: N, skip: readonly string[], scope: Scope, acc: Acc): void {
  for (const key in v) {
    if (skip.includes(key)) continue;
    const child = v[key];
    if (child === null || typeof child !== 'object') continue;
    const h = HANDLERS[key];
    if (h !== undefined) h(child, scope, acc);
    else walk(child, scope, acc);
  }
}

type Handler = (n: N, scope: Scope, acc: Acc) => void;

const HANDLERS: Record<string, Handler> = {
  ColumnRef: (n, scope, acc) => consume(resolveColumnRef(n, scope), acc),
  A_Expr: (n, scope, acc) => {
    // an operator runs a function too: user-defined ones are judged like the function they run
    const op = nameList(n.name).join('.');
    if (op !== '') acc.operators.add(op);
    walkExcept(n, ['name'], scope, acc);
  },
  FuncCall: funcCall,
  RangeVar: (n, _scope, acc) => {
    acc.read.add(relationName(n));
  },
  SelectStmt: (n, scope, acc) => {
    // a nested query whose output feeds an expression (sublink, INSERT … SELECT source …)
    for (const o of selectStmt(n, scope, acc).outs) consume(o, acc);
  },
  InsertStmt: (n, scope, acc) => nestedDml('insert', n, scope, acc),
  UpdateStmt: (n, scope, acc) => nestedDml('update', n, scope, acc),
  DeleteStmt: (n, scope, acc) => nestedDml('delete', n, scope, acc),
  MergeStmt: (n, scope, acc) => nestedDml('merge', n, scope, acc),
  VariableSetStmt: (n, _scope, acc) => {
    // nested SET (ALTER ROLE … SET, ALTER DATABASE … SET, ALTER SYSTEM, function SET clauses)
    checkSetting(n.name, n.kind === 'VAR_SET_VALUE' ? constString(n.args?.[0]) : undefined, n.kind, acc);
  },
};

function nestedDml(kind: StatementKind, n: N, scope: Scope, acc: Acc): void {
  acc.effects.add(kind);
  for (const o of dmlStmt(kind, n, scope, acc)) consume(o, acc);
}

/** The columns and whole rows one output value comes from (everything it passes through or is computed from). */
export function sourcesOf(o: Out): { columns: ColumnRef[]; wholeRows: string[] } {
  const acc = new Acc();
  consume(o, acc);
  return { columns: [...acc.computed.values()], wholeRows: [...acc.wholeRow] };
}

/** Add a value's provenance to computedColumns / wholeRowRefs. */
function consume(o: Out, acc: Acc): void {
  for (const r of o.refs) acc.addComputed(r);
  for (const w of o.whole) acc.wholeRow.add(w);
  if (o.star) {
    for (const r of o.star.relations) acc.wholeRow.add(r);
    for (const x of o.star.outs) consume(x, acc);
  }
}

// ---------------------------------------------------------------------------------------------
// functions

const ROLE_SETTINGS: Record<string, StatementKind> = {
  role: 'set-role',
  session_authorization: 'set-session-authorization',
};

function constString(n: N): string | undefined {
  if (!n) return undefined;
  if (n.TypeCast) return constString(n.TypeCast.arg);
  if (n.A_Const) {
    const c = n.A_Const;
    if (c.sval) return String(c.sval.sval ?? '');
    if (c.ival) return String(c.ival.ival ?? 0);
    if (c.boolval) return c.boolval.boolval ? 'true' : 'false';
    if (c.fval) return String(c.fval.fval);
  }
  return undefined;
}

const OFF = new Set(['off', 'false', '0', 'no', 'of', 'f', 'n']);
const UTF8 = new Set(['utf8', 'utf-8', 'unicode', 'sql_ascii']);

/**
 * Settings that change the meaning of SQL text for later statements: the classifier parses with
 * standard_conforming_strings=on and UTF-8, so a session that turns either off could make jit
 * split statements differently from the server. Those changes are refused outright.
 */
function checkSetting(name: unknown, value: string | undefined, setKind: unknown, acc: Acc): void {
  if (typeof name !== 'string') return;
  const lname = name.toLowerCase();
  const role = ROLE_SETTINGS[lname];
  if (role) acc.effects.add(role);
  if (setKind === 'VAR_RESET' || setKind === 'VAR_SET_DEFAULT' || setKind === 'VAR_RESET_ALL') return;
  if (lname === 'standard_conforming_strings' && (value === undefined || OFF.has(value.toLowerCase()))) {
    acc.integrity = 'changing standard_conforming_strings is not allowed through jit';
  }
  if (lname === 'client_encoding' && (value === undefined || !UTF8.has(value.toLowerCase()))) {
    acc.integrity = 'only UTF8 client_encoding is allowed through jit';
  }
}

function funcCall(n: N, scope: Scope, acc: Acc): void {
  const names = nameList(n.funcname);
  acc.functions.add(names.join('.'));
  const last = names[names.length - 1];
  if (last === 'set_config') {
    const setting = constString(n.args?.[0]);
    if (setting === undefined) {
      // unknown setting name (parameter, expression): assume the worst
      acc.effects.add('set-role');
      acc.effects.add('set-session-authorization');
    } else {
      checkSetting(setting, constString(n.args?.[1]) ?? (n.args?.[1] ? undefined : ''), 'VAR_SET_VALUE', acc);
    }
  }
  const argc = Array.isArray(n.args) ? n.args.length : 0;
  const sqlArgs = sqlTextArgs(last ?? '', argc);
  if (sqlArgs) {
    for (const i of sqlArgs) {
      const text = constString(n.args?.[i]);
      if (text === undefined) acc.cannotJudge(`${last}() is given SQL text that is not a constant`);
      else judgeSqlText(text, `${last}()`, acc);
    }
  }
  const relArg = RELATION_ARG[last ?? ''];
  if (relArg !== undefined) {
    // its value is rows of the table it names: a whole-row use of that table
    const rel = regclassText(constString(n.args?.[relArg]));
    if (rel === undefined) acc.cannotJudge(`${last}() is given a table name that is not a constant`);
    else {
      acc.read.add(rel);
      acc.wholeRow.add(rel);
    }
  }
  if (UNTRACED_VALUES.has(last ?? '')) acc.untraced ??= `${last}() returns values jit cannot trace to their columns`;
  walkExcept(n, ['funcname'], scope, acc);
}

/** Functions whose value holds rows of the table named by this argument. */
const RELATION_ARG: Record<string, number> = {
  table_to_xml: 0,
  table_to_xml_and_xmlschema: 0,
  connectby: 0,
  dblink_build_sql_insert: 0,
  dblink_build_sql_update: 0,
  dblink_build_sql_delete: 0,
};

/** Functions whose value holds rows of relations or cursors jit cannot name from the call. */
const UNTRACED_VALUES = new Set([
  'pg_read_file',
  'pg_read_binary_file',
  'schema_to_xml',
  'schema_to_xml_and_xmlschema',
  'database_to_xml',
  'database_to_xml_and_xmlschema',
  'cursor_to_xml',
  'pg_mcv_list_items',
  'pg_logical_slot_get_changes',
  'pg_logical_slot_peek_changes',
  'pg_logical_slot_get_binary_changes',
  'pg_logical_slot_peek_binary_changes',
  'lo_get',
  'loread',
]);

/** A regclass literal as the server reads it ('"Customers"' keeps case, 'Public.T' folds), or undefined. */
function regclassText(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"]|"")*)"|([^."\s]+))\s*(\.|$)/y;
  let at = 0;
  while (at < v.length) {
    re.lastIndex = at;
    const m = re.exec(v);
    if (!m) return undefined;
    parts.push(m[1] !== undefined ? m[1].replaceAll('""', '"') : m[2]!.toLowerCase());
    at = re.lastIndex;
    if (m[3] === '') break;
  }
  if (parts.length === 0 || parts.length > 3) return undefined;
  return parts.slice(-2).join('.');
}

/**
 * SQL text an SQL-executing function will run, judged as if the client had sent it: what it reads,
 * writes, calls and performs counts for this statement, and every value it returns is computed
 * (it comes back serialised, with no column origin the server could report).
 */
function judgeSqlText(text: string, who: string, acc: Acc): void {
  walkSqlText(text, `SQL text given to ${who}`, acc);
}

// ---------------------------------------------------------------------------------------------
// column references

function lookupItem(name: string, scope: Scope | undefined): Item | undefined {
  for (let s = scope; s; s = s.parent) {
    for (const it of s.items) if (it.alias === name) return it;
  }
  return undefined;
}

function lookupRelation(rel: string, scope: Scope | undefined): Item | undefined {
  for (let s = scope; s; s = s.parent) {
    for (const it of s.items) if (it.kind === 'table' && it.relation === rel) return it;
  }
  return undefined;
}

/** Every column this item could contribute (used whole-row). */
function itemWhole(it: Item): Out {
  if (it.kind === 'table') return { refs: [], whole: [it.relation!], plain: false };
  if (it.kind === 'derived') {
    return { refs: [], whole: [...(it.starRelations ?? [])], plain: false, star: { ...emptyStar(), outs: it.outs ?? [] } };
  }
  if (it.kind === 'join') {
    const o: Out = { refs: [], whole: [], plain: false, star: emptyStar() };
    for (const m of it.members ?? []) o.star!.outs.push(itemWhole(m));
    return o;
  }
  return COMPUTED;
}

/** Column `col` of item `it`. */
function itemColumn(it: Item, col: string): Out | undefined {
  switch (it.kind) {
    case 'table':
      if (it.renamed?.includes(col)) return { refs: [], whole: [it.relation!], plain: false };
      return { refs: [{ relation: it.relation!, column: col }], whole: [], plain: true };
    case 'derived': {
      if (it.scrambled && it.renamed?.includes(col)) return itemWhole(it);
      const o = it.cols?.get(col);
      if (o) return o;
      if (it.starRelations?.length) {
        return { refs: it.starRelations.map((r) => ({ relation: r, column: col })), whole: [], plain: it.starRelations.length === 1 };
      }
      return undefined;
    }
    case 'join': {
      const found: Out[] = [];
      for (const m of it.members ?? []) {
        const o = itemColumn(m, col);
        if (o) found.push(o);
      }
      return merge(found);
    }
    default:
      return COMPUTED;
  }
}

function merge(outs: Out[]): Out | undefined {
  if (outs.length === 0) return undefined;
  if (outs.length === 1) return outs[0];
  const o: Out = { refs: [], whole: [], plain: false };
  for (const x of outs) {
    o.refs.push(...x.refs);
    o.whole.push(...x.whole);
    if (x.star) {
      o.star ??= emptyStar();
      o.star.outs.push(x);
    }
  }
  return o;
}

function resolveColumnRef(n: N, scope: Scope): Out {
  const fields: N[] = n.fields ?? [];
  const isStar = fields.length > 0 && fields[fields.length - 1].A_Star !== undefined;
  const names: string[] = [];
  for (const f of fields) {
    const s = str(f);
    if (s !== undefined) names.push(s);
  }
  if (isStar) {
    let items: Item[] = [];
    if (names.length === 0) {
      for (let s: Scope | undefined = scope; s; s = s.parent) {
        if (s.items.length) {
          items = s.items;
          break;
        }
      }
    } else {
      const it = names.length === 1 ? lookupItem(names[0]!, scope) : lookupRelation(names.slice(-2).join('.'), scope);
      if (it) items = [it];
      else return { refs: [], whole: [names.join('.')], plain: false };
    }
    return starOf(items);
  }
  if (names.length === 0) return COMPUTED;
  const col = names[names.length - 1]!;
  if (names.length === 1) {
    // unqualified: a column of any visible item, or a whole row of the item so named
    const found: Out[] = [];
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      for (const it of s.items) {
        if (it.alias === col) found.push(itemWhole(it));
        if (it.kind === 'derived' || it.kind === 'join') {
          const o = itemColumn(it, col);
          if (o) found.push(o);
        }
      }
    }
    let tables = 0;
    let table: Item | undefined;
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      for (const it of s.items) {
        if (it.kind === 'table') {
          tables++;
          table = it;
        }
      }
    }
    if (tables === 1 && found.length === 0) return itemColumn(table!, col)!;
    if (tables === 0 && found.length === 0 && functionRangeVisible(scope)) {
      // No table is in reach, so the column is an output of a function in FROM
      // (`FROM pg_show_all_settings() WHERE name = …`, pgAdmin's connection set-up). Treated as
      // the aliased form `FROM f() s WHERE s.name = …` already is: what such a function computes
      // from tables is judged where it reads them, its outputs are no table's column.
      return COMPUTED;
    }
    if (tables > 0) {
      // which table owns it is unknown without the catalog: any table's column of that name
      const renamedHit = [];
      for (let s: Scope | undefined = scope; s; s = s.parent) {
        for (const it of s.items) if (it.kind === 'table' && it.renamed?.includes(col)) renamedHit.push(it.relation!);
      }
      found.push({ refs: [{ column: col }], whole: renamedHit, plain: found.length === 0 && renamedHit.length === 0 });
    }
    return merge(found) ?? { refs: [{ column: col }], whole: [], plain: false };
  }
  const qual = names[names.length - 2]!;
  const it = names.length === 2 ? lookupItem(qual, scope) : lookupRelation(`${names[names.length - 3]}.${qual}`, scope);
  if (it) return itemColumn(it, col) ?? { refs: [{ column: col }], whole: [], plain: false };
  // not a FROM item: a field of a composite value or an outer name: any table's column of that name
  return { refs: [{ column: col }], whole: [], plain: false };
}

/** Walk a computed value: what it is computed from counts as computed, and is also its Out's provenance. */
function tracked(v: N, scope: Scope, acc: Acc): Out {
  const computed = acc.computed;
  const wholeRow = acc.wholeRow;
  acc.computed = new Map();
  acc.wholeRow = new Set();
  try {
    walk(v, scope, acc);
    return { refs: [...acc.computed.values()], whole: [...acc.wholeRow], plain: false };
  } finally {
    for (const [k, r] of acc.computed) if (!computed.has(k)) computed.set(k, r);
    for (const w of acc.wholeRow) wholeRow.add(w);
    acc.computed = computed;
    acc.wholeRow = wholeRow;
  }
}

function starOf(items: Item[]): Out {
  const star = emptyStar();
  const add = (it: Item): void => {
    if (it.kind === 'table') star.relations.push(it.relation!);
    else if (it.kind === 'derived') {
      if (it.scrambled) star.outs.push(itemWhole(it));
      else {
        for (const [k, v] of it.cols ?? []) if (!star.cols.has(k)) star.cols.set(k, v);
        for (const o of it.outs ?? []) star.outs.push(o);
        star.relations.push(...(it.starRelations ?? []));
      }
    } else if (it.kind === 'join') for (const m of it.members ?? []) add(m);
  };
  for (const it of items) add(it);
  return { refs: [], whole: [], plain: true, star };
}

// ---------------------------------------------------------------------------------------------
// SELECT

export interface SelectResult {
  outs: Out[];
  names: (string | undefined)[];
}

function outputName(rt: N): string | undefined {
  if (rt.name) return rt.name;
  const v = rt.val;
  if (v?.ColumnRef) {
    const f = v.ColumnRef.fields;
    return str(f?.[f.length - 1]);
  }
  if (v?.FuncCall) {
    const f = v.FuncCall.funcname;
    return str(f?.[f.length - 1]);
  }
  return undefined;
}

function withScope(withClause: N, scope: Scope, acc: Acc): Scope {
  if (!withClause?.ctes) return scope;
  const ctes = new Map<string, Item>();
  const s: Scope = { items: [], ctes, parent: scope };
  if (withClause.recursive) {
    // a recursive CTE refers to itself: visible (with unknown columns) while its body is walked
    for (const c of withClause.ctes) {
      const name = c.CommonTableExpr?.ctename;
      if (typeof name === 'string') ctes.set(name, { alias: name, kind: 'derived', cols: new Map(), outs: [], starRelations: [] });
    }
  }
  for (const c of withClause.ctes) {
    const cte = c.CommonTableExpr;
    if (!cte) {
      walk(c, s, acc);
      continue;
    }
    const r = statementOuts(cte.ctequery, s, acc);
    if (withClause.recursive) {
      // a recursive CTE's values went through a UNION: the server reports no origin for them
      for (const o of r.outs) consume(o, acc);
    }
    ctes.set(cte.ctename, derivedItem(cte.ctename, r, nameList(cte.aliascolnames), withClause.recursive === true));
    if (cte.search_clause || cte.cycle_clause) walkExcept(cte, ['ctequery', 'ctename', 'aliascolnames'], s, acc);
  }
  return s;
}

/** Outputs of a query node that may be SELECT or a data-modifying statement with RETURNING. */
function statementOuts(q: N, scope: Scope, acc: Acc): SelectResult {
  if (q?.SelectStmt) return selectStmt(q.SelectStmt, scope, acc);
  for (const [key, kind] of DML_KEYS) {
    if (q?.[key]) {
      acc.effects.add(kind);
      const outs = dmlStmt(kind, q[key], scope, acc);
      return { outs, names: returningNames(q[key]) };
    }
  }
  walk(q, scope, acc);
  return { outs: [], names: [] };
}

const DML_KEYS: [string, StatementKind][] = [
  ['InsertStmt', 'insert'],
  ['UpdateStmt', 'update'],
  ['DeleteStmt', 'delete'],
  ['MergeStmt', 'merge'],
];

function returningNames(n: N): (string | undefined)[] {
  return (n.returningClause?.exprs ?? []).map((x: N) => (x.ResTarget ? outputName(x.ResTarget) : undefined));
}

function derivedItem(alias: string, r: SelectResult, colnames: string[], computedAll: boolean): Item {
  const cols = new Map<string, Out>();
  const starRelations: string[] = [];
  const outs: Out[] = [];
  let hasStar = false;
  for (let i = 0; i < r.outs.length; i++) {
    const o = computedAll ? { ...r.outs[i]!, plain: false } : r.outs[i]!;
    outs.push(o);
    if (o.star) {
      hasStar = true;
      for (const [k, v] of o.star.cols) if (!cols.has(k)) cols.set(k, v);
      starRelations.push(...o.star.relations);
      continue;
    }
    const name = r.names[i];
    if (name !== undefined && !cols.has(name)) cols.set(name, o);
  }
  const item: Item = { alias, kind: 'derived', cols, outs, starRelations };
  if (colnames.length) {
    item.renamed = colnames;
    if (hasStar) item.scrambled = true;
    else {
      // positional renaming
      for (let i = 0; i < colnames.length && i < outs.length; i++) {
        const old = r.names[i];
        if (old !== undefined && cols.get(old) === outs[i]) cols.delete(old);
      }
      for (let i = 0; i < colnames.length && i < outs.length; i++) cols.set(colnames[i]!, outs[i]!);
    }
  }
  return item;
}

function lookupCte(name: string, scope: Scope | undefined): Item | undefined {
  for (let s = scope; s; s = s.parent) {
    const c = s.ctes?.get(name);
    if (c) return c;
  }
  return undefined;
}

/** Add a FROM item (and everything inside it) to `items`. */
function fromItem(n: N, scope: Scope, items: Item[], acc: Acc): void {
  if (n.RangeVar) {
    const rv = n.RangeVar;
    const alias: string = rv.alias?.aliasname ?? rv.relname;
    const cte = !rv.schemaname ? lookupCte(rv.relname, scope) : undefined;
    if (cte) {
      const colnames = nameList(rv.alias?.colnames);
      const it: Item = { ...cte, alias };
      if (colnames.length) {
        it.renamed = colnames;
        it.scrambled = true;
      }
      items.push(it);
      return;
    }
    const relation = relationName(rv);
    acc.read.add(relation);
    const colnames = nameList(rv.alias?.colnames);
    items.push({ alias, kind: 'table', relation, renamed: colnames.length ? colnames : undefined });
    return;
  }
  if (n.RangeSubselect) {
    const rs = n.RangeSubselect;
    // LATERAL or not, resolving against the enclosing items only widens what is reported
    const inner: Scope = { items: [...items], ctes: undefined, parent: scope };
    const r = statementOuts(rs.subquery, inner, acc);
    items.push(derivedItem(rs.alias?.aliasname ?? '', r, nameList(rs.alias?.colnames), false));
    return;
  }
  if (n.JoinExpr) {
    const j = n.JoinExpr;
    const members: Item[] = [];
    fromItem(j.larg, scope, members, acc);
    fromItem(j.rarg, scope, members, acc);
    items.push(...members);
    const local: Scope = { items: members, ctes: undefined, parent: scope };
    if (j.quals) walk(j.quals, local, acc);
    for (const u of nameList(j.usingClause)) {
      for (const m of members) {
        const o = itemColumn(m, u);
        if (o) consume(o, acc);
      }
    }
    if (j.isNatural) {
      // NATURAL compares every common column: which ones is a catalog question
      for (const m of members) consume(itemWhole(m), acc);
    }
    if (j.alias?.aliasname) items.push({ alias: j.alias.aliasname, kind: 'join', members });
    if (j.join_using_alias?.aliasname) items.push({ alias: j.join_using_alias.aliasname, kind: 'join', members });
    return;
  }
  if (n.RangeFunction || n.RangeTableFunc || n.JsonTable || n.RangeTableSample) {
    const v = n.RangeFunction ?? n.RangeTableFunc ?? n.JsonTable ?? n.RangeTableSample;
    const local: Scope = { items: [...items], ctes: undefined, parent: scope };
    if (n.RangeTableSample) {
      fromItem(v.relation, scope, items, acc);
      walkExcept(v, ['relation'], local, acc);
      return;
    }
    walkExcept(v, ['alias'], local, acc);
    // Unaliased, a function in FROM is still a FROM item, named after the function.
    items.push({ alias: v.alias?.aliasname ?? implicitFunctionAlias(n.RangeFunction), kind: 'other' });
    return;
  }
  walk(n, scope, acc);
}

/** PostgreSQL's name for an unaliased `FROM f(…)`: the function's own name ('' when there is none). */
function implicitFunctionAlias(rf: N): string {
  const fns = rf?.functions;
  if (!Array.isArray(fns) || fns.length !== 1) return '';
  const call = fns[0]?.List?.items?.[0]?.FuncCall;
  const names = call ? nameList(call.funcname) : [];
  return names[names.length - 1] ?? '';
}

/** Is a function (or XMLTABLE / JSON_TABLE) FROM item in reach of a column reference? */
function functionRangeVisible(scope: Scope): boolean {
  for (let s: Scope | undefined = scope; s; s = s.parent) for (const it of s.items) if (it.kind === 'other') return true;
  return false;
}

/** Walk a SELECT; returns its output columns' provenance (plain ones not yet counted as computed). */
export function selectStmt(n: N, outer: Scope, acc: Acc): SelectResult {
  const scope0 = withScope(n.withClause, outer, acc);
  if (n.op && n.op !== 'SETOP_NONE') {
    // UNION/INTERSECT/EXCEPT: values are compared and the server reports no origin for them
    const l = selectStmt(n.larg, scope0, acc);
    const r = selectStmt(n.rarg, scope0, acc);
    for (const o of l.outs) consume(o, acc);
    for (const o of r.outs) consume(o, acc);
    walkExcept(n, ['larg', 'rarg', 'withClause', 'op', 'all'], scope0, acc);
    return { outs: l.outs.map((o) => ({ ...o, plain: false, star: undefined })), names: l.names };
  }
  const items: Item[] = [];
  const scope: Scope = { items, ctes: undefined, parent: scope0 };
  for (const f of n.fromClause ?? []) fromItem(f, scope0, items, acc);

  const outs: Out[] = [];
  const names: (string | undefined)[] = [];
  for (const t of n.targetList ?? []) {
    const rt = t.ResTarget;
    if (!rt) {
      walk(t, scope, acc);
      continue;
    }
    names.push(outputName(rt));
    const v = rt.val;
    if (v?.ColumnRef) {
      const o = resolveColumnRef(v.ColumnRef, scope);
      if (!o.plain) consume(o, acc);
      outs.push(o);
    } else outs.push(tracked(v, scope, acc));
  }
  const byPosOrName = (list: N, inner: (x: N) => N): void => {
    if (!Array.isArray(list)) return;
    for (const x of list) {
      const e = inner(x);
      const pos = e?.A_Const?.ival?.ival;
      if (typeof pos === 'number' && outs[pos - 1]) consume(outs[pos - 1]!, acc);
      const f = e?.ColumnRef?.fields;
      if (f?.length === 1) {
        const nm = str(f[0]);
        for (let i = 0; i < names.length; i++) if (names[i] === nm) consume(outs[i]!, acc);
      }
      walk(x, scope, acc);
    }
  };
  byPosOrName(n.sortClause, (x) => x.SortBy?.node);
  byPosOrName(n.groupClause, (x) => x);
  byPosOrName(n.distinctClause, (x) => x);
  walkExcept(
    n,
    ['withClause', 'fromClause', 'targetList', 'sortClause', 'groupClause', 'distinctClause', 'intoClause', 'larg', 'rarg'],
    scope,
    acc,
  );
  if (n.intoClause) {
    // SELECT … INTO creates a table holding the values: nothing is masked there
    acc.effects.add('create');
    acc.written.add(relationName(n.intoClause.rel));
    for (const o of outs) consume(o, acc);
  }
  return { outs, names };
}

// ---------------------------------------------------------------------------------------------
// INSERT / UPDATE / DELETE / MERGE

function targetItem(rv: N, acc: Acc): Item {
  const relation = relationName(rv);
  acc.written.add(relation);
  return { alias: rv.alias?.aliasname ?? rv.relname, kind: 'table', relation };
}

/** Walk a data-modifying statement; returns its RETURNING outputs. */
export function dmlStmt(kind: StatementKind, n: N, outer: Scope, acc: Acc): Out[] {
  const scope0 = withScope(n.withClause, outer, acc);
  const target = targetItem(n.relation, acc);
  const items: Item[] = [target];
  const scope: Scope = { items, ctes: undefined, parent: scope0 };
  const skip = ['withClause', 'relation', 'returningClause'];
  if (kind === 'insert') {
    skip.push('cols', 'selectStmt', 'onConflictClause');
    if (n.selectStmt) {
      // the inserted values end up in a table jit does not mask on the way out
      for (const o of statementOuts(n.selectStmt, scope0, acc).outs) consume(o, acc);
    }
    if (n.onConflictClause) {
      items.push({ alias: 'excluded', kind: 'table', relation: target.relation });
      walk(n.onConflictClause, scope, acc);
      if (n.onConflictClause.action === 'ONCONFLICT_UPDATE') {
        // an upsert updates rows: an UPDATE for policy, with or without WHERE as written
        acc.effects.add('update');
        const has = n.onConflictClause.whereClause !== undefined;
        acc.hasWhere = acc.hasWhere === undefined ? has : acc.hasWhere && has;
      }
    }
  } else if (kind === 'update' || kind === 'delete') {
    skip.push(kind === 'update' ? 'fromClause' : 'usingClause', 'targetList');
    for (const f of (kind === 'update' ? n.fromClause : n.usingClause) ?? []) fromItem(f, scope0, items, acc);
    for (const t of n.targetList ?? []) walk(t.ResTarget ? t.ResTarget.val : t, scope, acc);
    const has = n.whereClause !== undefined;
    acc.hasWhere = acc.hasWhere === undefined ? has : acc.hasWhere && has;
  } else if (kind === 'merge') {
    skip.push('sourceRelation', 'mergeWhenClauses');
    fromItem(n.sourceRelation, scope0, items, acc);
    for (const w of n.mergeWhenClauses ?? []) {
      const cmd = w.MergeWhenClause?.commandType;
      if (cmd === 'CMD_UPDATE') acc.effects.add('update');
      else if (cmd === 'CMD_DELETE') acc.effects.add('delete');
      else if (cmd === 'CMD_INSERT') acc.effects.add('insert');
      if (cmd === 'CMD_UPDATE' || cmd === 'CMD_DELETE') {
        // WHEN MATCHED [AND condition] THEN UPDATE/DELETE: the condition is its WHERE, as written
        const has = w.MergeWhenClause.condition !== undefined;
        acc.hasWhere = acc.hasWhere === undefined ? has : acc.hasWhere && has;
      }
    }
    walk(n.mergeWhenClauses, scope, acc);
  }
  walkExcept(n, skip, scope, acc);
  const outs: Out[] = [];
  for (const t of n.returningClause?.exprs ?? []) {
    const v = t.ResTarget?.val;
    if (v?.ColumnRef) {
      const o = resolveColumnRef(v.ColumnRef, scope);
      if (!o.plain) consume(o, acc);
      outs.push(o);
    } else {
      walk(t, scope, acc);
      outs.push(COMPUTED);
    }
  }
  return outs;
}

// ---------------------------------------------------------------------------------------------
// whole statements

export interface StatementWalk {
  kind: StatementKind;
  acc: Acc;
  outs?: Out[];
  star?: boolean;
  copy?: { direction: 'to' | 'from'; relation?: string; columns?: string[]; query: boolean; program: boolean; stdio: boolean };
}

/** The plain output columns (and star flag) the client will receive. */
export function outputsOf(outs: Out[]): { outputs: (ColumnRef | null)[]; star: boolean } {
  const outputs: (ColumnRef | null)[] = [];
  let star = false;
  for (const o of outs) {
    if (o.star) {
      star = true;
      outputs.push(null);
    } else if (o.plain && o.refs.length === 1) outputs.push(o.refs[0]!);
    else if (o.plain && o.refs.length > 1) outputs.push({ column: o.refs[0]!.column });
    else outputs.push(null);
  }
  return { outputs, star };
}

const SIMPLE_KINDS: Record<string, StatementKind> = {
  TransactionStmt: 'transaction',
  VariableShowStmt: 'show',
  DeallocateStmt: 'deallocate',
  ListenStmt: 'listen',
  UnlistenStmt: 'listen',
  NotifyStmt: 'notify',
  VacuumStmt: 'maintenance',
  ClusterStmt: 'maintenance',
  ReindexStmt: 'maintenance',
  CheckPointStmt: 'maintenance',
  RefreshMatViewStmt: 'maintenance',
  LockStmt: 'lock',
  CreateRoleStmt: 'create-role',
  AlterRoleStmt: 'alter-role',
  AlterRoleSetStmt: 'alter-role',
  DropRoleStmt: 'drop-role',
  ViewStmt: 'create',
  IndexStmt: 'create',
  RuleStmt: 'create',
  CompositeTypeStmt: 'create',
  ImportForeignSchemaStmt: 'create',
  DefineStmt: 'create',
  RenameStmt: 'alter',
  CommentStmt: 'alter',
  SecLabelStmt: 'alter',
  ReassignOwnedStmt: 'alter',
  DropOwnedStmt: 'drop',
  DropdbStmt: 'drop',
  DropTableSpaceStmt: 'drop',
  DropSubscriptionStmt: 'drop',
  DropUserMappingStmt: 'drop',
  TruncateStmt: 'truncate',
  DiscardStmt: 'reset',
};

/** Relations a DDL statement changes: counted as written. */
const WRITES_RELATION = new Set([
  'CreateStmt',
  'AlterTableStmt',
  'IndexStmt',
  'RuleStmt',
  'CreateTrigStmt',
  'CreatePolicyStmt',
  'AlterPolicyStmt',
  'RefreshMatViewStmt',
  'ClusterStmt',
  'CreateForeignTableStmt',
  'CreateStatsStmt',
]);

const DROPPED_RELATIONS = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_SEQUENCE',
  'OBJECT_INDEX',
  'OBJECT_FOREIGN_TABLE',
]);

function defaultKind(type: string): StatementKind {
  if (type.startsWith('Create')) return 'create';
  if (type.startsWith('Alter')) return 'alter';
  if (type.startsWith('Drop')) return 'drop';
  return 'other';
}

/** True when any ANALYZE option is on: PostgreSQL lets a later repeat of the option win. */
function explainAnalyzes(options: N): boolean {
  for (const o of options ?? []) {
    const d = o.DefElem;
    if (typeof d?.defname !== 'string' || d.defname.toLowerCase() !== 'analyze') continue;
    const v = d.arg ? constLike(d.arg) : 'true';
    if (!OFF.has(v.toLowerCase())) return true;
  }
  return false;
}

function constLike(arg: N): string {
  if (arg.String) return String(arg.String.sval ?? '');
  if (arg.Boolean) return arg.Boolean.boolval ? 'true' : 'false';
  if (arg.Integer) return String(arg.Integer.ival ?? 0);
  return 'true';
}

/** Classify one top-level statement node (`{SelectStmt: …}` etc.). */
export function walkStatement(stmt: N, acc: Acc, scope: Scope = EMPTY_SCOPE): StatementWalk {
  const w = walkStatementKind(stmt, acc, scope);
  const type = stmt ? Object.keys(stmt)[0] : undefined;
  if (type) {
    const specific = specificKind(type, stmt[type]);
    if (specific) acc.effects.add(specific);
  }
  return w;
}

function walkStatementKind(stmt: N, acc: Acc, scope: Scope): StatementWalk {
  const type = stmt ? Object.keys(stmt)[0] : undefined;
  if (!type) return { kind: 'other', acc };
  const n = stmt[type];
  const simple = (kind: StatementKind): StatementWalk => {
    acc.effects.add(kind);
    return { kind, acc };
  };
  switch (type) {
    case 'SelectStmt': {
      acc.effects.add('select');
      const r = selectStmt(n, scope, acc);
      return { kind: 'select', acc, outs: r.outs };
    }
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt': {
      const kind = DML_KEYS.find(([k]) => k === type)![1];
      acc.effects.add(kind);
      const outs = dmlStmt(kind, n, scope, acc);
      return n.returningClause ? { kind, acc, outs } : { kind, acc };
    }
    case 'CopyStmt': {
      const stdio = !n.is_program && !n.filename;
      // a server-side file is its own kind, next to PROGRAM; the direction is an effect as well
      const kind: StatementKind = n.is_program ? 'copy-program' : stdio ? (n.is_from ? 'copy-from' : 'copy-to') : 'copy-file';
      acc.effects.add(kind);
      if (kind === 'copy-file') acc.effects.add(n.is_from ? 'copy-from' : 'copy-to');
      const columns = nameList(n.attlist);
      let relation: string | undefined;
      const items: Item[] = [];
      if (n.relation) {
        relation = relationName(n.relation);
        if (n.is_from) acc.written.add(relation);
        else acc.read.add(relation);
        items.push({ alias: n.relation.alias?.aliasname ?? n.relation.relname, kind: 'table', relation });
        if (!n.is_from && !stdio) {
          // table data goes to a file or program: it never passes jit's masking
          if (columns.length) for (const c of columns) acc.addComputed({ relation, column: c });
          else acc.wholeRow.add(relation);
        }
      }
      let outs: Out[] | undefined;
      if (n.query) {
        outs = statementOuts(n.query, scope, acc).outs;
        if (!stdio) for (const o of outs) consume(o, acc);
      }
      walkExcept(n, ['relation', 'query', 'attlist'], { items, ctes: undefined, parent: scope }, acc);
      const copy = {
        direction: n.is_from ? ('from' as const) : ('to' as const),
        ...(relation !== undefined ? { relation } : {}),
        ...(columns.length ? { columns } : {}),
        query: n.query !== undefined,
        program: n.is_program === true,
        stdio,
      };
      return { kind, acc, outs, copy };
    }
    case 'ExplainStmt': {
      if (explainAnalyzes(n.options)) {
        // EXPLAIN ANALYZE runs the statement: everything it does counts
        acc.effects.add('explain-analyze');
        const inner = walkStatement(n.query, acc, scope);
        for (const o of inner.outs ?? []) consume(o, acc);
        return { kind: 'explain-analyze', acc };
      }
      acc.effects.add('explain');
      // plain EXPLAIN plans without running: report what it names, not what it would do
      const sub = new Acc();
      const inner = walkStatement(n.query, sub, scope);
      for (const o of inner.outs ?? []) consume(o, sub);
      for (const r of sub.read) acc.read.add(r);
      for (const r of sub.written) acc.read.add(r);
      for (const f of sub.functions) acc.functions.add(f);
      for (const [k, v] of sub.computed) acc.computed.set(k, v);
      for (const w of sub.wholeRow) acc.wholeRow.add(w);
      if (sub.integrity) acc.integrity = sub.integrity;
      return { kind: 'explain', acc };
    }
    case 'PrepareStmt': {
      // the prepared statement runs later by EXECUTE, which names only p: judge it now
      acc.effects.add('prepare');
      const inner = walkStatement(n.query, acc, scope);
      for (const o of inner.outs ?? []) consume(o, acc);
      walk(n.argtypes, scope, acc);
      return { kind: 'prepare', acc };
    }
    case 'ExecuteStmt':
      acc.opaque = true;
      walk(n.params, scope, acc);
      return simple('execute');
    case 'DoStmt': {
      acc.opaque = true;
      const lang = defElemString(n.args, 'language') ?? 'plpgsql';
      const body = defElemString(n.args, 'as');
      if (body !== undefined && lang.toLowerCase() === 'plpgsql') lookIntoPlpgsql(body, acc);
      else acc.cannotJudge(`a DO block in language ${lang} cannot be inspected`);
      return simple('do');
    }
    case 'CallStmt':
      acc.opaque = true;
      if (n.funccall) funcCall(n.funccall, scope, acc);
      return simple('call');
    case 'CreateFunctionStmt': {
      const hasBody = n.sql_body !== undefined || (n.options ?? []).some((o: N) => o.DefElem?.defname === 'as');
      if (hasBody) acc.opaque = true;
      // BEGIN ATOMIC bodies are parsed already: what they touch counts
      walkExcept(n, ['funcname', 'parameters', 'returnType', 'options'], scope, acc);
      const lang = (defElemString(n.options, 'language') ?? 'sql').toLowerCase();
      const as = (n.options ?? []).find((o: N) => o.DefElem?.defname === 'as')?.DefElem?.arg;
      const body = as?.List ? str(as.List.items?.[0]) : str(as);
      if (body !== undefined && lang === 'sql') lookIntoSql(body, acc);
      else if (body !== undefined && lang === 'plpgsql') lookIntoPlpgsql(body, acc);
      else if (as !== undefined) acc.cannotJudge(`a function body in language ${lang} cannot be inspected`);
      return simple('create-function');
    }
    case 'DeclareCursorStmt': {
      // FETCH returns these rows later, through the same RowDescription/DataRow path as SELECT
      acc.effects.add('select');
      const r = statementOuts(n.query, scope, acc);
      return { kind: 'select', acc, outs: r.outs };
    }
    case 'CreateTableAsStmt': {
      acc.effects.add('create');
      const into = n.into?.rel;
      if (into) acc.written.add(relationName(into));
      if (n.query?.ExecuteStmt) {
        acc.opaque = true;
        walk(n.query, scope, acc);
      } else for (const o of statementOuts(n.query, scope, acc).outs) consume(o, acc);
      return { kind: 'create', acc };
    }
    case 'ViewStmt': {
      acc.effects.add('create');
      acc.written.add(relationName(n.view));
      for (const o of statementOuts(n.query, scope, acc).outs) consume(o, acc);
      walkExcept(n, ['view', 'query'], scope, acc);
      return { kind: 'create', acc };
    }
    case 'VariableSetStmt': {
      const name = typeof n.name === 'string' ? n.name.toLowerCase() : '';
      checkSetting(name, constString(n.args?.[0]), n.kind, acc);
      if (n.kind === 'VAR_RESET_ALL') {
        acc.effects.add('set-role');
        acc.effects.add('set-session-authorization');
      }
      const reset = n.kind === 'VAR_RESET' || n.kind === 'VAR_RESET_ALL';
      const kind: StatementKind = reset ? 'reset' : (ROLE_SETTINGS[name] ?? 'set');
      acc.effects.add(kind);
      return { kind, acc };
    }
    case 'DiscardStmt':
      // DISCARD ALL includes RESET ALL (and so RESET ROLE)
      if (n.target === 'DISCARD_ALL') {
        acc.effects.add('set-role');
        acc.effects.add('set-session-authorization');
      }
      return simple('reset');
    case 'GrantStmt':
    case 'GrantRoleStmt':
      walk(n, scope, acc);
      return simple(n.is_grant ? 'grant' : 'revoke');
    case 'AlterDefaultPrivilegesStmt':
      walk(n, scope, acc);
      return simple(n.action?.is_grant ? 'grant' : 'revoke');
    case 'DropStmt': {
      if (DROPPED_RELATIONS.has(n.removeType)) {
        for (const o of n.objects ?? []) {
          const parts = nameList(o.List?.items);
          if (parts.length) acc.written.add(parts.slice(-2).join('.'));
        }
      }
      return simple('drop');
    }
    case 'TruncateStmt':
      for (const r of n.relations ?? []) if (r.RangeVar) acc.written.add(relationName(r.RangeVar));
      return simple('truncate');
    case 'RenameStmt':
      if (n.renameType === 'OBJECT_ROLE') return simple('alter-role');
      break;
    case 'AlterOwnerStmt':
      break;
  }
  let kind: StatementKind = SIMPLE_KINDS[type] ?? defaultKind(type);
  if (type === 'CreateFunctionStmt') kind = 'create-function';
  acc.effects.add(kind);
  const rv = n?.relation ?? n?.table;
  if (rv && typeof rv.relname === 'string') {
    // DDL on a table: it is the statement's subject, and bare column names in it are its columns
    const relation = relationName(rv);
    if (WRITES_RELATION.has(type)) acc.written.add(relation);
    else acc.read.add(relation);
    const items: Item[] = [{ alias: rv.alias?.aliasname ?? rv.relname, kind: 'table', relation }];
    walkExcept(n, ['relation', 'table'], { items, ctes: undefined, parent: scope }, acc);
  } else walk(n, scope, acc);
  return { kind, acc };
}

// ---------------------------------------------------------------------------------------------
// specific kinds: every statement the parser knows has its own name (added to effects, next to
// the broad kind). statement-kinds.test.ts checks that no parser statement type is missing here.

/** Parser statement type → its specific kind; null where the broad kind is already specific. */
export const SPECIFIC_KINDS: Record<string, StatementKind | null> = {
  AlterCollationStmt: 'alter-collation',
  AlterDatabaseRefreshCollStmt: 'alter-database',
  AlterDatabaseSetStmt: 'alter-database',
  AlterDatabaseStmt: 'alter-database',
  AlterDefaultPrivilegesStmt: 'alter-default-privileges',
  AlterDomainStmt: 'alter-domain',
  AlterEnumStmt: 'alter-type',
  AlterEventTrigStmt: 'alter-event-trigger',
  AlterExtensionContentsStmt: 'alter-extension',
  AlterExtensionStmt: 'alter-extension',
  AlterFdwStmt: 'alter-foreign-data-wrapper',
  AlterForeignServerStmt: 'alter-server',
  AlterFunctionStmt: 'alter-function',
  AlterObjectDependsStmt: 'alter-object',
  AlterObjectSchemaStmt: 'alter-object',
  AlterOpFamilyStmt: 'alter-operator-family',
  AlterOperatorStmt: 'alter-operator',
  AlterOwnerStmt: 'alter-owner',
  AlterPolicyStmt: 'alter-policy',
  AlterPublicationStmt: 'alter-publication',
  AlterRoleSetStmt: null,
  AlterRoleStmt: null,
  AlterSeqStmt: 'alter-sequence',
  AlterStatsStmt: 'alter-statistics',
  AlterSubscriptionStmt: 'alter-subscription',
  AlterSystemStmt: 'alter-system',
  AlterTSConfigurationStmt: 'alter-text-search',
  AlterTSDictionaryStmt: 'alter-text-search',
  AlterTableMoveAllStmt: 'alter-table',
  AlterTableSpaceOptionsStmt: 'alter-tablespace',
  AlterTableStmt: 'alter-table',
  AlterTypeStmt: 'alter-type',
  AlterUserMappingStmt: 'alter-user-mapping',
  CallStmt: null,
  CheckPointStmt: 'checkpoint',
  ClosePortalStmt: 'close-cursor',
  ClusterStmt: 'cluster',
  CommentStmt: 'comment',
  CompositeTypeStmt: 'create-type',
  ConstraintsSetStmt: 'set-constraints',
  CopyStmt: null,
  CreateAmStmt: 'create-access-method',
  CreateCastStmt: 'create-cast',
  CreateConversionStmt: 'create-conversion',
  CreateDomainStmt: 'create-domain',
  CreateEnumStmt: 'create-type',
  CreateEventTrigStmt: 'create-event-trigger',
  CreateExtensionStmt: 'create-extension',
  CreateFdwStmt: 'create-foreign-data-wrapper',
  CreateForeignServerStmt: 'create-server',
  CreateForeignTableStmt: 'create-foreign-table',
  CreateFunctionStmt: null,
  CreateOpClassStmt: 'create-operator-class',
  CreateOpFamilyStmt: 'create-operator-family',
  CreatePLangStmt: 'create-language',
  CreatePolicyStmt: 'create-policy',
  CreatePublicationStmt: 'create-publication',
  CreateRangeStmt: 'create-type',
  CreateRoleStmt: null,
  CreateSchemaStmt: 'create-schema',
  CreateSeqStmt: 'create-sequence',
  CreateStatsStmt: 'create-statistics',
  CreateStmt: 'create-table',
  CreateSubscriptionStmt: 'create-subscription',
  CreateTableAsStmt: 'create-table-as',
  CreateTableSpaceStmt: 'create-tablespace',
  CreateTransformStmt: 'create-transform',
  CreateTrigStmt: 'create-trigger',
  CreateUserMappingStmt: 'create-user-mapping',
  CreatedbStmt: 'create-database',
  DeallocateStmt: null,
  DeclareCursorStmt: 'declare-cursor',
  DefineStmt: 'create-object',
  DeleteStmt: null,
  DiscardStmt: 'discard',
  DoStmt: null,
  DropOwnedStmt: 'drop-owned',
  DropRoleStmt: null,
  DropStmt: 'drop-object',
  DropSubscriptionStmt: 'drop-subscription',
  DropTableSpaceStmt: 'drop-tablespace',
  DropUserMappingStmt: 'drop-user-mapping',
  DropdbStmt: 'drop-database',
  ExecuteStmt: null,
  ExplainStmt: null,
  FetchStmt: 'fetch',
  GrantRoleStmt: 'grant-role',
  GrantStmt: null,
  ImportForeignSchemaStmt: 'import-foreign-schema',
  IndexStmt: 'create-index',
  InsertStmt: null,
  ListenStmt: null,
  LoadStmt: 'load',
  LockStmt: null,
  MergeStmt: null,
  NotifyStmt: null,
  PrepareStmt: null,
  ReassignOwnedStmt: 'reassign-owned',
  RefreshMatViewStmt: 'refresh-materialized-view',
  ReindexStmt: 'reindex',
  RenameStmt: 'rename',
  RuleStmt: 'create-rule',
  SecLabelStmt: 'security-label',
  SelectStmt: null,
  TransactionStmt: 'begin',
  TruncateStmt: null,
  UnlistenStmt: 'unlisten',
  UpdateStmt: null,
  VacuumStmt: 'vacuum',
  VariableSetStmt: null,
  VariableShowStmt: null,
  ViewStmt: 'create-view',
};

/** Parser node types that are never a top-level statement (parts of others). */
export const NOT_STATEMENTS = ['PLAssignStmt', 'RawStmt', 'ReturnStmt', 'SetOperationStmt', 'ReplicaIdentityStmt'];

const TRANSACTION_KINDS: Record<string, StatementKind> = {
  TRANS_STMT_BEGIN: 'begin',
  TRANS_STMT_START: 'begin',
  TRANS_STMT_COMMIT: 'commit',
  TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint',
  TRANS_STMT_RELEASE: 'release-savepoint',
  TRANS_STMT_ROLLBACK_TO: 'rollback-to-savepoint',
  TRANS_STMT_PREPARE: 'prepare-transaction',
  TRANS_STMT_COMMIT_PREPARED: 'commit-prepared',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback-prepared',
};

const DROP_KINDS: Record<string, StatementKind> = {
  OBJECT_TABLE: 'drop-table',
  OBJECT_VIEW: 'drop-view',
  OBJECT_MATVIEW: 'drop-materialized-view',
  OBJECT_INDEX: 'drop-index',
  OBJECT_SEQUENCE: 'drop-sequence',
  OBJECT_SCHEMA: 'drop-schema',
  OBJECT_FUNCTION: 'drop-function',
  OBJECT_PROCEDURE: 'drop-function',
  OBJECT_ROUTINE: 'drop-function',
  OBJECT_AGGREGATE: 'drop-function',
  OBJECT_EXTENSION: 'drop-extension',
  OBJECT_TYPE: 'drop-type',
  OBJECT_DOMAIN: 'drop-type',
  OBJECT_TRIGGER: 'drop-trigger',
  OBJECT_POLICY: 'drop-policy',
  OBJECT_FOREIGN_TABLE: 'drop-foreign-table',
  OBJECT_PUBLICATION: 'drop-publication',
  OBJECT_EVENT_TRIGGER: 'drop-event-trigger',
};

const DEFINE_KINDS: Record<string, StatementKind> = {
  OBJECT_AGGREGATE: 'create-aggregate',
  OBJECT_OPERATOR: 'create-operator',
  OBJECT_TYPE: 'create-type',
  OBJECT_COLLATION: 'create-collation',
};

function specificKind(type: string, n: N): StatementKind | null | undefined {
  switch (type) {
    case 'TransactionStmt':
      return TRANSACTION_KINDS[n?.kind] ?? 'begin';
    case 'DropStmt':
      return DROP_KINDS[n?.removeType] ?? 'drop-object';
    case 'DefineStmt':
      return DEFINE_KINDS[n?.kind] ?? 'create-object';
    case 'VacuumStmt':
      return n?.is_vacuumcmd ? 'vacuum' : 'analyze';
    case 'CreateTableAsStmt':
      return n?.objtype === 'OBJECT_MATVIEW' ? 'create-materialized-view' : 'create-table-as';
    case 'GrantRoleStmt':
      return n?.is_grant ? 'grant-role' : 'revoke-role';
    case 'FetchStmt':
      return n?.ismove ? 'move' : 'fetch';
  }
  return SPECIFIC_KINDS[type];
}

// ---------------------------------------------------------------------------------------------
// code bodies (DO, CREATE FUNCTION): still opaque, but what their static SQL does is reported too

const MAX_BODY_DEPTH = 3;

function defElemString(list: N, name: string): string | undefined {
  for (const o of list ?? []) {
    const d = o.DefElem;
    if (d?.defname === name) return str(d.arg);
  }
  return undefined;
}

/** Walk SQL text found inside a code body into `acc`; what cannot be parsed cannot be judged. */
function lookIntoSql(sql: string, acc: Acc): void {
  if (sql.trim() !== '') walkSqlText(sql, 'a code body', acc);
}

/**
 * Walk SQL text that will run inside this statement (a code body, text an SQL-executing function
 * runs) into `acc`, its outputs counted as computed; `what` names it in the unjudgeable reason.
 */
function walkSqlText(sql: string, what: string, acc: Acc): void {
  if (acc.bodyDepth >= MAX_BODY_DEPTH) {
    acc.cannotJudge(`${what} is nested too deeply to inspect`);
    return;
  }
  if (sql.includes('\u0000')) {
    acc.cannotJudge(`${what} contains a NUL byte`);
    return;
  }
  let tree: N;
  try {
    tree = parseSync(sql);
  } catch {
    acc.cannotJudge(`${what} does not parse`);
    return;
  }
  acc.bodyDepth++;
  try {
    for (const r of tree.stmts ?? []) {
      const w = walkStatement(r.stmt, acc);
      acc.effects.add(w.kind);
      for (const o of w.outs ?? []) consume(o, acc);
    }
  } finally {
    acc.bodyDepth--;
  }
}

function lookIntoPlpgsql(body: string, acc: Acc): void {
  if (acc.bodyDepth >= MAX_BODY_DEPTH) {
    acc.cannotJudge('a code body is nested too deeply to inspect');
    return;
  }
  let tag = 'jit';
  while (body.includes(`$${tag}$`)) tag += '_';
  // The body parses only under a return type it fits (RETURN x needs a scalar, RETURN NEXT a set).
  let tree: N;
  for (const returns of ['void', 'text', 'setof text', 'trigger']) {
    try {
      tree = parsePlPgSQLSync(`CREATE FUNCTION jit_inspect() RETURNS ${returns} LANGUAGE plpgsql AS $${tag}$${body}$${tag}$`);
      break;
    } catch {}
  }
  if (tree === undefined) {
    acc.cannotJudge('a PL/pgSQL body does not parse');
    return;
  }
  const exprs: { query: string; mode: number }[] = [];
  const collect = (v: N): void => {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) collect(x);
      return;
    }
    // EXECUTE, FOR … IN EXECUTE, RETURN QUERY EXECUTE, OPEN … FOR EXECUTE: SQL built at run time
    if (v.PLpgSQL_stmt_dynexecute || v.PLpgSQL_stmt_dynfors || v.dynquery) acc.cannotJudge('a code body runs dynamic SQL (EXECUTE)');
    const e = v.PLpgSQL_expr;
    if (e && typeof e.query === 'string') exprs.push({ query: e.query, mode: e.parseMode ?? 0 });
    for (const k in v) if (k !== 'PLpgSQL_expr') collect(v[k]);
  };
  collect(tree);
  for (const e of exprs) {
    if (e.mode === 0) lookIntoSql(e.query, acc);
    else if (e.mode === 2) lookIntoSql(`SELECT ${e.query}`, acc);
    else {
      // assignment: "target := expression"
      const at = e.query.indexOf(':=');
      if (at >= 0) lookIntoSql(`SELECT ${e.query.slice(at + 2)}`, acc);
    }
  }
}
