/**
 * Masking by provenance: where a value comes from, decided with the parser and the target's
 * catalog, not only by the table/column PostgreSQL reports in a RowDescription.
 *
 * The server reports a result column's origin only when the column is a plain reference, and then
 * names the relation the query named: a view's column, a child table's column. So, per database,
 * the agent reads a catalog snapshot (views with their definitions, the database's own functions
 * with their bodies, table inheritance) and derives from it and a session's masking rules:
 * - `masks`: extra column rules for view and materialised-view columns (and inherited or partition
 *   columns) whose value is, or is computed from, a masked column — resolved through views over
 *   views, and through functions the view calls. The planner masks them like the base column and
 *   the guard refuses computing on them, because they are the same data under another name.
 * - per function of the database: its classes (user-defined, security-definer, plus shipped
 *   classes by name) and `taint`, why its value may carry masked data — its body reads a masked
 *   column (or a view column that carries one), calls a tainted function, or cannot be inspected
 *   (dynamic SQL, a language jit cannot read, an aggregate). Calling a tainted function under
 *   masking is refused by the guard.
 *
 * Pure: the agent's catalog (agent/catalog.ts) reads the snapshot; nothing here does I/O.
 */
import { parseSync } from 'libpg-query';
import type { MaskRule } from '#shared/config/policy.js';
import { Acc, type ColumnRef, type Out, sourcesOf, walkStatement } from './classify-walk.js';
import { classifySql } from './classify.js';
import { builtinClasses, type FunctionClass, isBuiltinFunction } from './function-classes.js';

export interface CatalogView {
  schema: string;
  name: string;
  /** column names in attnum order */
  columns: string[];
  /** pg_get_viewdef under an empty search_path (every relation qualified) */
  definition: string;
}

export interface CatalogFunction {
  schema: string;
  name: string;
  language: string;
  /** pg_get_functiondef (CREATE OR REPLACE FUNCTION …) for SQL and PL/pgSQL functions, else null */
  definition: string | null;
  securityDefiner: boolean;
  /** part of an installed extension */
  extension: boolean;
  /** f function, p procedure, a aggregate, w window */
  kind: string;
}

export interface CatalogSnapshot {
  views: CatalogView[];
  functions: CatalogFunction[];
  /** user-defined operators (OID ≥ 16384) and the function each runs */
  operators?: { schema: string; name: string; functionSchema: string; function: string }[];
  /** direct inheritance and partitions: 'schema.table' pairs */
  inherits: { parent: string; child: string }[];
}

export interface FunctionFacts {
  schema: string;
  name: string;
  classes: FunctionClass[];
  /** why its value may carry masked data; undefined when it cannot */
  taint?: string;
  /** the masking rule its taint comes from (undefined: provenance unknown) */
  rule?: MaskRule;
}

export interface Provenance {
  /** column rules for view / child-table columns that carry masked data (in addition to the session's) */
  masks: MaskRule[];
  /** every view and materialised view analysed: 'schema.name', lowercase */
  views: ReadonlySet<string>;
  /** the database's own functions by bare lowercase name (every overload and schema) */
  functions: ReadonlyMap<string, FunctionFacts[]>;
  /** user-defined operators whose function is tainted, by operator name: the function's facts */
  taintedOperators: ReadonlyMap<string, FunctionFacts>;
}

/** Rule name for values masked or refused because where they come from cannot be told. */
export const UNTRACED_RULE = 'jit.untraced';

const MAX_ROUNDS = 16;

