/**
 * The PostgreSQL gate: the one decision every statement passes before the agent forwards it,
 * whichever message carried it (simple Query, extended Execute, FunctionCall). Pure: it knows
 * nothing of sockets; the relay (agent/engines/postgres-inspect.ts) feeds it what it parsed and
 * carries out its answer in the carrier's own protocol shape.
 *
 * The order is fixed and written here only (MUST/NEVER):
 *   1. inspect  — the caller classified the text (or built an opaque statement for a Bind to an
 *                 unknown name / a FunctionCall) and judged it: `verdict`.
 *   2. policy   — `block` refuses (statement.blocked is recorded first).
 *   3. approval — `require-approval` holds the statement until a human decides, bound to exactly
 *                 `sql` + `params`; anything but an approval refuses (statement.blocked recorded
 *                 by the hold's caller, with the request id). The same for every carrier.
 *   4. audit    — nothing is forwarded unless the recorder is connected (else 57P03, fail closed);
 *                 the caller then records statement.executed before it forwards.
 *   5. forward.
 *
 * Parse is not a carrier: a statement parsed under require-approval is held at its Execute, where
 * the parameters are known; a blocked one is refused at Parse already.
 */
import type { Classification, StatementInfo } from './classify.js';
import type { Verdict } from './guard.js';
import { isValidUtf8 } from './messages.js';

