/**
 * The inspecting relay's audit trail for one connection: statement.executed / .blocked /
 * .completed and result.masked / .refused events, in the shapes docs/audit.md describes. SQL text
 * and parameter values are cut at MAX_AUDIT_SQL / MAX_AUDIT_PARAM; parameters are masked with the
 * session's masking rules before they are recorded or shown to approvers.
 */
import type { Classification, StatementInfo } from '#protocol/postgres/classify.js';
import type { Approved, Carrier } from '#protocol/postgres/gate.js';
import type { Verdict } from '#protocol/postgres/guard.js';
import { describeMasking, type MaskPlan, maskForAudit } from '#protocol/postgres/mask.js';
import type { MaskRule } from '#shared/config/policy.js';
import { statementDigest } from '#shared/contract/agent.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { EmitEvent } from '../../events.js';

/** SQL text and parameter values in audit events are cut at these sizes. */
export const MAX_AUDIT_SQL = 16 * 1024;
export const MAX_AUDIT_PARAM = 4 * 1024;
/** Statements whose digest is remembered for their result.masked event at once (a pipeline's depth). */
const MAX_RUNNING = 4096;

/** A statement on its way: the reference its completion is recorded against. */
export interface Exec {
  seq: number;
  /** statementDigest of what ran, as approvals compute it (audit, approvals and replay join on it). */
  digest: string;
  started: number;
  info: StatementInfo | undefined;
}

/** One result's masking state (the plan, the statement it answers, whether result.masked went out). */
export interface ResultState {
  plan: MaskPlan | null;
  ref: number;
  reported: boolean;
}

export interface ExecutedDetails {
  params?: string[] | undefined;
  statementName?: string | undefined;
  portal?: string | undefined;
  approved?: Approved | undefined;
  /** What the digest is of, when not `sql` + `params`: the whole message, or the approvers' parameters. */
  digestOf?: { sql: string; params?: readonly (string | null)[] | undefined } | undefined;
}

export class StatementAudit {
  private seq = 0;
  /** Digests of statements whose completion is still due, by seq (for result.masked). */
  private readonly running = new Map<number, string>();

  constructor(
    private readonly deps: { emit: EmitEvent; clock: Clock },
    private readonly where: { session: string; target: string; stream: string },
    private readonly masking: MaskRule[],
  ) {}

  emit(event: string, outcome: 'success' | 'failure' | 'info', data: Record<string, unknown>): void {
    this.deps.emit({
      event,
      session: this.where.session,
      target: this.where.target,
      outcome,
      data: { stream: this.where.stream, ...data },
    });
  }

  /** Record a statement about to be forwarded; returns the Exec its completion refers to. */
  executed(
    sql: string,
    kind: string,
    protocol: Carrier,
    rule: string | undefined,
    info: StatementInfo | undefined,
    d: ExecutedDetails = {},
  ): Exec {
    const seq = ++this.seq;
    const digest = statementDigest(d.digestOf?.sql ?? sql, d.digestOf ? d.digestOf.params : d.params);
    const data: Record<string, unknown> = { seq, sql: clip(sql), digest, protocol, kind };
    if (sql.length > MAX_AUDIT_SQL) data['truncated'] = true;
    if (d.approved) {
      // The approval the statement runs under (its request id at the control plane).
      data['approval'] = d.approved.request ?? 'unknown';
      if (d.approved.scope) data['approvalScope'] = d.approved.scope;
    }
    if (d.params) data['params'] = d.params;
    if (d.statementName) data['statementName'] = d.statementName;
    if (d.portal) data['portal'] = d.portal;
    if (rule) data['rule'] = rule;
    this.emit('statement.executed', 'success', data);
    if (this.running.size < MAX_RUNNING) this.running.set(seq, digest);
    return { seq, digest, started: this.deps.clock.now(), info };
  }

  /** A statement a rule (or a hold that was not approved) refused. */
  blocked(
    c: Classification,
    v: Verdict,
    sql: string,
    protocol: Carrier,
    extra: { reason?: string; approval?: string; params?: readonly (string | null)[] | undefined } = {},
  ): void {
    const s = c.ok ? c.statements[v.statementIndex ?? 0] : undefined;
    this.emit('statement.blocked', 'failure', {
      sql: clip(s?.text ?? sql),
      digest: statementDigest(sql, extra.params),
      rule: v.rule ?? 'jit',
      reason: extra.reason ?? v.reason,
      kind: s?.kind ?? 'other',
      protocol,
      ...(extra.approval ? { approval: extra.approval } : {}),
    });
  }

  completed(exec: Exec | undefined, rows: number, tag: string | undefined, sqlstate?: string): void {
    if (!exec) return;
    this.running.delete(exec.seq);
    const data: Record<string, unknown> = { ref: exec.seq, digest: exec.digest, rows, durationMs: this.deps.clock.now() - exec.started };
    if (tag) data['command'] = tag;
    if (sqlstate) data['sqlstate'] = sqlstate;
    this.emit('statement.completed', sqlstate ? 'failure' : 'success', data);
  }

  /** result.masked, once per result. */
  masked(cur: ResultState): void {
    if (cur.reported || !cur.plan) return;
    cur.reported = true;
    const d = describeMasking(cur.plan);
    const digest = this.running.get(cur.ref);
    this.emit('result.masked', 'info', {
      ref: cur.ref,
      ...(digest ? { digest } : {}),
      columns: d.columns.map((c) => c.name),
      rule: [...new Set([...d.columns.map((c) => c.rule), ...d.detectorRules])].join(','),
    });
  }

  /** Bind / FunctionCall values as recorded: text cut, binary as hex, masked; undefined when there are none. */
  params(values: (Buffer | null)[], formats: number[]): string[] | undefined {
    if (values.length === 0) return undefined;
    const out = new Array<string>(values.length);
    for (let i = 0; i < values.length; i++) {
      const p = values[i]!;
      const f = formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : formats[i]!;
      let s: string;
      if (p === null) s = 'NULL';
      else if (f === 0) s = p.toString('utf8', 0, Math.min(p.length, MAX_AUDIT_PARAM));
      else s = `\\x${p.subarray(0, MAX_AUDIT_PARAM / 2).toString('hex')}`;
      out[i] = this.masking.length > 0 && p !== null ? maskForAudit(s, this.masking) : s;
    }
    return out;
  }

  /** The same values as shown to approvers: NULL kept as null, not 'NULL'. */
  approvalParams(values: (Buffer | null)[], formats: number[]): (string | null)[] | undefined {
    return this.params(values, formats)?.map((p, i) => (values[i] === null ? null : p));
  }
}

export function clip(sql: string): string {
  return sql.length > MAX_AUDIT_SQL ? sql.slice(0, MAX_AUDIT_SQL) : sql;
}
