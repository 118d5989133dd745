/**
 * The inspecting relay: runs after authentication instead of the blind pipe when the session has
 * inspection rules. Every frontend message is parsed (a message that does not parse is never
 * forwarded: the client gets a FATAL 08P01 and the connection closes); every backend message is
 * framed and the ones decisions need are parsed.
 *
 * Every statement passes the one gate in src/protocol/postgres/gate.ts (inspect → policy →
 * approval → audit → forward), whichever message carries it: simple Query, extended Execute,
 * FunctionCall. This file carries out the gate's answer in the carrier's protocol shape. On the
 * way back: mask → audit (`result.masked`, once per result) → forward. A statement is NEVER
 * forwarded unless its `statement.executed` event has been handed to a connected control channel;
 * when it is down the statement is refused (57P03, fail closed).
 *
 * Refusing a statement: the statement is forwarded rewritten into a guaranteed syntax error
 * (Query / Parse) or an Execute of a portal that does not exist (Execute), and the server's
 * ErrorResponse is swapped for ours (SQLSTATE 42501, the rule in detail). The server therefore
 * fails the statement itself: an open transaction is aborted exactly as after any error, the
 * extended protocol discards until Sync, ReadyForQuery carries the server's real status.
 * A simple Query holding several statements is refused whole when any of them is refused.
 *
 * Extended protocol: a statement is classified once, at Parse, and remembered by name; Execute
 * records the Bind parameters (masked with maskForAudit) and is not re-classified. A Bind to a
 * name we never saw parsed (SQL-level PREPARE) is judged as an opaque `execute` statement.
 * FunctionCall ('F') is judged as an opaque `call` of the function named in the catalog, and held
 * for approval like any statement; its arguments are recorded (and shown to approvers) as parameters.
 *
 * Lexing depends on client_encoding and standard_conforming_strings: text that is pure ASCII
 * without backslashes lexes the same under any setting; any other text is judged only once every
 * earlier statement has completed (so settings are known from the server's ParameterStatus) and
 * only under UTF8 / on. Otherwise it is refused.
 *
 * Results: a RowDescription gets a mask plan (catalog look-up of table OID + attnum, async on a
 * cache miss: the server direction pauses; no DataRow is ever forwarded before its plan exists).
 * A value that cannot be masked safely refuses the result: our ErrorResponse, then nothing more
 * from the server until its ReadyForQuery. The server's transaction is NOT aborted by that
 * refusal (the server never saw an error); its ReadyForQuery tells the client the real status.
 */
import type { Duplex } from 'node:stream';
import type { Classification } from '#protocol/postgres/classify.js';
import { PgProtocolError } from '#protocol/postgres/codec.js';
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
import { type MaskPlan, maskCopyData, maskDataRow } from '#protocol/postgres/mask.js';
import {
  BE,
  buildDescribe,
  buildErrorResponse,
  buildExecute,
  buildFlush,
  buildParse,
  buildQuery,
  type FrontendMessage,
  isSettingsIndependentSql,
  MAX_BACKEND_MESSAGE,
  MAX_FRONTEND_MESSAGE,
  MessageFramer,
  parseCommandComplete,
  parseCopyResponse,
  parseFrontend,
  parseNoticeFields,
  parseParameterStatusMessage,
  parseRowDescription,
} from '#protocol/postgres/messages.js';
import type { InspectionRules, SessionInfo } from '#shared/contract/agent.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { Catalog } from '../catalog.js';
import type { EmitEvent } from '../events.js';
import { type AwaitApproval, awaitApproval } from './inspect/approval.js';
import { type Exec, type ResultState, StatementAudit } from './inspect/audit.js';
import { ClassificationCache } from './inspect/classification-cache.js';
import { OutBatch } from './inspect/out-batch.js';
import { REFUSE_PLAN, ResultPlanner } from './inspect/result-plans.js';

export { MAX_AUDIT_PARAM, MAX_AUDIT_SQL } from './inspect/audit.js';
/** What a refused Query/Parse is rewritten into: not a keyword, so a syntax error in any state. */
const SYNTAX_ERROR_SQL = 'JIT_REFUSED_STATEMENT';

let sharedCache: ClassificationCache | undefined;

export interface InspectDeps {
  emit: EmitEvent;
  /** True while audit events reach the control plane; false → statements are refused (fail closed). */
  recorderReady(): boolean;
  /** Push out audit events emitted so far; called before anything is forwarded to the server. */
  flushAudit?(): void;
  logger: Logger;
  clock: Clock;
  random(bytes: number): Buffer;
  /** Catalog of the target (column identities for masking, function names). */
  catalog?: Catalog;
  classifications?: ClassificationCache;
  approve?: AwaitApproval;
  /** Framing bounds (defaults: 64 MiB from the client, 1 GiB from the server). */
  maxFrontendMessage?: number;
  maxBackendMessage?: number;
}

