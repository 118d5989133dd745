/**
 * Client → server: every frontend message of an inspected connection, decided without a socket.
 * Each statement passes the one gate in src/protocol/postgres/gate.ts whichever message carries
 * it (simple Query, extended Parse/Bind/Execute, FunctionCall); this class carries out the gate's
 * answer in the carrier's protocol shape and writes into `conn.toServer` (and `conn.due`, what
 * the server's answers will belong to).
 *
 * Refusing: a Query or Parse is forwarded rewritten into a guaranteed syntax error, an Execute as
 * an Execute of a portal that cannot exist; the server's ErrorResponse is then swapped for ours
 * (backend.ts). The server fails the statement itself, so transactions and the extended
 * protocol's discard-until-Sync behave exactly as after any error.
 *
 * Extended protocol: a statement is classified once, at Parse, and remembered by name; Execute
 * records the Bind parameters and passes the gate with them (a hold shows them to approvers). A
 * Bind to a name never parsed here (SQL-level PREPARE) is judged as an opaque `execute`.
 * FunctionCall is judged as an opaque `call` of the function the catalog names.
 *
 * Lexing depends on client_encoding and standard_conforming_strings: text that is pure ASCII
 * without backslashes lexes the same under any setting; other text is judged once every earlier
 * statement has completed (its settings are then known) and only under UTF8 / on.
 */
import type { Classification } from '#protocol/postgres/classify.js';
import { judge, type Verdict } from '#protocol/postgres/guard.js';
import {
  type Approved,
  admitStatement,
  functionCallStatement,
  type GateHooks,
  type GateOutcome,
  type GateRequest,
  type HoldDecision,
  type Refusal,
  ruleRefusal,
  settingsRefusal,
  UNKNOWN_FUNCTION,
  unknownPreparedStatement,
} from '#protocol/postgres/gate.js';
import {
  buildBind,
  buildCopyFail,
  buildDescribe,
  buildErrorResponse,
  buildExecute,
  buildFlush,
  buildParse,
  buildQuery,
  type FrontendMessage,
  isSettingsIndependentSql,
  leadingCstr,
  MAX_FRONTEND_MESSAGE,
  parseFrontend,
} from '#protocol/postgres/messages.js';
import { awaitApproval } from './approval.js';
import type { StatementAudit } from './audit.js';
import type { ClassificationCache } from './classification-cache.js';
import type { Connection, Entry, InspectContext, InspectDeps, Portal, Prepared } from './connection.js';
import type { SessionProvenance } from './session-provenance.js';

/** What a refused Query/Parse is rewritten into: not a keyword, so a syntax error in any state. */
const SYNTAX_ERROR_SQL = 'JIT_REFUSED_STATEMENT';

type Msg<T extends FrontendMessage['type']> = Extract<FrontendMessage, { type: T }>;

/** The I/O the frontend side asks of the relay shell. */
export interface FrontendIO {
  /** Write what conn.toServer holds now (audit first). */
  flushToServer(): void;
  /** The client said Terminate: end the server leg once written. */
  endServer(): void;
}

