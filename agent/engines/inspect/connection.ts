/**
 * What one inspected PostgreSQL connection remembers between messages, shared by the two
 * directions of the relay (frontend.ts decides what goes to the server, backend.ts what comes
 * back): the messages sent to the server whose answers are still due, in order; the prepared
 * statements and portals by name; the session settings lexing depends on; the result being
 * relayed. Nothing here touches a socket: the two OutBatches collect what a pass sends, and the
 * relay shell (../postgres-inspect.ts) writes them.
 */
import type { Classification } from '#protocol/postgres/classify.js';
import type { Verdict } from '#protocol/postgres/guard.js';
import type { MaskPlan } from '#protocol/postgres/mask.js';
import type { InspectionRules, SessionInfo } from '#shared/contract/agent.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { Catalog } from '../../catalog.js';
import type { SessionProvenance } from './session-provenance.js';
import type { EmitEvent } from '../../events.js';
import type { AwaitApproval } from './approval.js';
import type { Exec, ResultState } from './audit.js';
import type { ClassificationCache } from './classification-cache.js';
import { OutBatch } from './out-batch.js';

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
  /** The rules as the catalog extends them (views over masked columns, the database's functions); absent: `rules` as they are. */
  provenance?: SessionProvenance;
  target: string;
  streamId: string;
  database: string;
  /** ParameterStatus values from the login (client_encoding, standard_conforming_strings). */
  parameters: { name: string; value: string }[];
  /** Close both legs (registry-aware). */
  kill(): void;
}

export interface Prepared {
  sql: string;
  c: Classification;
  verdict: Verdict;
  /** Kind for events (first statement's). */
  kind: string;
  statementName: string | undefined;
  /** Result plans seen for this statement by result-format list, with when they were made. */
  plans?: Map<string, { plan: MaskPlan | null; at: number }>;
}

export interface Portal {
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

/** A message sent to the server whose answer is still due; `swap` replaces the server's error with ours. */
export type Entry =
  | { k: 'query'; execs: Exec[]; idx: number; swap?: Buffer }
  | { k: 'fcall'; exec: Exec | undefined; swap?: Buffer }
  | { k: 'parse'; name: string; prev: Prepared | undefined; swap?: Buffer }
  | { k: 'bind'; swap?: Buffer }
  | { k: 'describe'; portal: Portal | undefined; synthetic: boolean }
  | { k: 'execute'; exec: Exec | undefined; portal: Portal | undefined; swap?: Buffer }
  | { k: 'close' }
  | { k: 'sync' };

/** How long a prepared statement's result plan is reused without describing again (catalog freshness). */
export const STATEMENT_PLAN_TTL_MS = 60_000;
/** Result plans remembered per prepared statement (one per result-format list). */
const MAX_PLANS_PER_STATEMENT = 16;

export class Connection {
  readonly toServer = new OutBatch();
  readonly toClient = new OutBatch();
  /** Messages sent to the server whose answers are still due, oldest first. */
  readonly due: Entry[] = [];
  readonly statements = new Map<string, Prepared>();
  readonly portals = new Map<string, Portal>();
  clientEncoding = 'UTF8';
  standardStrings = 'on';
  /** A result was refused: drop the server's messages until its ReadyForQuery. */
  dropping = false;
  copyIn = false;
  cur: ResultState | null = null;
  /** False once something was sent that the server answers only at a Sync or Flush. */
  lastToServerWasSync = true;
  private settledWaiters: (() => void)[] = [];

  constructor(parameters: { name: string; value: string }[]) {
    for (const p of parameters) this.noteParameter(p.name, p.value);
  }

  /** Forward buf[start, end) as the client sent it; its answers belong to `entry`. */
  forward(buf: Buffer, start: number, end: number, entry: Entry): void {
    this.toServer.pass(buf, start, end);
    this.expect(entry);
  }

  /** Send a message of ours (a rewrite or our own question); its answers belong to `entry`. */
  send(message: Buffer, entry: Entry): void {
    this.toServer.add(message);
    this.expect(entry);
  }

  /** The oldest due answer is complete. */
  pop(): void {
    this.due.shift();
    if (this.due.length === 0) this.settle();
  }

  /** Resolves once no answer is due any more (the settings of every earlier statement are known). */
  settled(): Promise<void> {
    return new Promise((resolve) => {
      if (this.due.length === 0) resolve();
      else this.settledWaiters.push(resolve);
    });
  }

  /** Wake every waiter (nothing is due, or the connection is closing). */
  settle(): void {
    if (this.settledWaiters.length > 0) for (const w of this.settledWaiters.splice(0)) w();
  }

  noteParameter(name: string, value: string): void {
    if (name === 'client_encoding') this.clientEncoding = value.toUpperCase().replace(/[-_]/g, '');
    else if (name === 'standard_conforming_strings') this.standardStrings = value.toLowerCase();
  }

  /** The statement whose result the server is sending, when `head` carries one. */
  currentExec(head: Entry | undefined): Exec | undefined {
    if (!head) return undefined;
    if (head.k === 'query') return head.execs[head.idx];
    if (head.k === 'execute' || head.k === 'fcall') return head.exec;
    return undefined;
  }

  /** A portal's result plan is known; its statement remembers it for later portals of the same formats. */
  rememberPlan(portal: Portal, plan: MaskPlan | null, now: number): void {
    portal.plan = plan;
    portal.stmt.plans ??= new Map();
    if (portal.stmt.plans.size < MAX_PLANS_PER_STATEMENT) portal.stmt.plans.set(portal.formats, { plan, at: now });
  }

  /** A plan remembered for these formats that is still fresh. */
  knownPlan(stmt: Prepared, formats: string, now: number): MaskPlan | null | undefined {
    const known = stmt.plans?.get(formats);
    return known && now - known.at < STATEMENT_PLAN_TTL_MS ? known.plan : undefined;
  }

  /** A Parse the server failed: the name means what it meant before (or nothing). */
  undoParse(e: Extract<Entry, { k: 'parse' }>): void {
    if (e.prev && e.name !== '') this.statements.set(e.name, e.prev);
    else this.statements.delete(e.name);
  }

  private expect(entry: Entry): void {
    this.due.push(entry);
    this.lastToServerWasSync = false;
  }
}