export interface InspectContext {
  session: SessionInfo;
  rules: InspectionRules;
  target: string;
  streamId: string;
  database: string;
  /** ParameterStatus values from the login (client_encoding, standard_conforming_strings). */
  parameters: { name: string; value: string }[];
  /** Close both legs (registry-aware). */
  kill(): void;
}

interface Prepared {
  sql: string;
  c: Classification;
  verdict: Verdict;
  /** Kind for events (first statement's). */
  kind: string;
  statementName: string | undefined;
  /** Result plans seen for this statement by result-format list, with when they were made. */
  plans?: Map<string, { plan: MaskPlan | null; at: number }>;
}

interface Portal {
  name: string;
  stmt: Prepared;
  formats: string;
  params: string[] | undefined;
  /** require-approval statements: the parameters shown to approvers (NULL kept as null, not 'NULL'). */
  approvalParams?: (string | null)[] | undefined;
  /** Set from a Describe of this portal: the result's plan (null = nothing to mask / no rows). */
  plan: MaskPlan | null | undefined;
  /** A Describe of this portal is on its way (client's or ours). */
  describing: boolean;
}

type Entry =
  | { k: 'query'; execs: Exec[]; idx: number; swap?: Buffer }
  | { k: 'fcall'; exec: Exec | undefined; swap?: Buffer }
  | { k: 'parse'; name: string; prev: Prepared | undefined; swap?: Buffer }
  | { k: 'bind' }
  | { k: 'describe'; portal: Portal | undefined; synthetic: boolean }
  | { k: 'execute'; exec: Exec | undefined; portal: Portal | undefined; swap?: Buffer }
  | { k: 'close' }
  | { k: 'sync' };

/** Start relaying `client` ⇄ `server` with inspection. Returns at once; the relay lives until either side closes. */
export function runInspectingRelay(client: Duplex, server: Duplex, ctx: InspectContext, deps: InspectDeps): InspectingRelay {
  const relay = new InspectingRelay(client, server, ctx, deps);
  relay.start();
  return relay;
}

/** One client connection's inspecting relay (exported for tests). */
export class InspectingRelay {
  private readonly cf: MessageFramer;
  private readonly sf: MessageFramer;
  private readonly toServer = new OutBatch();
  private readonly toClient = new OutBatch();
  private readonly fifo: Entry[] = [];
  private readonly statements = new Map<string, Prepared>();
  private readonly portals = new Map<string, Portal>();
  private readonly verdicts = new WeakMap<Classification, Verdict>();
  private readonly audit: StatementAudit;
  private readonly plans: ResultPlanner;
  private readonly gate: GateHooks;
  private readonly cache: ClassificationCache;
  private readonly masking: boolean;
  private readonly refusedPortal: string;
  private clientBusy = false;
  private serverBusy = false;
  private clientBackoff = false;
  private serverBackoff = false;
  private clientEnded = false;
  private closed = false;
  private clientEncoding = 'UTF8';
  private standardStrings = 'on';
  /** A result was refused: drop the server's messages until its ReadyForQuery. */
  private dropping = false;
  private copyIn = false;
  private cur: ResultState | null = null;
  private lastToServerWasSync = true;
  private settledWaiters: (() => void)[] = [];
  /** Set while a statement is held for approval; aborting it stops the wait (and cancels the request). */
  private holding: AbortController | undefined;

  constructor(
    private readonly client: Duplex,
    private readonly server: Duplex,
    private readonly ctx: InspectContext,
    private readonly deps: InspectDeps,
  ) {
    this.cf = new MessageFramer(deps.maxFrontendMessage ?? MAX_FRONTEND_MESSAGE);
    this.sf = new MessageFramer(deps.maxBackendMessage ?? MAX_BACKEND_MESSAGE);
    sharedCache ??= new ClassificationCache();
    this.cache = deps.classifications ?? sharedCache;
    this.masking = ctx.rules.masking.length > 0;
    this.audit = new StatementAudit(deps, { session: ctx.session.id, target: ctx.target, stream: ctx.streamId }, ctx.rules.masking);
    this.plans = new ResultPlanner(ctx.rules.masking, { database: ctx.database, target: ctx.target }, deps.catalog, deps.logger);
    this.gate = {
      blocked: (req) => this.audit.blocked(req.c, req.verdict, req.sql, req.carrier),
      hold: (req) => this.hold(req),
      recorderReady: () => this.deps.recorderReady(),
    };
    this.refusedPortal = `jit-refused-${deps.random(12).toString('hex')}`;
    for (const p of ctx.parameters) this.noteParameter(p.name, p.value);
  }

