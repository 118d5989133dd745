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
import { type Guardrail, isCommandGuardrail, type MaskRule, type StatementKind } from '#shared/config/policy.js';
import type { InspectionRules } from '#shared/contract/agent.js';
import type { Classification, ColumnRef, StatementInfo } from './classify.js';
import { builtinClasses, type FunctionClass, isBuiltinFunction } from './function-classes.js';
import { columnMatches, functionFacts, type Provenance, relationMayHold, UNTRACED_RULE } from './provenance.js';

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
  /** The SQLSTATE of the refusal when it is not a policy one (42501): 42601 syntax error, 54000 too long, … */
  sqlstate?: string;
  /** Refused because a function is not in the catalog snapshot: a fresher snapshot may know it. */
  unknownFunction?: true;
}

/** Rule name reported when a query cannot be parsed. */
export const PARSE_ERROR_RULE = 'jit.parse-error';
/** Rule name reported when what a statement runs cannot be known from its text. */
export const UNJUDGEABLE_RULE = 'jit.unjudgeable';

const SEVERITY: Record<Action, number> = { allow: 0, 'require-approval': 1, block: 2 };

/** Whole-message verdict: the most severe per-statement verdict (block > require-approval > allow). */
export function judge(c: Classification, rules: InspectionRules, prov?: Provenance): Verdict {
  if (!c.ok) {
    return { action: 'block', rule: PARSE_ERROR_RULE, reason: `could not parse: ${c.error}`, ...(c.code ? { sqlstate: c.code } : {}) };
  }
  if (c.statements.length === 0) return { action: 'allow', reason: 'empty query' };
  let worst: Verdict | undefined;
  for (let i = 0; i < c.statements.length; i++) {
    const v = judgeStatement(c.statements[i]!, i, rules, prov);
    if (!worst || SEVERITY[v.action] > SEVERITY[worst.action]) worst = v;
    if (worst.action === 'block') break;
  }
  return worst!;
}

