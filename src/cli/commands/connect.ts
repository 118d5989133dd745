import type { Command } from 'commander';
import type { AccessRequest, ApprovalRequirement, CreateSessionResponse, Session } from '#shared/contract/http.js';
import { sessionRoleName } from '#shared/contract/ids.js';
import { formatDuration } from '#shared/duration.js';
import type { JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { type ApiClient, approvalRequirementOf, checkRequestId } from '../api/client.js';
import { type ApprovalObserver, waitForApproval } from '../approvals/wait.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import { LocalRelayListener, type RelayStats } from '../relay/local-listener.js';
import { postgresFatal } from '../relay/relay-client.js';
import { admitSession } from '../session/admit.js';
import { endedByUserLine, type Lease, type LeaseEnd, sessionEndedError, startLease } from '../session/lease.js';
import type { MountedView } from '../ui/mount.js';
import { createApprovalPresenter } from '../approvals/present.js';
import { approversText } from '../approvals/wait.js';
import { portFlag, sessionDurationFlag as parseDurationFlag, textFlag as parseText } from '../flags.js';
const parsePort = portFlag();

export interface ConnectOptions {
  target: string;
  /** Local port; 0 or absent = a free one. */
  port?: number | undefined;
  reason?: string | undefined;
  durationSeconds?: number | undefined;
  database?: string | undefined;
  /** Open the session under this (approved, or still pending: then wait) access request. */
  request?: string | undefined;
  /** Target needs approval: file the request and return at once (ConnectEnd `filed`). */
  noWait?: boolean | undefined;
  /** The verb the user typed (jit exec opens PostgreSQL sessions through this too); decides the refusal wording. */
  verb?: 'connect' | 'exec' | undefined;
}

export interface ConnectReady {
  session: Session;
  url: string;
  port: number;
}

/** Why `jit connect` stopped. */
export type ConnectEnd =
  | { by: 'signal'; session: Session; endedOnServer: boolean }
  | LeaseEnd
  /** --no-wait: the request was filed; nobody connected. */
  | { by: 'filed'; request: AccessRequest; requirement: ApprovalRequirement | undefined };

export interface ConnectObserver {
  /** The port is listening and the session exists; `stats` reads live counters cheaply. */
  onReady(ready: ConnectReady, stats: () => RelayStats): void | Promise<void>;
  onConnectionOpen?(id: number): void;
  onConnectionClose?(id: number, error: JitError | undefined): void;
  /** A heartbeat failed but the session may still be alive (network blip); cleared by the next success. */
  onWarning?(message: string | undefined): void;
  /** Targets that need approval: without it, JIT_APPROVAL_REQUIRED ends the command. */
  approval?: ApprovalObserver;
  /**
   * Statement requests of this session (require-approval guardrails), polled while a connection
   * is open: the statements the agent holds until approvers decide, and what became of them.
   */
  onHeldStatements?(requests: AccessRequest[]): void;
}

export interface ConnectDeps {
  ctx: Pick<Ctx, 'clock' | 'onSignal'>;
  api: ApiClient;
  server: string;
  /** The user's access token for relay streams (sent beside the grant); refreshed as needed. */
  accessToken: () => Promise<string>;
}

/** How often held statements are looked for while a connection is open (at most). */
const HELD_POLL_MS = 2_000;

/** The URL a PostgreSQL client uses: the session role and the per-session local secret. */
export function connectionUrl(session: Session, localSecret: string, port: number, database: string | undefined): string {
  if (session.targetType !== 'postgres') return `tcp://127.0.0.1:${port}`;
  const user = session.dbUser ?? sessionRoleName(session.id);
  const db = database ?? session.database ?? 'postgres';
  return `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(localSecret)}@127.0.0.1:${port}/${encodeURIComponent(db)}?sslmode=disable`;
}

/**
 * Open a session and serve it on 127.0.0.1 until a signal, the server ending it, or expiry.
 * Listens BEFORE creating the session: a taken port fails without leaving a session behind,
 * and the port is ready the moment the URL is printed.
 */
export async function runConnect(deps: ConnectDeps, opts: ConnectOptions, observer: ConnectObserver): Promise<ConnectEnd> {
  const { ctx, api } = deps;
  let targetType: Session['targetType'] | undefined;
  const listener = new LocalRelayListener({
    onOpen: (id) => observer.onConnectionOpen?.(id),
    onClose: (id, outcome) => observer.onConnectionClose?.(id, outcome.error),
    onRefused: (socket, err) => {
      // Speak the client's protocol so psql prints why instead of "server closed the connection".
      if (targetType === 'postgres') socket.write(postgresFatal(`jit: ${err.message} [${err.code}]`));
    },
  });
  const port = await listener.listen(opts.port ?? 0);

  let resolveEnd!: (end: ConnectEnd) => void;
  const ended = new Promise<ConnectEnd>((r) => {
    resolveEnd = r;
  });
  let done = false;
  let signaled = false;
  let lease: Lease | undefined;
  const finish = (end: ConnectEnd) => {
    if (done) return;
    done = true;
    resolveEnd(end);
  };
  const endOnSignal = (l: Lease) => {
    done = true;
    void l.end('exit').then((r) => resolveEnd({ by: 'signal', ...r }));
  };
  // Ctrl-C while waiting for approvers cancels the request (see waitForApproval).
  const waiting = new AbortController();
  // Registered before the session exists: Ctrl-C while it is being created must still end it.
  const offSignal = ctx.onSignal(() => {
    if (done || signaled) return;
    signaled = true;
    if (lease) endOnSignal(lease);
    else waiting.abort();
  });

  let created: CreateSessionResponse;
  try {
    const opened = await openSession(deps, opts, observer.approval, waiting.signal);
    if ('filed' in opened) {
      offSignal();
      await listener.close();
      return { by: 'filed', request: opened.filed, requirement: opened.requirement };
    }
    created = opened;
  } catch (err) {
    offSignal();
    await listener.close();
    throw err;
  }
  const { session, grant, localSecret } = created;
  try {
    await admitSession(api, opts.verb ?? 'connect', opts.target, session);
  } catch (err) {
    offSignal();
    await listener.close();
    throw err;
  }
  lease = startLease({ api, clock: ctx.clock }, created, { onWarning: (w) => observer.onWarning?.(w) });
  void lease.ended.then(finish);
  if (signaled) {
    endOnSignal(lease);
    try {
      return await ended;
    } finally {
      offSignal();
      await listener.close();
    }
  }
  targetType = session.targetType;
  listener.activate({ server: deps.server, sessionId: session.id, grant, accessToken: deps.accessToken });
  const intervalMs = Math.max(1, created.heartbeatIntervalSeconds) * 1000;

  // Statements held for approval (filed by the agent): looked for only while a connection is open.
  let heldTimer: NodeJS.Timeout | undefined;
  const heldEveryMs = Math.min(intervalMs, HELD_POLL_MS);
  const pollHeld = async () => {
    if (done) return;
    if (listener.stats().active > 0) {
      try {
        const mine = await api.requests({ mine: true });
        if (!done) observer.onHeldStatements?.(mine.filter((r) => r.kind === 'statement' && r.session === session.id));
      } catch {
        // The next poll tries again; a server that stays away shows up as heartbeat warnings.
      }
    }
    if (!done) heldTimer = ctx.clock.setTimeout(() => void pollHeld(), heldEveryMs);
  };
  if (observer.onHeldStatements && session.targetType === 'postgres') {
    heldTimer = ctx.clock.setTimeout(() => void pollHeld(), heldEveryMs);
  }

  try {
    try {
      await observer.onReady({ session, url: connectionUrl(session, localSecret, port, opts.database), port }, () => listener.stats());
    } catch (err) {
      // Nobody will use a session whose URL could not be shown: end it now rather than at heartbeat timeout.
      done = true;
      await lease.end('exit');
      throw err;
    }
    return await ended;
  } finally {
    done = true;
    offSignal();
    ctx.clock.clearTimeout(heldTimer);
    await listener.close();
  }
}

/** One statement on one line for a status: whitespace collapsed, cut at `max` characters. */
export function statementGist(sql: string, max = 72): string {
  const one = clean(sql).replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/**
 * What changed among a session's statement requests since the last poll, as status lines
 * (`seen` remembers each request's last state), and the ones still waiting.
 */
export function heldStatementUpdates(
  seen: Map<string, string>,
  requests: readonly AccessRequest[],
): { lines: string[]; waiting: AccessRequest[] } {
  const lines: string[] = [];
  const waiting: AccessRequest[] = [];
  for (const r of [...requests].sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt))) {
    const before = seen.get(r.id);
    if (r.state === 'pending') {
      waiting.push(r);
      if (before === undefined) lines.push(`${waitingLine(r)} (request ${r.id}; approvers: ${approversText(r.approvers)})`);
    } else if (before === 'pending') {
      const by = r.approvals.map((a) => a.approver).join(', ');
      if (r.state === 'approved' || r.state === 'used') lines.push(`request ${r.id} approved by ${clean(by)}; the statement runs`);
      else if (r.state === 'denied')
        lines.push(`request ${r.id} denied by ${clean(r.denial?.approver ?? '?')}: ${clean(r.denial?.reason ?? '')}`);
      else if (r.state === 'expired') lines.push(`request ${r.id} expired: nobody decided in time`);
      else lines.push(`request ${r.id} ${r.state}`);
    }
    if (before !== undefined || r.state === 'pending') seen.set(r.id, r.state);
  }
  return { lines, waiting };
}