  start(): void {
    const { client, server } = this;
    (client as Partial<import('node:net').Socket>).setNoDelay?.(true);
    (server as Partial<import('node:net').Socket>).setNoDelay?.(true);
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    server.on('data', (chunk: Buffer) => this.onServerData(chunk));
    client.on('end', () => {
      this.clientEnded = true;
      // A client that leaves while its statement is held will not read the answer: stop waiting.
      this.holding?.abort();
      if (!this.clientBusy) server.end();
    });
    server.on('end', () => {
      this.flushToClient();
      client.end();
    });
    const kill = () => this.close();
    client.on('error', kill);
    server.on('error', kill);
    client.on('close', kill);
    server.on('close', kill);
    client.resume();
    server.resume();
  }

  /** A CancelRequest for this connection: a statement held for approval is given up (true when there was one). */
  cancelHeld(): boolean {
    if (!this.holding) return false;
    this.holding.abort();
    return true;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.holding?.abort();
    for (const w of this.settledWaiters.splice(0)) w();
    this.ctx.kill();
  }

  // ---------------------------------------------------------------- client → server

  private onClientData(chunk: Buffer): void {
    this.cf.push(chunk);
    if (!this.clientBusy) this.pumpClient();
  }

  private pumpClient(): void {
    try {
      while (!this.closed && this.cf.next()) {
        const pending = this.onFrontend(this.cf.buf, this.cf.start, this.cf.end);
        if (pending) {
          this.clientBusy = true;
          this.flushToServer();
          this.client.pause();
          pending.then(
            () => {
              this.clientBusy = false;
              if (this.closed) return;
              if (!this.serverBackoff) this.client.resume();
              this.pumpClient();
              if (this.clientEnded && !this.clientBusy) this.server.end();
            },
            (err) => this.fail(err, 'client'),
          );
          return;
        }
      }
      this.flushToServer();
    } catch (err) {
      this.fail(err, 'client');
    }
  }

  private flushToServer(): void {
    if (this.toServer.empty) return;
    // Audit before forward: the events of these statements leave before the statements do.
    this.deps.flushAudit?.();
    if (!this.toServer.writeTo(this.server) && !this.serverBackoff) {
      this.serverBackoff = true;
      this.client.pause();
      this.server.once('drain', () => {
        this.serverBackoff = false;
        if (!this.clientBusy && !this.closed) this.client.resume();
      });
    }
  }

  private fail(err: unknown, side: 'client' | 'server'): void {
    if (this.closed) return;
    const log = { session: this.ctx.session.id, target: this.ctx.target, stream: this.ctx.streamId };
    if (err instanceof PgProtocolError && side === 'client') {
      this.deps.logger.warn({ ...log, err: err.message }, 'client broke the protocol; closing');
      if (this.client.writable) {
        this.flushToClient();
        this.client.end(buildErrorResponse({ severity: 'FATAL', code: err.sqlstate, message: `jit: ${err.message}` }));
      }
      this.server.destroy();
      this.closed = true;
      this.ctx.kill();
      return;
    }
    this.deps.logger.warn({ ...log, side, err: (err as Error).message }, 'inspecting relay failed; closing');
    if (this.client.writable) {
      this.client.end(buildErrorResponse({ severity: 'FATAL', code: 'XX000', message: 'jit: the agent could not follow this connection' }));
    }
    this.server.destroy();
    this.closed = true;
    this.ctx.kill();
  }

