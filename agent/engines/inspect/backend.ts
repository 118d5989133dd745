/**
 * Server → client: every backend message of an inspected connection, decided without a socket.
 * Each answer is matched to the oldest message still due (connection.ts); on the way back:
 * mask → audit (`statement.completed`, `result.masked` once per result) → forward into
 * `conn.toClient`.
 *
 * Results: a RowDescription gets a mask plan (catalog look-up of table OID + attnum, async on a
 * cache miss: the server direction is not read meanwhile, so no DataRow is ever forwarded before
 * its plan exists). A value that cannot be masked safely refuses the result: our ErrorResponse,
 * then nothing more from the server until its ReadyForQuery. The server's transaction is NOT
 * aborted by that refusal (the server never saw an error); its ReadyForQuery tells the client the
 * real status. An ErrorResponse answering a statement we refused is swapped for ours.
 */
import { type MaskPlan, maskCopyData, maskDataRow } from '#protocol/postgres/mask.js';
import {
  BE,
  buildErrorResponse,
  parseCommandComplete,
  parseCopyResponse,
  parseNoticeFields,
  parseParameterStatusMessage,
  parseRowDescription,
} from '#protocol/postgres/messages.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { StatementAudit } from './audit.js';
import type { Connection, Entry } from './connection.js';
import { type PlanAnswer, REFUSE_PLAN, type ResultPlanner } from './result-plans.js';

export class BackendInspector {
  constructor(
    private readonly conn: Connection,
    private readonly masking: boolean,
    private readonly audit: StatementAudit,
    private readonly plans: ResultPlanner,
    private readonly clock: Clock,
  ) {}