/** `waiting for approval of: DELETE FROM …` */
export function waitingLine(r: AccessRequest): string {
  return `waiting for approval of: ${statementGist(r.statement?.sql ?? '?')}`;
}

/**
 * POST /v1/sessions; when the target needs approval, file an access request and wait for it
 * (or return it with noWait), then open the session under the approved request.
 */
async function openSession(
  deps: ConnectDeps,
  opts: ConnectOptions,
  approval: ApprovalObserver | undefined,
  signal: AbortSignal,
): Promise<CreateSessionResponse | { filed: AccessRequest; requirement: ApprovalRequirement | undefined }> {
  const { api } = deps;
  const base = {
    target: opts.target,
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    ...(opts.durationSeconds !== undefined ? { durationSeconds: opts.durationSeconds } : {}),
    ...(opts.database !== undefined ? { database: opts.database } : {}),
  };
  let requestId = opts.request !== undefined ? checkRequestId(opts.request) : undefined;
  let first: AccessRequest | undefined;
  if (!requestId) {
    try {
      return await api.createSession(base);
    } catch (err) {
      const requirement = approvalRequirementOf(err);
      if (!requirement || !approval) throw err;
      let reason = opts.reason;
      if (requirement.reasonRequired && !reason) reason = await approval.askReason(requirement);
      first = await api.fileRequest({
        target: opts.target,
        ...(reason ? { reason } : {}),
        ...(opts.durationSeconds !== undefined ? { durationSeconds: opts.durationSeconds } : {}),
      });
      approval.onRequestFiled?.(first, requirement);
      if (opts.noWait) return { filed: first, requirement };
      requestId = first.id;
    }
  } else if (approval) {
    first = await api.getRequest(requestId);
    approval.onRequestFiled?.(first, undefined);
  }
  await waitForApproval({ api, clock: deps.ctx.clock }, requestId, approval ?? {}, signal, first);
  return api.createSession({ ...base, request: requestId });
}