/** Verdict for one statement. */
export function judgeStatement(s: StatementInfo, index: number, rules: InspectionRules, prov?: Provenance): Verdict {
  let verdict: Verdict = { action: 'allow', statementIndex: index, reason: 'no guardrail matched' };
  let tied: string[] = [];
  for (const g of rules.guardrails ?? []) {
    if (!guardrailMatches(g, s, prov)) continue;
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
  if (verdict.action === 'block') return verdict;
  const refusedKind = defaultRefusedKind(s, rules);
  if (refusedKind) {
    return {
      action: 'block',
      rule: DEFAULT_REFUSED_RULE,
      statementIndex: index,
      message: `${refusedKind} is refused unless policy allows it: a prepared transaction outlives the session, holding its locks`,
      reason: `${s.kind} statement performs ${refusedKind}, refused by default`,
    };
  }
  if (s.unjudgeable !== undefined && anyRuleCouldApply(rules)) {
    return {
      action: 'block',
      rule: UNJUDGEABLE_RULE,
      statementIndex: index,
      message: `jit cannot judge this statement: ${s.unjudgeable}`,
      reason: `${s.kind} statement cannot be judged (${s.unjudgeable})`,
    };
  }
  const masking = rules.masking ?? [];
  if (hasColumnMasking(rules)) {
    const p = provenanceRefusal(s, rules, prov);
    if (p) {
      return {
        action: 'block',
        rule: p.rule,
        statementIndex: index,
        message: p.message,
        reason: `${s.kind} statement: ${p.message} (rule ${p.rule})`,
        ...(p.unknownFunction ? { unknownFunction: true as const } : {}),
      };
    }
  }
  if (rules.maskedComputation === 'allow') return verdict;
  const hit = maskedComputation(s, masking);
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
export function guardrailMatches(g: Guardrail, s: StatementInfo, prov?: Provenance): boolean {
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
  if (m.functionClasses?.length) {
    const classes = statementClasses(s, prov);
    if (!m.functionClasses.some((c) => classes.has(c))) return false;
  }
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

/** Kinds refused unless an allow guardrail names them: two-phase commit leaves a transaction behind the session. */
export const DEFAULT_REFUSED_KINDS: readonly StatementKind[] = ['prepare-transaction', 'commit-prepared', 'rollback-prepared'];
export const DEFAULT_REFUSED_RULE = 'jit.refused-by-default';

function defaultRefusedKind(s: StatementInfo, rules: InspectionRules): StatementKind | undefined {
  const effects = s.effects ?? [s.kind];
  for (const k of DEFAULT_REFUSED_KINDS) {
    if (!effects.includes(k)) continue;
    const allowed = (rules.guardrails ?? []).some((g) => g.action === 'allow' && g.match.kinds?.includes(k) && guardrailMatches(g, s));
    if (!allowed) return k;
  }
  return undefined;
}

/** The classes of every function a statement calls (shipped by name, or from the catalog; unknown otherwise). */
export function statementClasses(s: StatementInfo, prov?: Provenance): Set<FunctionClass> {
  const out = new Set<FunctionClass>();
  for (const fn of s.functions) {
    for (const c of builtinClasses(fn)) out.add(c);
    const facts = prov ? functionFacts(prov.functions, fn) : [];
    for (const f of facts) for (const c of f.classes) out.add(c);
    if (facts.length === 0 && !isBuiltinFunction(fn)) out.add('unknown');
  }
  return out;
}

const couldApply = new WeakMap<InspectionRules, boolean>();

/** Does any rule of the session restrict SQL at all (a block or approval guardrail, or column masking)? */
function anyRuleCouldApply(rules: InspectionRules): boolean {
  let v = couldApply.get(rules);
  if (v === undefined) {
    v = hasColumnMasking(rules) || (rules.guardrails ?? []).some((g) => g.action !== 'allow' && !isCommandGuardrail(g));
    couldApply.set(rules, v);
  }
  return v;
}

function hasColumnMasking(rules: InspectionRules): boolean {
  return (rules.masking ?? []).some((r) => r.columns.length > 0);
}

/** Relations whose rows hold sample values of other tables' columns (planner statistics). */
const STATISTICS_RELATIONS = new Set(['pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic', 'pg_statistic_ext_data']);

/**
 * Under column masking, a statement whose values may carry masked data past the RowDescription
 * check: planner statistics, values jit cannot trace, functions whose body reads masked data or
 * cannot be inspected, and functions jit does not know at all.
 */
function provenanceRefusal(
  s: StatementInfo,
  rules: InspectionRules,
  prov: Provenance | undefined,
): { rule: string; message: string; unknownFunction?: boolean } | undefined {
  if (s.untraced !== undefined) return { rule: UNTRACED_RULE, message: `${s.untraced}, and this session masks columns` };
  for (const r of s.relationsRead) {
    const bare = r.slice(r.lastIndexOf('.') + 1).toLowerCase();
    if (STATISTICS_RELATIONS.has(bare)) {
      return { rule: UNTRACED_RULE, message: `${r} holds sample values of columns, masked ones among them` };
    }
  }
  for (const op of s.operators ?? []) {
    const f = prov?.taintedOperators.get(op);
    if (f && !(f.rule && rules.maskedComputation === 'allow')) {
      return {
        rule: f.rule?.name ?? UNTRACED_RULE,
        message: `operator ${op} runs ${f.schema}.${f.name}(), which may return masked data: ${f.taint}`,
      };
    }
  }
  for (const fn of s.functions) {
    const facts = prov ? functionFacts(prov.functions, fn) : [];
    if (facts.length === 0) {
      if (isBuiltinFunction(fn)) continue;
      return {
        rule: UNTRACED_RULE,
        message: `jit does not know function ${fn}() (not built in, not in the catalog read when the session started), so it cannot tell whether it returns masked data`,
        unknownFunction: true,
      };
    }
    for (const f of facts) {
      if (f.taint === undefined) continue;
      // computing on a masked column inside a function is still computing on it
      if (f.rule && rules.maskedComputation === 'allow') continue;
      return { rule: f.rule?.name ?? UNTRACED_RULE, message: `function ${f.schema}.${f.name}() may return masked data: ${f.taint}` };
    }
  }
  return undefined;
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