/** An ErrorResponse the client gets instead of the statement's own outcome. */
export interface Refusal {
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** What a human (or the hold's fail-closed path) decided about a held statement. */
export type HoldDecision =
  | { approved: true; request?: string; scope?: 'statement' | 'session-kind' }
  | { approved: false; reason: string; request?: string; cancelled?: boolean };

/** A held statement was approved: recorded with its statement.executed event. */
export interface Approved {
  request: string | undefined;
  scope: 'statement' | 'session-kind' | undefined;
}

export type Carrier = 'simple' | 'extended' | 'function-call';

export interface GateRequest {
  carrier: Carrier;
  /** Exactly what is forwarded on approval (the whole Query text, the Parse text, the function). */
  sql: string;
  c: Classification;
  verdict: Verdict;
  /** Parameters as shown to approvers (Bind values, FunctionCall arguments; NULL as null). */
  params?: (string | null)[] | undefined;
}

export interface GateHooks {
  /** Step 2's audit: a statement refused by a rule. */
  blocked(req: GateRequest): void;
  /** Step 3: hold for a decision; records statement.blocked itself when it is not approved. */
  hold(req: GateRequest): Promise<HoldDecision>;
  /** Step 4: whether audit events reach the control plane right now. */
  recorderReady(): boolean;
}

export type GateOutcome = { forward: true; approved?: Approved } | { forward: false; refusal: Refusal };

/**
 * Run the gate. Synchronous unless the statement is held: the hot path (allow, block) costs no
 * promise, and a held statement stops the caller's reading until the decision.
 */
export function admitStatement(req: GateRequest, hooks: GateHooks): GateOutcome | Promise<GateOutcome> {
  const v = req.verdict;
  if (v.action === 'block') {
    hooks.blocked(req);
    return { forward: false, refusal: ruleRefusal(v) };
  }
  if (v.action === 'require-approval') {
    return hooks.hold(req).then((d) => {
      if (!d.approved) return { forward: false, refusal: holdRefusal(d, v.rule) };
      return recorded(hooks, { request: d.request, scope: d.scope });
    });
  }
  return recorded(hooks, undefined);
}

function recorded(hooks: GateHooks, approved: Approved | undefined): GateOutcome {
  if (!hooks.recorderReady()) return { forward: false, refusal: RECORDER_DOWN };
  return approved ? { forward: true, approved } : { forward: true };
}

/** The refusal for a statement a rule blocks. */
export function ruleRefusal(v: Verdict): Refusal {
  const rule = v.rule ?? 'jit';
  if (v.sqlstate === '42601') {
    // a syntax error is reported as the server would, not as a policy refusal
    return {
      code: '42601',
      message: v.reason.replace(/^could not parse: /, ''),
      detail: 'jit parses every statement before it is sent; this one did not parse, so nothing ran',
    };
  }
  if (v.sqlstate) {
    return { code: v.sqlstate, message: `jit: ${v.reason.replace(/^could not parse: /, '')}`, detail: `rule: ${rule}` };
  }
  const message = v.message ?? (rule === 'jit.parse-error' ? `statement refused: ${v.reason}` : `blocked by rule ${rule}`);
  return {
    code: '42501',
    message: `jit: ${message}`,
    detail: v.rules && v.rules.length > 1 ? `rules: ${v.rules.join(', ')}` : `rule: ${rule}`,
    hint: 'jit policy refuses this statement on this target; ask an admin if you need it',
  };
}

/** The refusal for a held statement that was not approved (denied, timed out, cancelled, no channel). */
export function holdRefusal(d: Extract<HoldDecision, { approved: false }>, ruleName: string | undefined): Refusal {
  const rule = ruleName ?? '?';
  if (d.cancelled) {
    return { code: '57014', message: 'canceling statement due to user request', detail: `jit: it was waiting for approval (rule ${rule})` };
  }
  return {
    code: '42501',
    message: `jit: this statement needs approval (rule ${rule}) and ${d.reason}`,
    detail: `rule: ${rule}${d.request ? `; request: ${d.request}` : ''}`,
    hint: d.request ? `jit requests ${d.request} shows the request` : 'ask an approver, or leave the statement out',
  };
}

export const RECORDER_DOWN: Refusal = {
  code: '57P03',
  message: 'jit cannot record statements right now',
  hint: 'the agent has lost its control plane; try again in a moment',
};

/** The function a FunctionCall names could not be looked up: it is never run unjudged. */
export const UNKNOWN_FUNCTION: Refusal = { code: '42501', message: 'jit: cannot tell which function this function call runs' };

/** The session settings lexing depends on (from the server's ParameterStatus). */
export interface LexSettings {
  clientEncoding: string;
  standardConformingStrings: string;
}

/** Text that is not pure ASCII is judged only as UTF-8 with standard strings (see messages.ts). */
export function settingsRefusal(sql: Buffer, s: LexSettings): Refusal | undefined {
  if (!isValidUtf8(sql)) return { code: '22021', message: 'jit: the statement text is not valid UTF-8' };
  if (s.clientEncoding !== 'UTF8' || s.standardConformingStrings !== 'on') {
    return {
      code: '0A000',
      message: 'jit: statements are inspected only with client_encoding UTF8 and standard_conforming_strings on',
      hint: "SET client_encoding = 'UTF8'; SET standard_conforming_strings = on",
    };
  }
  return undefined;
}

/** A statement whose text jit cannot see: judged by what it is (an EXECUTE of a name, a call of a function). */
export function opaqueStatement(text: string, kind: 'execute' | 'call', functions: string[]): StatementInfo {
  return {
    text,
    kind,
    relationsRead: [],
    relationsWritten: [],
    functions,
    opaque: true,
    computedColumns: [],
    wholeRowRefs: [],
    star: false,
    effects: [kind],
  };
}

/** A Bind to a statement never parsed on this connection (SQL PREPARE): judged as EXECUTE of it. */
export function unknownPreparedStatement(name: string): { sql: string; c: Classification } {
  const sql = `EXECUTE ${name}`;
  return { sql, c: { ok: true, statements: [opaqueStatement(sql, 'execute', [])] } };
}

/** A FunctionCall message, judged as a call of the function the catalog names for its OID. */
export function functionCallStatement(fn: string): { sql: string; c: Classification } {
  const sql = `FUNCTION CALL ${fn}`;
  return { sql, c: { ok: true, statements: [opaqueStatement(sql, 'call', [fn])] } };
}