  /** Handle one frontend message; returns a promise when it must be waited for (the client then pauses). */
  private onFrontend(buf: Buffer, start: number, end: number): Promise<void> | undefined {
    // CopyData is the bulk of COPY FROM: framed, not decoded (the server ignores it outside COPY).
    if (buf[start] === 0x64 /* d */) {
      this.toServer.pass(buf, start, end);
      return undefined;
    }
    const m = parseFrontend(buf, start, end);
    switch (m.type) {
      case 'Q':
        return this.onQuery(m.sql, buf, start, end);
      case 'P':
        return this.onParse(m, buf, start, end);
      case 'B':
        this.onBind(m);
        this.forward(buf, start, end, { k: 'bind' });
        return undefined;
      case 'D': {
        const portal = m.target === 'P' ? this.portals.get(m.name) : undefined;
        if (portal) portal.describing = true;
        this.forward(buf, start, end, { k: 'describe', portal, synthetic: false });
        return undefined;
      }
      case 'E':
        return this.onExecute(m.portal, buf, start, end);
      case 'C':
        if (m.target === 'S') this.statements.delete(m.name);
        else this.portals.delete(m.name);
        this.forward(buf, start, end, { k: 'close' });
        return undefined;
      case 'S':
        this.forward(buf, start, end, { k: 'sync' });
        this.lastToServerWasSync = true;
        return undefined;
      case 'H':
        this.toServer.pass(buf, start, end);
        this.lastToServerWasSync = true;
        return undefined;
      case 'c':
      case 'f':
        this.toServer.pass(buf, start, end);
        return undefined;
      case 'F':
        return this.onFunctionCall(m, buf, start, end);
      case 'X':
        this.toServer.pass(buf, start, end);
        this.flushToServer();
        this.server.end();
        return undefined;
      case 'd':
        return undefined;
    }
  }

  private forward(buf: Buffer, start: number, end: number, entry: Entry): void {
    this.toServer.pass(buf, start, end);
    this.fifo.push(entry);
    this.lastToServerWasSync = false;
  }

  /** Settings-dependent text is judged once every earlier statement has completed (see the module comment). */
  private textCheck(sql: Buffer): Refusal | Promise<Refusal | undefined> | undefined {
    if (isSettingsIndependentSql(sql)) return undefined;
    if (this.fifo.length === 0 || this.copyIn) return this.settingsRefusal(sql);
    return this.whenSettled().then(() => this.settingsRefusal(sql));
  }

  private settingsRefusal(sql: Buffer): Refusal | undefined {
    return settingsRefusal(sql, { clientEncoding: this.clientEncoding, standardConformingStrings: this.standardStrings });
  }

  private whenSettled(): Promise<void> {
    if (!this.lastToServerWasSync) {
      // The server holds extended-protocol answers until Sync or Flush: ask for them.
      this.toServer.add(buildFlush());
      this.lastToServerWasSync = true;
    }
    this.flushToServer();
    return new Promise((resolve) => {
      if (this.fifo.length === 0) resolve();
      else this.settledWaiters.push(resolve);
    });
  }

  private verdictOf(c: Classification): Verdict {
    let v = this.verdicts.get(c);
    if (!v) {
      v = judge(c, this.ctx.rules);
      this.verdicts.set(c, v);
    }
    return v;
  }

  private onQuery(sql: Buffer, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const check = this.textCheck(sql);
    if (check instanceof Promise) {
      // The message view stays valid: chunks are never reused.
      return check.then((r) => this.query(sql, buf, start, end, r));
    }
    return this.query(sql, buf, start, end, check);
  }

  private query(sql: Buffer, buf: Buffer, start: number, end: number, textRefusal: Refusal | undefined): Promise<void> | undefined {
    if (textRefusal) {
      this.refuseQuery(textRefusal, { k: 'query', execs: [], idx: 0 });
      return undefined;
    }
    const text = sql.toString('utf8');
    const c = this.cache.get(text);
    const v = this.verdictOf(c);
    return this.carry({ carrier: 'simple', sql: text, c, verdict: v }, (out) => {
      if (out.forward) this.allowQuery(c, v, buf, start, end, out.approved);
      else this.refuseQuery(out.refusal, { k: 'query', execs: [], idx: 0 });
    });
  }

  /** Run the gate and carry out its answer; a promise while the statement is held. */
  private carry(req: GateRequest, then: (out: GateOutcome) => void): Promise<void> | undefined {
    const out = admitStatement(req, this.gate);
    if (out instanceof Promise) return out.then(then);
    then(out);
    return undefined;
  }

  private allowQuery(c: Classification, v: Verdict, buf: Buffer, start: number, end: number, approved?: Approved): void {
    const stmts = c.ok ? c.statements : [];
    const execs: Exec[] = new Array(stmts.length);
    for (let i = 0; i < stmts.length; i++) {
      const s = stmts[i]!;
      execs[i] = this.audit.executed(s.text, s.kind, 'simple', v.rule, s, { approved });
    }
    this.forward(buf, start, end, { k: 'query', execs, idx: 0 });
  }

  /** Forward a Query rewritten into a syntax error; the server's error becomes ours. */
  private refuseQuery(r: Refusal, entry: Entry & { swap?: Buffer }): void {
    entry.swap = errorFor(r);
    this.toServer.add(buildQuery(SYNTAX_ERROR_SQL));
    this.fifo.push(entry);
    this.lastToServerWasSync = false;
  }