interface ConnectFlags {
  port?: number;
  reason?: string;
  duration?: number;
  database?: string;
  request?: string;
  /** commander's --no-wait */
  wait?: boolean;
}

export function registerConnect(program: Command, env: CommandEnv): void {
  program
    .command('connect')
    .description('open a session to a target and serve it on 127.0.0.1 until Ctrl-C')
    .argument('<target>', 'target name (jit targets lists them)')
    .option('-p, --port <n>', 'local port (default: a free one)', parsePort)
    .option('-r, --reason <text>', 'why you need access (recorded in the audit log)', parseText(1000))
    .option('-d, --duration <time>', 'session length, e.g. 30m or 2h (policy sets the maximum)', parseDurationFlag)
    .option('--database <name>', 'PostgreSQL database (default: the target’s)', parseText(63))
    .option('--request <id>', 'open the session under this access request (waits while it is pending)')
    .option('--no-wait', 'target needs approval: file the request, print its id and exit')
    .action(async (target: string, flags: ConnectFlags) => {
      const { ctx } = env;
      const globals = env.globals();
      const mode = outputMode(ctx, globals);
      const services = cliServices(ctx, globals);
      const presenter = await createPresenter(ctx, mode);
      const approval = createApprovalPresenter(ctx, mode, { wait: flags.wait !== false });
      const end = await runConnect(
        { ctx, api: services.api, server: services.settings.server, accessToken: () => services.auth.getAccessToken() },
        {
          target,
          port: flags.port,
          reason: flags.reason,
          durationSeconds: flags.duration,
          database: flags.database,
          request: flags.request,
          noWait: flags.wait === false,
        },
        {
          approval,
          onReady: async (ready, stats) => {
            // The waiting view (if any) leaves its last frame before the session's output.
            await approval.stop();
            // Data first: the URL (or JSON) goes to stdout before any status.
            if (mode.json) printJson(ctx.io.stdout, { session: ready.session, url: ready.url, port: ready.port });
            else ctx.io.stdout.write(`${ready.url}\n`);
            await presenter.ready(ready, stats);
          },
          onConnectionOpen: (id) => presenter.line(`connection ${id} opened`),
          onConnectionClose: (id, err) =>
            presenter.line(err ? `connection ${id} closed: ${clean(err.message)} [${err.code}]` : `connection ${id} closed`),
          onWarning: (w) => presenter.warn(w),
          onHeldStatements: (requests) => presenter.held(requests),
        },
      ).finally(async () => {
        await approval.stop();
        await presenter.stop();
      });
      if (end.by === 'filed') {
        // Data on stdout: the request id (or the request as JSON); how to use it on stderr.
        if (mode.json) printJson(ctx.io.stdout, { request: end.request });
        else ctx.io.stdout.write(`${end.request.id}\n`);
        mode.status(`When it is approved: jit connect ${clean(end.request.target)} --request ${end.request.id}`);
        return;
      }
      if (end.by === 'signal') {
        mode.status(endedByUserLine(end.session, end.endedOnServer));
        return;
      }
      throw sessionEndedError(end);
    });
}

