/**
 * The statement guard: turns a Classification and one session's InspectionRules into a verdict.
 *
 * Order, per statement: every guardrail that matches counts and the strictest wins (block >
 * require-approval > allow; no match → allow); among equally strict ones the first in policy order
 * names the verdict (its message, its approvers) and `rules` lists them all. So an allow rule never
 * lifts a block, and an approval never releases a statement a block rule matched. Then, when
 * maskedComputation is 'refuse' (also when it is missing: fail closed), a statement that computes
 * on a masked column is blocked. The message's verdict is the most severe statement verdict
 * (block > require-approval > allow; the first statement wins a tie). An allow guardrail never
 * lifts a masking refusal: masking is data protection, guardrails are about statements.
 *
 * Matching (names compared case-insensitively, so a rule on `customers` also covers "Customers"):
 * - relations: `table` matches that table in any schema, `schema.table` exactly, `schema.*` all
 *   of a schema. An unqualified relation in a statement matches `schema.table` rules for its name
 *   too (search_path decides the schema at run time).
 * - functions: the same, on function names; a trailing `*` matches a prefix (`dblink*`).
 * - kinds: against StatementInfo.effects (the statement's own kind plus what it runs inside).
 * - withoutWhere: an UPDATE/DELETE (anywhere in the statement) without WHERE.
 * - opaque: DO, function bodies, EXECUTE, CALL.
 * A guardrail with several conditions needs all of them; one without any matches every statement.
 */
import type { Guardrail, MaskRule } from '#shared/config/policy.js';
import type { InspectionRules } from '#shared/contract/agent.js';
import type { Classification, ColumnRef, StatementInfo } from './classify.js';

export type Action = 'allow' | 'block' | 'require-approval';

export interface Verdict {
  action: Action;
  /** The deciding rule: the first, in policy order, of the strictest that matched. */
  rule?: string;
  /** Every rule that matched at the deciding strictness, when more than one did. */
  rules?: string[];
  message?: string;
  statementIndex?: number;
  reason: string;
}

/** Rule name reported when a query cannot be parsed. */
export const PARSE_ERROR_RULE = 'jit.parse-error';

const SEVERITY: Record<Action, number> = { allow: 0, 'require-approval': 1, block: 2 };

/** Whole-message verdict: the most severe per-statement verdict (block > require-approval > allow). */
export function judge(c: Classification, rules: InspectionRules): Verdict {
  if (!c.ok) return { action: 'block', rule: PARSE_ERROR_RULE, reason: `could not parse: ${c.error}` };
  if (c.statements.length === 0) return { action: 'allow', reason: 'empty query' };
  let worst: Verdict | undefined;
  for (let i = 0; i < c.statements.length; i++) {
    const v = judgeStatement(c.statements[i]!, i, rules);
    if (!worst || SEVERITY[v.action] > SEVERITY[worst.action]) worst = v;
    if (worst.action === 'block') break;
  }
  return worst!;
}

/** Verdict for one statement. */
export function judgeStatement(s: StatementInfo, index: number, rules: InspectionRules): Verdict {
  let verdict: Verdict = { action: 'allow', statementIndex: index, reason: 'no guardrail matched' };
  let tied: string[] = [];
  for (const g of rules.guardrails ?? []) {
    if (!guardrailMatches(g, s)) continue;
    if (verdict.rule !== undefined && SEVERITY[g.action] <= SEVERITY[verdict.action]) {
      if (SEVERITY[g.action] === SEVERITY[verdict.action]) tied.push(g.name);
      continue;
    }
    verdict = {
      action: g.action,
      rule: g.name,
      statementIndex: index,
      reason: `${s.kind} statement matches guardrail ${g.name}`,
    };
    if (g.message !== undefined) verdict.message = g.message;
    tied = [g.name];
  }
  if (tied.length > 1) {
    verdict.rules = tied;
    verdict.reason = `${s.kind} statement matches guardrails ${tied.join(', ')}`;
  }
  if (verdict.action === 'block' || rules.maskedComputation === 'allow') return verdict;
  const hit = maskedComputation(s, rules.masking ?? []);
  if (hit) {
    return {
      action: 'block',
      rule: hit.rule.name,
      statementIndex: index,
      message: `computing on masked column ${hit.what} is not allowed`,
      reason: `${s.kind} statement computes on masked column ${hit.what} (rule ${hit.rule.name})`,
    };
  }
  return verdict;
}