  private onParse(m: Extract<FrontendMessage, { type: 'P' }>, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const check = this.textCheck(m.sql);
    if (check instanceof Promise) return check.then((r) => this.parse(m, buf, start, end, r));
    this.parse(m, buf, start, end, check);
    return undefined;
  }

  private parse(
    m: Extract<FrontendMessage, { type: 'P' }>,
    buf: Buffer,
    start: number,
    end: number,
    textRefusal: Refusal | undefined,
  ): void {
    const prev = this.statements.get(m.name);
    if (textRefusal) {
      this.refuseParse(m.name, prev, textRefusal);
      return;
    }
    const text = m.sql.toString('utf8');
    const c = this.cache.get(text);
    const v = this.verdictOf(c);
    if (v.action === 'block') {
      // Refused at once; require-approval passes the gate at Execute, where the parameters are known.
      this.gate.blocked({ carrier: 'extended', sql: text, c, verdict: v });
      this.refuseParse(m.name, prev, ruleRefusal(v));
      return;
    }
    const first = c.ok ? c.statements[0] : undefined;
    this.statements.set(m.name, { sql: text, c, verdict: v, kind: first?.kind ?? 'other', statementName: m.name || undefined });
    this.forward(buf, start, end, { k: 'parse', name: m.name, prev });
  }

  private refuseParse(name: string, prev: Prepared | undefined, r: Refusal): void {
    this.toServer.add(buildParse(name, SYNTAX_ERROR_SQL));
    this.fifo.push({ k: 'parse', name, prev, swap: errorFor(r) });
    this.lastToServerWasSync = false;
  }

  private onBind(m: Extract<FrontendMessage, { type: 'B' }>): void {
    let stmt = this.statements.get(m.statement);
    if (!stmt) {
      // Prepared with SQL PREPARE (judged then), or not at all: judge as EXECUTE of an opaque statement.
      const { sql, c } = unknownPreparedStatement(m.statement);
      stmt = { sql, c, verdict: this.verdictOf(c), kind: 'execute', statementName: m.statement || undefined };
    }
    // A statement's result columns cannot change under it (the server fails it instead), so a plan
    // seen for the same result formats is reused for a while instead of describing every portal.
    const formats = m.resultFormats.join(',');
    const known = stmt.plans?.get(formats);
    const plan = known && this.deps.clock.now() - known.at < STATEMENT_PLAN_TTL_MS ? known.plan : undefined;
    this.portals.set(m.portal, {
      name: m.portal,
      stmt,
      formats,
      params: this.audit.params(m.params, m.paramFormats),
      ...(stmt.verdict.action === 'require-approval' ? { approvalParams: this.audit.approvalParams(m.params, m.paramFormats) } : {}),
      plan,
      describing: false,
    });
  }