interface Presenter {
  ready(r: ConnectReady, stats: () => RelayStats): Promise<void>;
  line(text: string): void;
  warn(text: string | undefined): void;
  /** The session's statement requests (see heldStatementUpdates). */
  held(requests: AccessRequest[]): void;
  stop(): Promise<void>;
}

/**
 * Status display: a live ink view on a TTY (loaded lazily), plain lines on stderr otherwise.
 * Plain mode prints at most "ready", connection opened/closed and heartbeat warnings.
 */
async function createPresenter(ctx: Ctx, mode: ReturnType<typeof outputMode>): Promise<Presenter> {
  const secondsLeft = (r: ConnectReady) => Math.max(0, (Date.parse(r.session.expiresAt) - ctx.clock.now()) / 1000);
  const seen = new Map<string, string>();
  if (!mode.interactive) {
    return {
      ready: async (r) =>
        mode.status(
          `session ${r.session.id} ready on 127.0.0.1:${r.port} (${clean(r.session.target)}, ends in ${formatDuration(secondsLeft(r))})`,
        ),
      line: (t) => mode.status(t),
      warn: (w) => {
        if (w) mode.status(`! ${w}`);
      },
      held: (requests) => {
        for (const l of heldStatementUpdates(seen, requests).lines) mode.status(l);
      },
      stop: async () => {},
    };
  }
  let view: MountedView | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let warning: string | undefined;
  let waiting: string[] = [];
  let render: (() => void) | undefined;
  return {
    async ready(r, stats) {
      const { mountView, loadViews } = await import('../ui/mount.js');
      const views = await loadViews();
      const element = () =>
        views.createElement(views.ConnectView, {
          target: r.session.target,
          sessionId: r.session.id,
          address: `127.0.0.1:${r.port}`,
          ...stats(),
          secondsLeft: secondsLeft(r),
          warning,
          waiting,
          color: mode.statusColor,
        });
      view = await mountView(ctx, element());
      render = () => view?.update(element());
      ticker = ctx.clock.setInterval(render, 1000);
    },
    // The live view shows counters instead of one line per connection.
    line: () => render?.(),
    warn(w) {
      warning = w;
      render?.();
    },
    held(requests) {
      waiting = heldStatementUpdates(seen, requests).waiting.map((r) => `${waitingLine(r)} (request ${r.id})`);
      render?.();
    },
    async stop() {
      ctx.clock.clearInterval(ticker);
      render?.();
      await view?.done();
    },
  };
}