  /** Handle one backend message; a promise when it must be waited for (the server is then not read). */
  handle(type: number, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const conn = this.conn;
    const head = conn.due[0];
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
          if (head.portal) conn.rememberPlan(head.portal, null, this.clock.now());
          conn.pop();
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
        if (head && (head.k === 'parse' || head.k === 'bind' || head.k === 'close')) conn.pop();
        this.pass(buf, start, end);
        return undefined;
      case BE.error:
        this.onError(head, buf, start, end);
        return undefined;
      case BE.ready: {
        // Everything up to the Sync / Query / FunctionCall this answers is over.
        while (conn.due.length > 0) {
          const e = conn.due[0]!;
          conn.pop();
          // A FunctionCall that succeeded answers FunctionCallResponse, never CommandComplete: it completes here.
          if (e.k === 'fcall' && e.exec) this.audit.completed(e.exec, 0, 'FUNCTION CALL');
          if (e.k === 'sync' || e.k === 'query' || e.k === 'fcall') break;
        }
        conn.cur = null;
        conn.copyIn = false;
        conn.dropping = false;
        conn.toClient.pass(buf, start, end);
        if (conn.due.length === 0) conn.settle();
        return undefined;
      }
      case BE.parameterStatus: {
        const p = parseParameterStatusMessage(buf, start, end);
        conn.noteParameter(p.name, p.value);
        conn.toClient.pass(buf, start, end);
        return undefined;
      }
      case BE.copyIn:
        conn.copyIn = true;
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

  private pass(buf: Buffer, start: number, end: number): void {
    if (!this.conn.dropping) this.conn.toClient.pass(buf, start, end);
  }

  private endOfResult(head: Entry | undefined, rows: number, tag: string | undefined, buf: Buffer, start: number, end: number): void {
    this.conn.cur = null;
    this.conn.copyIn = false;
    if (head?.k === 'query') {
      this.audit.completed(head.execs[head.idx], rows, tag);
      head.idx++;
    } else if (head?.k === 'execute') {
      this.audit.completed(head.exec, rows, tag);
      this.conn.pop();
    }
    this.pass(buf, start, end);
  }

  private onError(head: Entry | undefined, buf: Buffer, start: number, end: number): void {
    const conn = this.conn;
    const fields = parseNoticeFields(buf, start, end);
    const swap = head && 'swap' in head ? head.swap : undefined;
    if (swap && !conn.dropping) conn.toClient.add(swap);
    else this.pass(buf, start, end);
    conn.cur = null;
    conn.copyIn = false;
    if (!head || head.k === 'sync') return;
    if (head.k === 'query') {
      this.audit.completed(head.execs[head.idx], 0, undefined, fields['C']);
      return; // the rest of the Query is skipped; ReadyForQuery ends it
    }
    if (head.k === 'fcall') {
      this.audit.completed(head.exec, 0, undefined, fields['C']);
      head.exec = undefined;
      return;
    }
    if (head.k === 'parse') conn.undoParse(head);
    if (head.k === 'execute') this.audit.completed(head.exec, 0, undefined, fields['C']);
    // Extended protocol: the server discards everything up to the next Sync.
    while (conn.due.length > 0 && conn.due[0]!.k !== 'sync') {
      const e = conn.due[0]!;
      if (e !== head && e.k === 'execute' && e.exec) this.audit.completed(e.exec, 0, undefined, 'skipped');
      if (e !== head && e.k === 'parse') conn.undoParse(e);
      conn.pop();
    }
  }

  // ---- results and masking

  private onRowDescription(head: Entry | undefined, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const conn = this.conn;
    const describe = head?.k === 'describe' ? head : undefined;
    const forQuery = head?.k === 'query';
    if (!this.masking || (!forQuery && !describe?.portal && !describe?.synthetic)) {
      // Statement descriptions (formats unknown yet) and results nobody masks pass as they are.
      if (describe) conn.pop();
      if (forQuery) conn.cur = { plan: null, ref: conn.currentExec(head)?.seq ?? 0, reported: false };
      if (describe?.synthetic) return undefined;
      this.pass(buf, start, end);
      return undefined;
    }
    const fields = parseRowDescription(buf, start, end);
    const apply = (plan: PlanAnswer) => {
      if (describe) {
        conn.pop();
        const portal = describe.portal;
        if (portal) {
          if (plan === 'refuse') portal.plan = REFUSE_PLAN;
          else conn.rememberPlan(portal, plan, this.clock.now());
        }
        if (!describe.synthetic) this.pass(buf, start, end);
        return;
      }
      conn.cur = { plan: plan === 'refuse' ? REFUSE_PLAN : plan, ref: conn.currentExec(head)?.seq ?? 0, reported: false };
      this.pass(buf, start, end);
    };
    const plan = this.plans.forRow(buf.toString('latin1', start + 5, end), fields);
    if (plan instanceof Promise) return plan.then(apply);
    apply(plan);
    return undefined;
  }

  private onDataRow(buf: Buffer, start: number, end: number): undefined {
    const conn = this.conn;
    if (conn.dropping) return undefined;
    let cur = conn.cur;
    if (cur === null) {
      const head = conn.due[0];
      if (head?.k === 'execute') {
        const plan = head.portal ? head.portal.plan : undefined;
        // Rows of a portal whose description we could not get: refuse rather than guess.
        cur = { plan: plan === undefined ? (this.masking ? REFUSE_PLAN : null) : plan, ref: head.exec?.seq ?? 0, reported: false };
      } else cur = { plan: this.masking ? REFUSE_PLAN : null, ref: 0, reported: false };
      conn.cur = cur;
    }
    this.maskOrRefuse(cur.plan, buf, start, end, maskDataRow);
    return undefined;
  }

  private onCopyOut(head: Entry | undefined, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    const conn = this.conn;
    if (!this.masking) {
      conn.cur = { plan: null, ref: 0, reported: false };
      this.pass(buf, start, end);
      return undefined;
    }
    const exec = conn.currentExec(head);
    const info = exec?.info ?? (head?.k === 'execute' && head.portal?.stmt.c.ok ? head.portal.stmt.c.statements[0] : undefined);
    const { format, columnFormats } = parseCopyResponse(buf, start, end);
    const fmt: 'text' | 'csv' | 'binary' = format === 1 ? 'binary' : /\bcsv\b/i.test(info?.text ?? '') ? 'csv' : 'text';
    const apply = (plan: MaskPlan | null) => {
      conn.cur = { plan, ref: exec?.seq ?? 0, reported: false };
      this.pass(buf, start, end);
    };
    const plan = this.plans.forCopy(info, columnFormats.length, fmt);
    if (plan instanceof Promise) return plan.then(apply);
    apply(plan);
    return undefined;
  }

  private onCopyData(buf: Buffer, start: number, end: number): undefined {
    if (this.conn.dropping) return undefined;
    this.maskOrRefuse(this.conn.cur?.plan ?? null, buf, start, end, maskCopyData);
    return undefined;
  }

  /** Forward one row (DataRow or CopyData) masked by `plan`, or refuse the result when it cannot be. */
  private maskOrRefuse(
    plan: MaskPlan | null,
    buf: Buffer,
    start: number,
    end: number,
    mask: (msg: Buffer, plan: MaskPlan) => Buffer | null,
  ): void {
    const conn = this.conn;
    if (plan === null) {
      conn.toClient.pass(buf, start, end);
      return;
    }
    const msg = buf.subarray(start, end);
    const masked = plan === REFUSE_PLAN ? null : mask(msg, plan);
    if (masked === null) {
      this.refuseResult();
      return;
    }
    // The mask returns the very buffer it got when nothing changed.
    if (masked === msg) conn.toClient.pass(buf, start, end);
    else {
      conn.toClient.add(masked);
      if (conn.cur) this.audit.masked(conn.cur);
    }
  }

  /** A value cannot be masked: our error instead of the rest, nothing more until ReadyForQuery. */
  private refuseResult(): void {
    this.conn.toClient.add(
      buildErrorResponse({
        code: '42501',
        message: 'jit: cannot mask this result safely',
        detail: 'a value of a masked column or a detected value cannot be masked in the format it was sent in',
        hint: 'select masked columns in text format, or leave them out',
      }),
    );
    this.audit.emit('result.refused', 'failure', { ref: this.conn.cur?.ref ?? 0 });
    this.conn.dropping = true;
  }
}