export class FrontendInspector {
  private verdicts = new WeakMap<Classification, Verdict>();
  private verdictsOf = 0;
  private readonly gate: GateHooks;
  private readonly refusedPortal: string;
  private readonly masking: boolean;
  /** Set while a statement is held for approval; aborting it stops the wait (and cancels the request). */
  private holding: AbortController | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ctx: InspectContext,
    private readonly deps: InspectDeps,
    private readonly audit: StatementAudit,
    private readonly cache: ClassificationCache,
    private readonly io: FrontendIO,
    private readonly provenance: SessionProvenance,
  ) {
    this.masking = ctx.rules.masking.length > 0;
    this.gate = {
      blocked: (req) => this.audit.blocked(req.c, req.verdict, req.sql, req.carrier, { params: req.params }),
      hold: (req) => this.hold(req),
      recorderReady: () => this.deps.recorderReady(),
    };
    this.refusedPortal = `jit-refused-${deps.random(12).toString('hex')}`;
  }

  /** Give up a statement held for approval (true when there was one). */
  abortHold(): boolean {
    if (!this.holding) return false;
    this.holding.abort();
    return true;
  }

  /** Handle one frontend message; a promise when it must be waited for (the client is then not read). */
  handle(buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const conn = this.conn;
    // CopyData is the bulk of COPY FROM: framed, not decoded (the server ignores it outside COPY).
    if (buf[start] === 0x64 /* d */) {
      conn.toServer.pass(buf, start, end);
      return undefined;
    }
    const t = buf[start];
    if ((t === 0x51 /* Q */ || t === 0x50 /* P */ || t === 0x46) /* F */ && this.provenance.needsRefresh()) {
      // The catalog may have changed (a DDL statement passed, or the snapshot is old): read it
      // again once what was sent has completed, then judge this message.
      return this.reread(() => this.handle(buf, start, end), false);
    }
    const m = parseFrontend(buf, start, end);
    switch (m.type) {
      case 'Q':
        return this.onQuery(m.sql, buf, start, end);
      case 'P':
        return this.onParse(m, buf, start, end);
      case 'B':
        this.onBind(m);
        conn.forward(buf, start, end, { k: 'bind' });
        return undefined;
      case 'D': {
        const portal = m.target === 'P' ? conn.portals.get(m.name) : undefined;
        if (portal) portal.describing = true;
        conn.forward(buf, start, end, { k: 'describe', portal, synthetic: false });
        return undefined;
      }
      case 'E':
        return this.onExecute(m.portal, buf, start, end);
      case 'C':
        if (m.target === 'S') conn.statements.delete(m.name);
        else conn.portals.delete(m.name);
        conn.forward(buf, start, end, { k: 'close' });
        return undefined;
      case 'S':
        conn.forward(buf, start, end, { k: 'sync' });
        conn.lastToServerWasSync = true;
        return undefined;
      case 'H':
        conn.toServer.pass(buf, start, end);
        conn.lastToServerWasSync = true;
        return undefined;
      case 'c':
      case 'f':
        conn.toServer.pass(buf, start, end);
        return undefined;
      case 'F':
        return this.onFunctionCall(m, buf, start, end);
      case 'X':
        conn.toServer.pass(buf, start, end);
        this.io.flushToServer();
        this.io.endServer();
        return undefined;
      case 'd':
        return undefined;
    }
  }

  // ---- oversized messages

  /**
   * A message over the frontend limit, of which only its first bytes were kept: refused in its
   * carrier's shape (the server fails a rewritten statement, so transactions and discard-until-Sync
   * behave as after any error), recorded as message.refused, and the connection stays usable.
   */
  oversized(type: number, length: number, buf: Buffer, start: number, end: number): undefined {
    const limit = this.deps.maxFrontendMessage ?? MAX_FRONTEND_MESSAGE;
    const what = OVERSIZED_WHAT[type] ?? 'message';
    const message = `jit: this ${what} is ${mib(length)}, over jit's limit of ${mib(limit)} per message`;
    const r: Refusal = {
      code: '54000',
      message,
      hint: 'send it in smaller parts (COPY … FROM STDIN for bulk data, large values as several statements)',
    };
    this.deps.emit({
      event: 'message.refused',
      session: this.ctx.session.id,
      target: this.ctx.target,
      outcome: 'failure',
      data: { stream: this.ctx.streamId, message: String.fromCharCode(type), bytes: length, limit },
    });
    const conn = this.conn;
    const name = leadingCstr(buf, start, end);
    switch (type) {
      case 0x51 /* Q */:
        this.refuseAsQuery({ k: 'query', execs: [], idx: 0 }, r);
        break;
      case 0x46 /* F */:
        this.refuseAsQuery({ k: 'fcall', exec: undefined }, r);
        break;
      case 0x50 /* P */:
        this.refuseParse(name ?? '', name === undefined ? undefined : conn.statements.get(name), r);
        break;
      case 0x42 /* B */:
        // a Bind to a statement that cannot exist: the server fails it and discards until Sync
        if (name !== undefined) conn.portals.delete(name);
        conn.send(buildBind(name ?? '', this.refusedPortal), { k: 'bind', swap: errorFor(r) });
        break;
      default:
        // CopyData: COPY … FROM STDIN fails with our reason; the server drops the client's further
        // COPY messages (outside COPY the server ignores CopyData anyway: it is dropped here)
        if (conn.copyIn) conn.toServer.add(buildCopyFail(message));
    }
    return undefined;
  }

  // ---- the gate's inputs

  /** Settings-dependent text is judged once every earlier statement has completed (see the module comment). */
  private textCheck(sql: Buffer): Refusal | Promise<Refusal | undefined> | undefined {
    if (isSettingsIndependentSql(sql)) return undefined;
    if (this.conn.due.length === 0 || this.conn.copyIn) return this.settingsRefusal(sql);
    return this.whenSettled().then(() => this.settingsRefusal(sql));
  }

  private settingsRefusal(sql: Buffer): Refusal | undefined {
    return settingsRefusal(sql, { clientEncoding: this.conn.clientEncoding, standardConformingStrings: this.conn.standardStrings });
  }

  private whenSettled(): Promise<void> {
    if (!this.conn.lastToServerWasSync) {
      // The server holds extended-protocol answers until Sync or Flush: ask for them.
      this.conn.toServer.add(buildFlush());
      this.conn.lastToServerWasSync = true;
    }
    this.io.flushToServer();
    return this.conn.settled();
  }

  private verdictOf(c: Classification): Verdict {
    const p = this.provenance;
    if (this.verdictsOf !== p.generation) {
      this.verdicts = new WeakMap();
      this.verdictsOf = p.generation;
    }
    let v = this.verdicts.get(c);
    if (!v) {
      v = judge(c, p.rules, p.prov);
      this.verdicts.set(c, v);
    }
    return v;
  }

  /** Run the gate and carry out its answer; a promise while the statement is held. */
  private carry(req: GateRequest, then: (out: GateOutcome) => void): Promise<void> | undefined {
    const out = admitStatement(req, this.gate);
    if (out instanceof Promise) return out.then(then);
    then(out);
    return undefined;
  }

  // ---- simple Query

  private onQuery(sql: Buffer, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const check = this.textCheck(sql);
    // The message view stays valid across the wait: chunks are never reused.
    if (check instanceof Promise) return check.then((r) => this.query(sql, buf, start, end, r));
    return this.query(sql, buf, start, end, check);
  }

  private query(
    sql: Buffer,
    buf: Buffer,
    start: number,
    end: number,
    textRefusal: Refusal | undefined,
    again = true,
  ): Promise<void> | undefined {
    if (textRefusal) {
      this.refuseAsQuery({ k: 'query', execs: [], idx: 0 }, textRefusal);
      return undefined;
    }
    const text = sql.toString('utf8');
    const c = this.cache.get(text);
    const v = this.verdictOf(c);
    if (v.unknownFunction && again && this.provenance.mayKnowMore())
      return this.reread(() => this.query(sql, buf, start, end, undefined, false));
    return this.carry({ carrier: 'simple', sql: text, c, verdict: v }, (out) => {
      if (out.forward) this.allowQuery(text, c, v, buf, start, end, out.approved);
      else this.refuseAsQuery({ k: 'query', execs: [], idx: 0 }, out.refusal);
    });
  }

  private allowQuery(text: string, c: Classification, v: Verdict, buf: Buffer, start: number, end: number, approved?: Approved): void {
    const stmts = c.ok ? c.statements : [];
    // The digest is the whole message's, as an approval of it binds.
    const whole = { sql: text };
    const execs = stmts.map((s) => this.audit.executed(s.text, s.kind, 'simple', v.rule, s, { approved, digestOf: whole }));
    for (const s of stmts) this.provenance.noteStatement(s.effects);
    this.conn.forward(buf, start, end, { k: 'query', execs, idx: 0 });
  }

  /**
   * A Query rewritten into a syntax error; the server's error becomes ours. A refused FunctionCall
   * takes the same shape (a result or an error, then ReadyForQuery).
   */
  private refuseAsQuery(entry: Extract<Entry, { k: 'query' | 'fcall' }>, r: Refusal): void {
    entry.swap = errorFor(r);
    this.conn.send(buildQuery(SYNTAX_ERROR_SQL), entry);
  }

  // ---- extended protocol

  private onParse(m: Msg<'P'>, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const check = this.textCheck(m.sql);
    if (check instanceof Promise) return check.then((r) => this.parse(m, buf, start, end, r));
    return this.parse(m, buf, start, end, check);
  }

  /** Read the catalog again once what was sent has completed (`fresh`: not a snapshot shared with other connections), then go on. */
  private reread(then: () => Promise<void> | undefined, fresh = true): Promise<void> {
    const p = this.provenance;
    return this.whenSettled()
      .then(() => p.refresh(fresh))
      .then(then);
  }

  private parse(
    m: Msg<'P'>,
    buf: Buffer,
    start: number,
    end: number,
    textRefusal: Refusal | undefined,
    again = true,
  ): Promise<void> | undefined {
    const prev = this.conn.statements.get(m.name);
    if (textRefusal) {
      this.refuseParse(m.name, prev, textRefusal);
      return;
    }
    const text = m.sql.toString('utf8');
    const c = this.cache.get(text);
    const v = this.verdictOf(c);
    if (v.unknownFunction && again && this.provenance.mayKnowMore())
      return this.reread(() => this.parse(m, buf, start, end, undefined, false));
    if (v.action === 'block') {
      // Refused at once; require-approval passes the gate at Execute, where the parameters are known.
      this.gate.blocked({ carrier: 'extended', sql: text, c, verdict: v });
      this.refuseParse(m.name, prev, ruleRefusal(v));
      return;
    }
    const first = c.ok ? c.statements[0] : undefined;
    this.conn.statements.set(m.name, { sql: text, c, verdict: v, kind: first?.kind ?? 'other', statementName: m.name || undefined });
    this.conn.forward(buf, start, end, { k: 'parse', name: m.name, prev });
  }

  private refuseParse(name: string, prev: Prepared | undefined, r: Refusal): void {
    this.conn.send(buildParse(name, SYNTAX_ERROR_SQL), { k: 'parse', name, prev, swap: errorFor(r) });
  }

  private onBind(m: Msg<'B'>): void {
    let stmt = this.conn.statements.get(m.statement);
    if (!stmt) {
      // Prepared with SQL PREPARE (judged then), or not at all: judge as EXECUTE of an opaque statement.
      const { sql, c } = unknownPreparedStatement(m.statement);
      stmt = { sql, c, verdict: this.verdictOf(c), kind: 'execute', statementName: m.statement || undefined };
    }
    // A statement's result columns cannot change under it (the server fails it instead), so a plan
    // seen for the same result formats is reused for a while instead of describing every portal.
    const formats = m.resultFormats.join(',');
    this.conn.portals.set(m.portal, {
      name: m.portal,
      stmt,
      formats,
      params: this.audit.params(m.params, m.paramFormats),
      ...(stmt.verdict.action === 'require-approval' ? { approvalParams: this.audit.approvalParams(m.params, m.paramFormats) } : {}),
      plan: this.conn.knownPlan(stmt, formats, this.deps.clock.now()),
      describing: false,
    });
  }

  private onExecute(name: string, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const portal = this.conn.portals.get(name);
    if (!portal) {
      // A cursor declared in SQL (judged when declared), or no portal at all (the server says so).
      if (this.masking) this.injectDescribe(undefined, name);
      this.conn.forward(buf, start, end, { k: 'execute', exec: undefined, portal: undefined });
      return undefined;
    }
    const { sql, c, verdict } = portal.stmt;
    return this.carry({ carrier: 'extended', sql, c, verdict, params: portal.approvalParams }, (out) => {
      if (out.forward) this.allowExecute(portal, verdict, buf, start, end, out.approved);
      else this.refuseExecute(out.refusal);
    });
  }

  private allowExecute(portal: Portal, v: Verdict, buf: Buffer, start: number, end: number, approved?: Approved): void {
    const s = portal.stmt;
    if (this.masking && portal.plan === undefined && !portal.describing) this.injectDescribe(portal, portal.name);
    const info = s.c.ok ? s.c.statements[0] : undefined;
    this.provenance.noteStatement(info?.effects);
    const exec = this.audit.executed(s.sql, s.kind, 'extended', v.rule, info, {
      params: portal.params,
      statementName: s.statementName,
      portal: portal.name || undefined,
      approved,
      ...(portal.approvalParams ? { digestOf: { sql: s.sql, params: portal.approvalParams } } : {}),
    });
    this.conn.forward(buf, start, end, { k: 'execute', exec, portal });
  }

  /** Ask the server for the portal's row description ourselves (its answer is not forwarded). */
  private injectDescribe(portal: Portal | undefined, name: string): void {
    if (portal) portal.describing = true;
    this.conn.send(buildDescribe('P', name), { k: 'describe', portal, synthetic: true });
  }

  /** Execute a portal that cannot exist: the server fails it (and discards until Sync); its error becomes ours. */
  private refuseExecute(r: Refusal): void {
    this.conn.send(buildExecute(this.refusedPortal), { k: 'execute', exec: undefined, portal: undefined, swap: errorFor(r) });
  }

  // ---- FunctionCall

  private onFunctionCall(m: Msg<'F'>, buf: Buffer, start: number, end: number): Promise<void> {
    const lookup = this.deps.catalog
      ? this.deps.catalog.functionName(this.ctx.database, m.oid).catch(() => undefined)
      : Promise.resolve(undefined);
    return lookup.then((fn) => {
      if (fn === undefined) {
        this.refuseAsQuery({ k: 'fcall', exec: undefined }, UNKNOWN_FUNCTION);
        return;
      }
      const { sql, c } = functionCallStatement(fn);
      const v = this.verdictOf(c);
      const params = this.audit.approvalParams(m.args, m.argFormats);
      return this.carry({ carrier: 'function-call', sql, c, verdict: v, params }, (out) => {
        if (!out.forward) return this.refuseAsQuery({ k: 'fcall', exec: undefined }, out.refusal);
        const exec = this.audit.executed(sql, 'call', 'function-call', v.rule, undefined, {
          params: this.audit.params(m.args, m.argFormats),
          approved: out.approved,
          digestOf: { sql, params },
        });
        this.conn.forward(buf, start, end, { k: 'fcall', exec });
      });
    });
  }

  // ---- the gate's hold

  /**
   * Wait for a decision (the client's further messages wait unread: the relay does not read the
   * client while a handler's promise is pending). `sql` + `params` are exactly what is forwarded
   * on approval: the decision is bound to their digest (see approval.ts). A hold that ends
   * without an approval is recorded as statement.blocked with the request it filed.
   */
  private async hold(req: GateRequest): Promise<HoldDecision> {
    const approve = this.deps.approve ?? awaitApproval;
    const v = req.verdict;
    const stmt = req.c.ok ? req.c.statements[v.statementIndex ?? 0] : undefined;
    const holding = new AbortController();
    this.holding = holding;
    let decision: HoldDecision;
    try {
      decision = await approve({
        session: this.ctx.session,
        target: this.ctx.target,
        stream: this.ctx.streamId,
        sql: req.sql,
        ...(req.params !== undefined ? { params: req.params } : {}),
        rule: v.rule,
        kind: stmt?.kind,
        signal: holding.signal,
      });
    } finally {
      if (this.holding === holding) this.holding = undefined;
    }
    if (!decision.approved) {
      this.audit.blocked(req.c, v, req.sql, req.carrier, {
        reason: `needs approval: ${decision.reason}`,
        approval: decision.request,
        params: req.params,
      });
    }
    return decision;
  }
}

/** By type byte: Q, P, B, F, d. */
const OVERSIZED_WHAT: Record<number, string> = {
  81: 'query',
  80: 'statement to prepare',
  66: 'set of parameters',
  70: 'function call',
  100: 'COPY data message',
};

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 1)} MiB`;
}

function errorFor(r: Refusal): Buffer {
  return buildErrorResponse({ code: r.code, message: r.message, detail: r.detail, hint: r.hint });
}
