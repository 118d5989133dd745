/**
 * The inspecting relay's protocol state machine for one connection, with no socket: feed it the
 * client's messages (`frontend`) and the server's (`backend`); what they decide to send collects
 * in `conn.toServer` / `conn.toClient`. The relay shell (../postgres-inspect.ts) wires it to
 * sockets; unit tests drive it with bytes.
 */
import { BackendInspector } from './backend.js';
import { StatementAudit } from './audit.js';
import { ClassificationCache } from './classification-cache.js';
import { Connection, type InspectContext, type InspectDeps } from './connection.js';
import { type FrontendIO, FrontendInspector } from './frontend.js';
import { ResultPlanner } from './result-plans.js';
import { SessionProvenance } from './session-provenance.js';

let sharedCache: ClassificationCache | undefined;

export class Inspector {
  readonly conn: Connection;
  readonly front: FrontendInspector;
  readonly back: BackendInspector;

  constructor(ctx: InspectContext, deps: InspectDeps, io: FrontendIO) {
    sharedCache ??= new ClassificationCache();
    const masking = ctx.rules.masking;
    const provenance = ctx.provenance ?? SessionProvenance.fixed(ctx.rules);
    const audit = new StatementAudit(deps, { session: ctx.session.id, target: ctx.target, stream: ctx.streamId }, masking);
    const plans = new ResultPlanner(provenance, { database: ctx.database, target: ctx.target }, deps.catalog, deps.logger);
    this.conn = new Connection(ctx.parameters);
    this.front = new FrontendInspector(this.conn, ctx, deps, audit, deps.classifications ?? sharedCache, io, provenance);
    this.back = new BackendInspector(this.conn, masking.length > 0, audit, plans, deps.clock);
  }

  /** One whole frontend message buf[start, end). */
  frontend(buf: Buffer, start: number, end: number): Promise<void> | undefined {
    return this.front.handle(buf, start, end);
  }

  /** One whole backend message buf[start, end) of the given type byte. */
  backend(type: number, buf: Buffer, start: number, end: number): Promise<void> | undefined {
    return this.back.handle(type, buf, start, end);
  }
}