  private onExecute(name: string, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const portal = this.portals.get(name);
    if (!portal) {
      // A cursor declared in SQL (judged when declared), or no portal at all (the server says so).
      if (this.masking) this.injectDescribe(undefined, name);
      this.forward(buf, start, end, { k: 'execute', exec: undefined, portal: undefined });
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
    const exec = this.audit.executed(s.sql, s.kind, 'extended', v.rule, info, {
      params: portal.params,
      statementName: s.statementName,
      portal: portal.name || undefined,
      approved,
    });
    this.forward(buf, start, end, { k: 'execute', exec, portal });
  }

  /** Ask the server for the portal's row description ourselves (its answer is not forwarded). */
  private injectDescribe(portal: Portal | undefined, name: string): void {
    if (portal) portal.describing = true;
    this.toServer.add(buildDescribe('P', name));
    this.fifo.push({ k: 'describe', portal, synthetic: true });
  }

  /** Execute a portal that cannot exist: the server fails it (and discards until Sync); its error becomes ours. */
  private refuseExecute(r: Refusal): void {
    this.toServer.add(buildExecute(this.refusedPortal));
    this.fifo.push({ k: 'execute', exec: undefined, portal: undefined, swap: errorFor(r) });
    this.lastToServerWasSync = false;
  }

  private onFunctionCall(m: Extract<FrontendMessage, { type: 'F' }>, buf: Buffer, start: number, end: number): Promise<void> {
    const lookup = this.deps.catalog
      ? this.deps.catalog.functionName(this.ctx.database, m.oid).catch(() => undefined)
      : Promise.resolve(undefined);
    return lookup.then((fn) => {
      if (fn === undefined) {
        this.refuseFunctionCall(UNKNOWN_FUNCTION);
        return;
      }
      const { sql, c } = functionCallStatement(fn);
      const v = this.verdictOf(c);
      const params = this.audit.approvalParams(m.args, m.argFormats);
      return this.carry({ carrier: 'function-call', sql, c, verdict: v, params }, (out) => {
        if (!out.forward) return this.refuseFunctionCall(out.refusal);
        const exec = this.audit.executed(sql, 'call', 'function-call', v.rule, undefined, {
          params: this.audit.params(m.args, m.argFormats),
          approved: out.approved,
        });
        this.forward(buf, start, end, { k: 'fcall', exec });
      });
    });
  }

  /** FunctionCall answers with a result or an error, then ReadyForQuery: a refused Query has the same shape. */
  private refuseFunctionCall(r: Refusal): void {
    this.toServer.add(buildQuery(SYNTAX_ERROR_SQL));
    this.fifo.push({ k: 'fcall', exec: undefined, swap: errorFor(r) });
    this.lastToServerWasSync = false;
  }

  /**
   * The gate's hold: wait for a decision (the client's further messages wait unread: pumpClient is
   * paused on the promise). `sql` + `params` are exactly what is forwarded on approval: the decision
   * is bound to their digest (see inspect/approval.ts). A hold that ends without an approval is
   * recorded as statement.blocked with the request it filed.
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
      this.audit.blocked(req.c, v, req.sql, req.carrier, { reason: `needs approval: ${decision.reason}`, approval: decision.request });
    }
    return decision;
  }

  // ---------------------------------------------------------------- server → client

  private onServerData(chunk: Buffer): void {
    this.sf.push(chunk);
    if (!this.serverBusy) this.pumpServer();
  }

  private pumpServer(): void {
    try {
      while (!this.closed && this.sf.next()) {
        const pending = this.onBackend(this.sf.type, this.sf.buf, this.sf.start, this.sf.end);
        if (pending) {
          this.serverBusy = true;
          this.flushToClient();
          this.server.pause();
          pending.then(
            () => {
              this.serverBusy = false;
              if (this.closed) return;
              if (!this.clientBackoff) this.server.resume();
              this.pumpServer();
            },
            (err) => this.fail(err, 'server'),
          );
          return;
        }
      }
      this.flushToClient();
    } catch (err) {
      this.fail(err, 'server');
    }
  }

  private flushToClient(): void {
    if (this.toClient.empty) return;
    if (!this.toClient.writeTo(this.client) && !this.clientBackoff) {
      this.clientBackoff = true;
      this.server.pause();
      this.client.once('drain', () => {
        this.clientBackoff = false;
        if (!this.serverBusy && !this.closed) this.server.resume();
      });
    }
  }

  private pass(buf: Buffer, start: number, end: number): void {
    if (!this.dropping) this.toClient.pass(buf, start, end);
  }

  private popEntry(): void {
    this.fifo.shift();
    if (this.fifo.length === 0 && this.settledWaiters.length > 0) for (const w of this.settledWaiters.splice(0)) w();
  }

  private onBackend(type: number, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const head = this.fifo[0];
    switch (type) {
      case BE.dataRow:
        return this.onDataRow(buf, start, end);
      case BE.commandComplete: {
        const { tag, rows } = parseCommandComplete(buf, start, end);
        this.endOfResult(head, rows, tag, buf, start, end);
        return undefined;
      }
      case BE.emptyQuery:
        this.endOfResult(head, 0, undefined, buf, start, end);
        return undefined;
      case BE.portalSuspended:
        // The portal may be executed again: its plan stays.
        this.endOfResult(head, 0, 'SUSPENDED', buf, start, end);
        return undefined;
      case BE.rowDescription:
        return this.onRowDescription(head, buf, start, end);
      case BE.noData:
        if (head?.k === 'describe') {
          const portal = head.portal;
          if (portal) {
            portal.plan = null;
            portal.stmt.plans ??= new Map();
            if (portal.stmt.plans.size < 16) portal.stmt.plans.set(portal.formats, { plan: null, at: this.deps.clock.now() });
          }
          this.popEntry();
          if (head.synthetic) return undefined;
        }
        this.pass(buf, start, end);
        return undefined;
      case BE.parameterDescription:
        this.pass(buf, start, end);
        return undefined;
      case BE.parseComplete:
      case BE.bindComplete:
      case BE.closeComplete:
        if (head && (head.k === 'parse' || head.k === 'bind' || head.k === 'close')) this.popEntry();
        this.pass(buf, start, end);
        return undefined;
      case BE.error:
        this.onError(head, buf, start, end);
        return undefined;
      case BE.ready: {
        // Everything up to the Sync / Query / FunctionCall this answers is over.
        while (this.fifo.length > 0) {
          const e = this.fifo[0]!;
          this.popEntry();
          if (e.k === 'sync' || e.k === 'query' || e.k === 'fcall') break;
        }
        this.cur = null;
        this.copyIn = false;
        this.dropping = false;
        this.toClient.pass(buf, start, end);
        if (this.fifo.length === 0 && this.settledWaiters.length > 0) for (const w of this.settledWaiters.splice(0)) w();
        return undefined;
      }
      case BE.parameterStatus: {
        const p = parseParameterStatusMessage(buf, start, end);
        this.noteParameter(p.name, p.value);
        this.toClient.pass(buf, start, end);
        return undefined;
      }
      case BE.copyIn:
        this.copyIn = true;
        this.pass(buf, start, end);
        return undefined;
      case BE.copyOut:
        return this.onCopyOut(head, buf, start, end);
      case BE.copyData:
        return this.onCopyData(buf, start, end);
      default:
        // Notices, notifications, CopyDone, FunctionCallResponse, CopyBoth: relayed as they are.
        this.pass(buf, start, end);
        return undefined;
    }
  }

  private noteParameter(name: string, value: string): void {
    if (name === 'client_encoding') this.clientEncoding = value.toUpperCase().replace(/[-_]/g, '');
    else if (name === 'standard_conforming_strings') this.standardStrings = value.toLowerCase();
  }

  private currentExec(head: Entry | undefined): Exec | undefined {
    if (!head) return undefined;
    if (head.k === 'query') return head.execs[head.idx];
    if (head.k === 'execute' || head.k === 'fcall') return head.exec;
    return undefined;
  }

  private endOfResult(head: Entry | undefined, rows: number, tag: string | undefined, buf: Buffer, start: number, end: number): void {
    this.cur = null;
    this.copyIn = false;
    if (head?.k === 'query') {
      this.audit.completed(head.execs[head.idx], rows, tag);
      head.idx++;
    } else if (head?.k === 'execute') {
      this.audit.completed(head.exec, rows, tag);
      this.popEntry();
    }
    this.pass(buf, start, end);
  }

  private onError(head: Entry | undefined, buf: Buffer, start: number, end: number): void {
    const fields = parseNoticeFields(buf, start, end);
    const swap = head && 'swap' in head ? head.swap : undefined;
    if (swap && !this.dropping) this.toClient.add(swap);
    else this.pass(buf, start, end);
    this.cur = null;
    this.copyIn = false;
    if (!head || head.k === 'sync') return;
    if (head.k === 'query') {
      this.audit.completed(head.execs[head.idx], 0, undefined, fields['C']);
      return; // the rest of the Query is skipped; ReadyForQuery ends it
    }
    if (head.k === 'fcall') {
      this.audit.completed(head.exec, 0, undefined, fields['C']);
      return;
    }
    if (head.k === 'parse') {
      if (head.prev && head.name !== '') this.statements.set(head.name, head.prev);
      else this.statements.delete(head.name);
    }
    if (head.k === 'execute') this.audit.completed(head.exec, 0, undefined, fields['C']);
    // Extended protocol: the server discards everything up to the next Sync.
    while (this.fifo.length > 0 && this.fifo[0]!.k !== 'sync') {
      const e = this.fifo[0]!;
      if (e !== head && e.k === 'execute' && e.exec) this.audit.completed(e.exec, 0, undefined, 'skipped');
      if (e !== head && e.k === 'parse') {
        if (e.prev && e.name !== '') this.statements.set(e.name, e.prev);
        else this.statements.delete(e.name);
      }
      this.popEntry();
    }
  }

  // ---- results and masking

  private onRowDescription(head: Entry | undefined, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const describe = head?.k === 'describe' ? head : undefined;
    const forQuery = head?.k === 'query';
    if (!this.masking || (!forQuery && !describe?.portal && !describe?.synthetic)) {
      // Statement descriptions (formats unknown yet) and results nobody masks pass as they are.
      if (describe) this.popEntry();
      if (forQuery) this.cur = { plan: null, ref: this.currentExec(head)?.seq ?? 0, reported: false };
      if (describe?.synthetic) return undefined;
      this.pass(buf, start, end);
      return undefined;
    }
    const fields = parseRowDescription(buf, start, end);
    const apply = (plan: MaskPlan | null | 'refuse') => {
      if (describe) {
        this.popEntry();
        const portal = describe.portal;
        if (portal) {
          portal.plan = plan === 'refuse' ? REFUSE_PLAN : plan;
          if (plan !== 'refuse') {
            portal.stmt.plans ??= new Map();
            if (portal.stmt.plans.size < 16) portal.stmt.plans.set(portal.formats, { plan, at: this.deps.clock.now() });
          }
        }
        if (!describe.synthetic) this.pass(buf, start, end);
        return;
      }
      this.cur = { plan: plan === 'refuse' ? REFUSE_PLAN : plan, ref: this.currentExec(head)?.seq ?? 0, reported: false };
      this.pass(buf, start, end);
    };
    const plan = this.plans.forRow(buf.toString('latin1', start + 5, end), fields);
    if (plan instanceof Promise) return plan.then(apply);
    apply(plan);
    return undefined;
  }

  private onDataRow(buf: Buffer, start: number, end: number): undefined {
    if (this.dropping) return undefined;
    let cur = this.cur;
    if (cur === null) {
      const head = this.fifo[0];
      if (head?.k === 'execute') {
        const plan = head.portal ? head.portal.plan : undefined;
        // Rows of a portal whose description we could not get: refuse rather than guess.
        cur = { plan: plan === undefined ? (this.masking ? REFUSE_PLAN : null) : plan, ref: head.exec?.seq ?? 0, reported: false };
      } else cur = { plan: this.masking ? REFUSE_PLAN : null, ref: 0, reported: false };
      this.cur = cur;
    }
    const plan = cur.plan;
    if (plan === null) {
      this.toClient.pass(buf, start, end);
      return undefined;
    }
    const msg = buf.subarray(start, end);
    const masked = plan === REFUSE_PLAN ? null : maskDataRow(msg, plan);
    if (masked === null) {
      this.refuseResult();
      return undefined;
    }
    // maskDataRow returns the very buffer it got when nothing changed.
    if (masked === msg) this.toClient.pass(buf, start, end);
    else {
      this.toClient.add(masked);
      this.audit.masked(cur);
    }
    return undefined;
  }

  /** A value cannot be masked: our error instead of the rest, nothing more until ReadyForQuery. */
  private refuseResult(): void {
    this.toClient.add(
      buildErrorResponse({
        code: '42501',
        message: 'jit: cannot mask this result safely',
        detail: 'a value of a masked column or a detected value cannot be masked in the format it was sent in',
        hint: 'select masked columns in text format, or leave them out',
      }),
    );
    this.audit.emit('result.refused', 'failure', { ref: this.cur?.ref ?? 0 });
    this.dropping = true;
  }

  private onCopyOut(head: Entry | undefined, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    if (!this.masking) {
      this.cur = { plan: null, ref: 0, reported: false };
      this.pass(buf, start, end);
      return undefined;
    }
    const exec = this.currentExec(head);
    const info = exec?.info ?? (head?.k === 'execute' && head.portal?.stmt.c.ok ? head.portal.stmt.c.statements[0] : undefined);
    const { format, columnFormats } = parseCopyResponse(buf, start, end);
    const fmt: 'text' | 'csv' | 'binary' = format === 1 ? 'binary' : /\bcsv\b/i.test(info?.text ?? '') ? 'csv' : 'text';
    const apply = (plan: MaskPlan | null) => {
      this.cur = { plan, ref: exec?.seq ?? 0, reported: false };
      this.pass(buf, start, end);
    };
    const plan = this.plans.forCopy(info, columnFormats.length, fmt);
    if (plan instanceof Promise) return plan.then(apply);
    apply(plan);
    return undefined;
  }

  private onCopyData(buf: Buffer, start: number, end: number): undefined {
    if (this.dropping) return undefined;
    const cur = this.cur;
    if (!cur || cur.plan === null) {
      this.toClient.pass(buf, start, end);
      return undefined;
    }
    const msg = buf.subarray(start, end);
    const masked = cur.plan === REFUSE_PLAN ? null : maskCopyData(msg, cur.plan);
    if (masked === null) {
      this.refuseResult();
      return undefined;
    }
    if (masked === msg) this.toClient.pass(buf, start, end);
    else {
      this.toClient.add(masked);
      this.audit.masked(cur);
    }
    return undefined;
  }
}

/** How long a prepared statement's result plan is reused without describing again (catalog freshness). */
const STATEMENT_PLAN_TTL_MS = 60_000;

function errorFor(r: Refusal): Buffer {
  return buildErrorResponse({ code: r.code, message: r.message, detail: r.detail, hint: r.hint });
}