/** Derive the session's provenance from a catalog snapshot and its masking rules. */
export function deriveProvenance(snap: CatalogSnapshot, rules: readonly MaskRule[]): Provenance {
  const columnRules = rules.filter((r) => r.columns.length > 0);
  const views = new Set(snap.views.map((v) => `${v.schema}.${v.name}`.toLowerCase()));
  const functions = new Map<string, FunctionFacts[]>();
  const analysed: { facts: FunctionFacts; calls: string[]; columns: ColumnRef[]; wholeRows: string[] }[] = [];
  for (const f of snap.functions) {
    const facts: FunctionFacts = { schema: f.schema, name: f.name, classes: classesOf(f) };
    const key = f.name.toLowerCase();
    functions.set(key, [...(functions.get(key) ?? []), facts]);
    const a = analyseFunction(f);
    if (typeof a === 'string') facts.taint = a;
    else analysed.push({ facts, ...a });
  }
  if (columnRules.length === 0) return { masks: [], views, functions, taintedOperators: new Map() };

  const masks: MaskRule[] = [];
  const known = new Set<string>();
  const addMask = (rule: MaskRule, column: string): boolean => {
    const k = column.toLowerCase();
    if (known.has(k)) return false;
    known.add(k);
    masks.push({ ...rule, columns: [column] });
    return true;
  };
  for (const [rule, col] of inheritedColumns(snap.inherits, columnRules)) addMask(rule, col);

  const parsedViews = snap.views.map((v) => ({ v, parsed: parseView(v) }));
  const untracedRule = (base: MaskRule): MaskRule => ({ ...base, name: UNTRACED_RULE, style: 'full' });
  for (let round = 0; round < MAX_ROUNDS; round++) {
    let changed = false;
    const all = [...columnRules, ...masks];
    for (const { v, parsed } of parsedViews) {
      // view.column (any schema): COPY and the guard may name the view without its schema
      const qualified = (c: string) => `${v.name}.${c}`;
      if (typeof parsed === 'string') {
        // cannot tell which column is which: every column of the view is masked
        for (const c of v.columns) changed = addMask(untracedRule(columnRules[0]!), qualified(c)) || changed;
        continue;
      }
      const tainted = parsed.calls.map((c) => taintOf(functions, c)).find((t) => t !== undefined);
      for (let i = 0; i < v.columns.length; i++) {
        const src = parsed.outputs[i];
        const hit = tainted
          ? (tainted.rule ?? untracedRule(columnRules[0]!))
          : src
            ? maskHit(all, src.columns, src.wholeRows)
            : untracedRule(columnRules[0]!);
        if (hit) changed = addMask(hit, qualified(v.columns[i]!)) || changed;
      }
    }
    const withViews = [...columnRules, ...masks];
    for (const a of analysed) {
      if (a.facts.taint !== undefined) continue;
      const hit = maskHit(withViews, a.columns, a.wholeRows);
      if (hit) {
        a.facts.taint = `it reads masked data (rule ${hit.name})`;
        a.facts.rule = hit;
        changed = true;
        continue;
      }
      for (const c of a.calls) {
        const t = taintOf(functions, c);
        if (t && t !== a.facts) {
          a.facts.taint = `it calls ${t.name}(), which ${t.taint}`;
          if (t.rule) a.facts.rule = t.rule;
          changed = true;
          break;
        }
      }
    }
    if (!changed) break;
  }
  const taintedOperators = new Map<string, FunctionFacts>();
  for (const op of snap.operators ?? []) {
    const t = taintOf(functions, `${op.functionSchema}.${op.function}`);
    if (t) {
      taintedOperators.set(op.name, t);
      taintedOperators.set(`${op.schema}.${op.name}`, t);
    }
  }
  return { masks, views, functions, taintedOperators };
}

function classesOf(f: CatalogFunction): FunctionClass[] {
  const out = new Set<FunctionClass>(builtinClasses(f.name));
  if (!f.extension) out.add('user-defined');
  if (f.securityDefiner) out.add('security-definer');
  return [...out];
}

/** What a function's body reads and calls, or why it cannot be told. */
function analyseFunction(f: CatalogFunction): { calls: string[]; columns: ColumnRef[]; wholeRows: string[] } | string {
  const lang = f.language.toLowerCase();
  if (f.kind === 'a') return f.extension ? { calls: [], columns: [], wholeRows: [] } : 'it is an aggregate jit cannot look into';
  if (lang !== 'sql' && lang !== 'plpgsql') {
    // C and internal functions can only be installed by a superuser, in practice with an extension
    if (f.extension && (lang === 'c' || lang === 'internal')) return { calls: [], columns: [], wholeRows: [] };
    return `its body (language ${f.language}) cannot be inspected`;
  }
  if (!f.definition) return 'its body could not be read';
  const c = classifySql(f.definition);
  if (!c.ok) return `its body cannot be parsed (${c.error})`;
  const s = c.statements[0];
  if (!s) return 'its body could not be read';
  if (s.unjudgeable) return s.unjudgeable.replace(/^a code body /, 'its body ');
  if (s.untraced) return s.untraced;
  return {
    calls: s.functions,
    columns: s.computedColumns,
    wholeRows: s.wholeRowRefs,
  };
}

function taintOf(functions: ReadonlyMap<string, FunctionFacts[]>, name: string): FunctionFacts | undefined {
  return functionFacts(functions, name).find((f) => f.taint !== undefined);
}

/** The database functions a (possibly qualified) name may call: every overload, in the named schema when given. */
export function functionFacts(functions: ReadonlyMap<string, FunctionFacts[]>, name: string): FunctionFacts[] {
  const n = name.toLowerCase();
  const dot = n.lastIndexOf('.');
  const bare = dot >= 0 ? n.slice(dot + 1) : n;
  const schema = dot >= 0 ? n.slice(0, dot) : undefined;
  const all = functions.get(bare) ?? [];
  return schema === undefined ? all : all.filter((f) => f.schema.toLowerCase() === schema);
}