// ---------------------------------------------------------------------------------------------
// guardrails

/** Does guardrail `g` match statement `s`? Every condition given must hold. */
export function guardrailMatches(g: Guardrail, s: StatementInfo): boolean {
  const m = g.match;
  if (m.kinds?.length) {
    const effects = s.effects ?? [s.kind];
    if (!m.kinds.some((k) => k === s.kind || effects.includes(k))) return false;
  }
  if (m.relations?.length) {
    if (!anyMatch(m.relations, s.relationsRead) && !anyMatch(m.relations, s.relationsWritten)) return false;
  }
  if (m.relationsWritten?.length && !anyMatch(m.relationsWritten, s.relationsWritten)) return false;
  if (m.functions?.length && !anyMatch(m.functions, s.functions)) return false;
  if (m.withoutWhere && s.hasWhere !== false) return false;
  if (m.opaque && !s.opaque) return false;
  return true;
}

function anyMatch(patterns: string[], names: string[]): boolean {
  for (const p of patterns) for (const n of names) if (nameMatches(p, n)) return true;
  return false;
}

/**
 * `pattern` against a (possibly schema-qualified) object name: `x` any schema's x, `s.x` exactly
 * (or an unqualified x), `s.*` everything in s; a trailing `*` on the last part is a prefix.
 */
export function nameMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const n = name.toLowerCase();
  const pd = p.lastIndexOf('.');
  const nd = n.lastIndexOf('.');
  const pSchema = pd >= 0 ? p.slice(0, pd) : undefined;
  const pName = pd >= 0 ? p.slice(pd + 1) : p;
  const nSchema = nd >= 0 ? n.slice(0, nd) : undefined;
  const nName = nd >= 0 ? n.slice(nd + 1) : n;
  if (pSchema !== undefined && nSchema !== undefined && pSchema !== nSchema) return false;
  if (pSchema !== undefined && nSchema === undefined && pName === '*') return false;
  if (pName === '*') return true;
  if (pName.endsWith('*')) return nName.startsWith(pName.slice(0, -1));
  return pName === nName;
}

// ---------------------------------------------------------------------------------------------
// masked computation

function maskedComputation(s: StatementInfo, masking: MaskRule[]): { rule: MaskRule; what: string } | undefined {
  if (s.computedColumns.length === 0 && s.wholeRowRefs.length === 0) return undefined;
  for (const rule of masking) {
    for (const pattern of rule.columns ?? []) {
      const parts = pattern.toLowerCase().split('.');
      for (const c of s.computedColumns) if (columnMatches(parts, c)) return { rule, what: describe(c) };
      for (const r of s.wholeRowRefs) if (relationMayHold(parts, r)) return { rule, what: `${r}.*` };
    }
  }
  return undefined;
}

function describe(c: ColumnRef): string {
  return c.relation ? `${c.relation}.${c.column}` : c.column;
}

/** Mask pattern parts (`column` | `table.column` | `schema.table.column`) against a column ref. */
function columnMatches(parts: string[], c: ColumnRef): boolean {
  const col = parts[parts.length - 1];
  if (c.column.toLowerCase() !== col) return false;
  if (parts.length === 1 || c.relation === undefined) return true;
  return relationMatches(parts.slice(0, -1), c.relation.toLowerCase());
}

/** Could relation `rel` (used whole-row) contain the column the pattern names? */
function relationMayHold(parts: string[], rel: string): boolean {
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