/** Is this name neither built in nor a function of the database? */
export function isUnknownFunction(p: Provenance, name: string): boolean {
  return !isBuiltinFunction(name) && functionFacts(p.functions, name).length === 0;
}

/** A view's output columns: where each comes from, and which functions it calls. */
function parseView(v: CatalogView): { outputs: { columns: ColumnRef[]; wholeRows: string[] }[]; calls: string[] } | string {
  let tree: { stmts?: { stmt?: unknown }[] };
  try {
    tree = parseSync(v.definition) as typeof tree;
  } catch {
    return 'its definition does not parse';
  }
  const stmt = tree.stmts?.[0]?.stmt;
  if (!stmt || (tree.stmts?.length ?? 0) !== 1) return 'its definition is not one query';
  const acc = new Acc();
  let outs: Out[] | undefined;
  try {
    outs = walkStatement(stmt, acc).outs;
  } catch {
    return 'its definition is too deeply nested';
  }
  if (!outs || acc.unjudgeable || acc.untraced) return 'its definition cannot be traced';
  // pg_get_viewdef expands `*`: one output per column, in order
  if (outs.some((o) => o.star) || outs.length !== v.columns.length) return 'its columns do not line up with its definition';
  return { outputs: outs.map(sourcesOf), calls: [...acc.functions] };
}

/** Child tables (inheritance, partitions) of tables a rule names carry the same columns. */
function inheritedColumns(inherits: CatalogSnapshot['inherits'], rules: readonly MaskRule[]): [MaskRule, string][] {
  const out: [MaskRule, string][] = [];
  if (inherits.length === 0) return out;
  const children = new Map<string, string[]>();
  for (const { parent, child } of inherits) {
    const p = parent.toLowerCase();
    children.set(p, [...(children.get(p) ?? []), child]);
  }
  for (const rule of rules) {
    for (const pattern of rule.columns) {
      const parts = pattern.toLowerCase().split('.');
      if (parts.length < 2) continue; // a bare column name already matches every table
      const col = pattern.slice(pattern.lastIndexOf('.') + 1);
      const seen = new Set<string>();
      const queue = [...children.keys()].filter((p) => relationMatches(parts.slice(0, -1), p));
      while (queue.length) {
        const p = queue.shift()!;
        for (const c of children.get(p) ?? []) {
          const lc = c.toLowerCase();
          if (seen.has(lc)) continue;
          seen.add(lc);
          out.push([rule, `${c.slice(c.lastIndexOf('.') + 1)}.${col}`]);
          queue.push(lc);
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// matching column rules (shared with the guard)

/** The first rule that names one of these columns, or a column one of these relations may hold (used whole). */
export function maskHit(rules: readonly MaskRule[], columns: readonly ColumnRef[], wholeRows: readonly string[]): MaskRule | undefined {
  if (columns.length === 0 && wholeRows.length === 0) return undefined;
  for (const rule of rules) {
    for (const pattern of rule.columns ?? []) {
      const parts = pattern.toLowerCase().split('.');
      for (const c of columns) if (columnMatches(parts, c)) return rule;
      for (const r of wholeRows) if (relationMayHold(parts, r)) return rule;
    }
  }
  return undefined;
}

/** Mask pattern parts (`column` | `table.column` | `schema.table.column`) against a column ref. */
export function columnMatches(parts: string[], c: ColumnRef): boolean {
  const col = parts[parts.length - 1];
  if (c.column.toLowerCase() !== col) return false;
  if (parts.length === 1 || c.relation === undefined) return true;
  return relationMatches(parts.slice(0, -1), c.relation.toLowerCase());
}

/** Could relation `rel` (used whole-row) contain the column the pattern names? */
export function relationMayHold(parts: string[], rel: string): boolean {
  if (parts.length === 1) return true; // any table may have a column of that name
  return relationMatches(parts.slice(0, -1), rel.toLowerCase());
}

function relationMatches(tableParts: string[], rel: string): boolean {
  const dot = rel.lastIndexOf('.');
  const relTable = dot >= 0 ? rel.slice(dot + 1) : rel;
  const relSchema = dot >= 0 ? rel.slice(0, dot) : undefined;
  const table = tableParts[tableParts.length - 1];
  if (relTable !== table) return false;
  if (tableParts.length === 1 || relSchema === undefined) return true;
  return tableParts.slice(0, -1).join('.') === relSchema;
}
