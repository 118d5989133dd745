/**
 * PostgreSQL engine for one client connection (the socket is the client's side of the stream).
 *
 * Order (fixed; each step MUST pass before the next):
 *   1. first packet: SSLRequest/GSSENCRequest → 'N'; CancelRequest → forward to the real backend
 *      of a live stream of THIS session only (unknown keys are answered here: nothing reaches the
 *      target), then close; StartupMessage → checks below. Nothing touches the target before
 *      step 4; a session over its connection cap is refused (53300); startup ends in 10 s.
 *   2. refuse replication; drop `options` and every GUC not on the allow-list; the user MUST be
 *      `jit_<sessionId>`.
 *   3. authenticate the client with SCRAM-SHA-256 against the session's local verifier. NEVER
 *      create a credential or touch the target before this succeeds.
 *   4. ensure the session role; log in upstream with it over SCRAM (any other method fails closed).
 *   5. only then AuthenticationSASLFinal + AuthenticationOk, the server's ParameterStatus, OUR
 *      OWN BackendKeyData (the real one never reaches the client), ReadyForQuery.
 *   6. without inspection rules: relay bytes with `pipe` both ways (no per-chunk JavaScript);
 *      with `session.inspection`: the inspecting relay (postgres-inspect.ts) parses every message.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  authenticationOk,
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
  backendKeyData,
  negotiateProtocolVersion,
  PgProtocolError,
  parameterStatus,
  parseSASLInitialResponse,
  readyForQuery,
  type StartupPacket,
} from '#protocol/postgres/codec.js';
import { buildErrorResponse, buildNoticeResponse } from '#protocol/postgres/messages.js';
import { SCRAM_MECHANISM, ScramError, ScramServer } from '#protocol/postgres/scram.js';
import type { AgentPostgresTarget } from '#shared/config/agent.js';
import type { SessionInfo } from '#shared/contract/agent.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import { PG_BUILTIN_MAJOR } from '#protocol/postgres/pg-builtins.js';
import { SessionProvenance } from './inspect/session-provenance.js';
import type { Catalog } from '../catalog.js';
import type { SessionCredential } from '../credentials/postgres-roles.js';
import type { EmitEvent } from '../events.js';
import type { LiveStream, StreamRegistry } from '../streams.js';
import { PacketReader, PeerClosedError } from './packet-reader.js';
import type { AwaitApproval } from './inspect/approval.js';
import { runInspectingRelay } from './postgres-inspect.js';
import {
  dialTarget,
  loginUpstream,
  negotiateTls,
  sendUpstreamCancel,
  UpstreamErrorResponse,
  UpstreamUnavailableError,
} from './postgres-upstream.js';
import { sessionRoleName } from '#shared/contract/ids.js';

/** What the engine needs from the credential side. */
export interface SessionRoleProvider {
  ensureSessionRole(session: SessionInfo): Promise<SessionCredential>;
  noteDatabase(sessionId: string, database: string): void;
  /** Forget a cached credential (the target refused it); the next connection re-ensures. */
  invalidate?(sessionId: string): void;
}

export interface PostgresEngineDeps {
  roles: SessionRoleProvider;
  registry: StreamRegistry;
  emit: EmitEvent;
  logger: Logger;
  clock: Clock;
  random(bytes: number): Buffer;
  /** The client must finish the startup phase within this (default STARTUP_TIMEOUT_MS). */
  startupTimeoutMs?: number;
  /** Catalog of the target, for masking (column identities) under inspection. */
  catalog?: Catalog;
  /** Largest client message the inspecting relay takes (default 64 MiB); bigger ones are refused with an error. */
  maxFrontendMessage?: number;
  /**
   * True while audit events reach the control plane. Inspected statements are refused while it is
   * false (fail closed). Absent: `emit` records synchronously (tests).
   */
  recorderReady?: () => boolean;
  /** Push out batched audit events (before the engine forwards statements). */
  flushAudit?: () => void;
  /** The hold point of require-approval statements (absent: they are refused). */
  approve?: AwaitApproval;
}

/** Inspected streams that may hold a statement for approval: a CancelRequest gives it up. */
const heldStatements = new WeakMap<LiveStream, { cancelHeld(): boolean }>();

export interface PostgresTargetRef {
  name: string;
  config: AgentPostgresTarget;
}

export interface HandleOptions {
  streamId?: string;
  /** A TCP connection to the target dialled ahead (to fail fast); used for this client or closed. */
  upstream?: net.Socket;
}

/**
 * Startup parameters passed upstream besides user/database. `options` (-c GUCs) and anything else
 * are dropped: settings that must not bypass inspection stay out of the startup packet.
 */
const PASSTHROUGH_PARAMS = new Set(['application_name', 'client_encoding', 'datestyle', 'timezone', 'intervalstyle', 'extra_float_digits']);

const MAX_PARAM_VALUE = 256;

/** Startup and authentication must be over within this: a client that stalls holds nothing long. */
const STARTUP_TIMEOUT_MS = 10_000;

type Fatal = { code: string; message: string; hint?: string };

/** Run the engine for one client connection; resolves when the connection is over. */
export async function handlePostgresClient(
  client: Duplex,
  session: SessionInfo,
  target: PostgresTargetRef,
  deps: PostgresEngineDeps,
  opts: HandleOptions = {},
): Promise<void> {
  const streamId = opts.streamId ?? deps.random(12).toString('hex');
  let upstream: Duplex | undefined = opts.upstream;
  let done = false;
  const stream: LiveStream = {
    id: streamId,
    sessionId: session.id,
    target: target.name,
    destroy() {
      client.destroy();
      upstream?.destroy();
      opts.upstream?.destroy();
    },
  };
  deps.registry.add(stream);
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  client.on('error', () => stream.destroy());
  // A client that leaves mid-startup takes the upstream leg with it.
  client.once('close', () => {
    upstream?.destroy();
    opts.upstream?.destroy();
  });
  const startupTimer = deps.clock.setTimeout(() => {
    if (!done) stream.destroy();
  }, deps.startupTimeoutMs ?? STARTUP_TIMEOUT_MS);
  const expiryTimer = armExpiry(session, deps.clock, () => stream.destroy());
  const started = deps.clock.now();
  let relaying = false;
  try {
    const reader = new PacketReader(client);
    const first = await readFirstPacket(reader, client);
    if (first.kind === 'cancel') {
      await forwardCancel(first.pid, first.secret, session, target, deps);
      return;
    }
    if (first.kind !== 'startup') throw new PgProtocolError('unexpected negotiation request');
    // One session must not fill the target's connection slots for everyone else.
    const cap = target.config.maxConnectionsPerSession;
    const open = deps.registry.count(session.id);
    if (open > cap) {
      deps.emit({
        event: 'connection.refused',
        session: session.id,
        target: target.name,
        outcome: 'failure',
        data: { stream: streamId, reason: 'too-many-connections', limit: cap },
      });
      sendFatal(client, {
        code: '53300',
        message: `too many connections for this jit session (the limit is ${cap})`,
        hint: 'close idle connections, or ask the agent operator to raise maxConnectionsPerSession',
      });
      return;
    }
    const req = checkStartup(first, session, target, client);
    if ('fatal' in req) {
      sendFatal(client, req.fatal);
      return;
    }

    // 3. Local SCRAM against the session's verifier.
    const serverFinal = await authenticateLocal(reader, client, session);
    if (serverFinal === undefined) {
      deps.emit({
        event: 'local-auth.failed',
        session: session.id,
        target: target.name,
        outcome: 'failure',
        data: { stream: streamId },
      });
      sendFatal(client, { code: '28P01', message: `password authentication failed for user "${req.user}"` });
      return;
    }

    // 4. Credential and upstream login.
    const cred = await deps.roles.ensureSessionRole(session);
    deps.roles.noteDatabase(session.id, req.database);
    const raw = opts.upstream ?? (await dialTarget(target.config, deps.clock));
    upstream = raw;
    upstream = await negotiateTls(raw, target.config);
    const params: Record<string, string> = { user: cred.role, database: req.database, ...req.passthrough };
    let up: Awaited<ReturnType<typeof loginUpstream>>;
    try {
      up = await loginUpstream(upstream, params, cred.password);
    } catch (err) {
      if (err instanceof UpstreamErrorResponse && err.fields['C']?.startsWith('28')) deps.roles.invalidate?.(session.id);
      throw err;
    }

    // 4b. What the rules need before the first statement: a server whose grammar the parser
    // knows, and the catalog's provenance (views, the database's functions).
    let provenance: SessionProvenance | undefined;
    let startupNotice: Buffer | undefined;
    if (session.inspection) {
      const refusal = serverVersionRefusal(up.parameters);
      if (refusal && session.inspection.newerServer !== 'warn') throw new SessionRefused(refusal.reason, refusal.fatal);
      if (refusal) {
        deps.emit({
          event: 'connection.warning',
          session: session.id,
          target: target.name,
          outcome: 'success',
          data: { stream: streamId, reason: refusal.reason, message: refusal.fatal.message },
        });
        startupNotice = buildNoticeResponse({
          code: '01000',
          message: refusal.fatal.message.replace('cannot be judged', 'may not be judged correctly'),
          hint: refusal.fatal.hint,
        });
      }
      if (deps.catalog && SessionProvenance.needed(session.inspection)) {
        try {
          provenance = await SessionProvenance.open(session.inspection, {
            catalog: deps.catalog,
            database: req.database,
            clock: deps.clock,
            logger: deps.logger,
            target: target.name,
          });
        } catch (err) {
          deps.logger.warn({ session: session.id, target: target.name, err: (err as Error).message }, 'catalog snapshot failed');
          throw new SessionRefused('catalog-unavailable', {
            code: '58000',
            message: "jit: cannot read the target's catalog, which this session's masking rules need",
            hint: 'try again in a moment; if it persists, the agent operator should check the admin role',
          });
        }
      }
    }

    // 5. Our own backend key, mapped to the real one for CancelRequest.
    let ours = makeKey(deps);
    if (up.backendKey) {
      while (!deps.registry.setCancelKey(stream, ours, up.backendKey)) ours = makeKey(deps);
    }
    if (client.destroyed) throw new PeerClosedError();
    client.cork();
    client.write(authenticationSASLFinal(serverFinal));
    client.write(authenticationOk());
    if (startupNotice) client.write(startupNotice);
    for (const p of up.parameters) client.write(parameterStatus(p.name, p.value));
    client.write(backendKeyData(ours.pid, ours.secret));
    client.write(readyForQuery(up.status));
    client.uncork();
    reader.detach();
    done = true;
    deps.clock.clearTimeout(startupTimer);
    deps.emit({
      event: 'connection.opened',
      session: session.id,
      target: target.name,
      outcome: 'success',
      data: {
        stream: streamId,
        database: req.database,
        role: cred.role,
        ms: deps.clock.now() - started,
        inspected: session.inspection !== undefined,
      },
    });
    relaying = true;
    if (session.inspection) {
      const inspecting = runInspectingRelay(
        client,
        up.socket,
        {
          session,
          rules: session.inspection,
          ...(provenance ? { provenance } : {}),
          target: target.name,
          streamId,
          database: req.database,
          parameters: up.parameters,
          kill: () => stream.destroy(),
        },
        {
          emit: deps.emit,
          recorderReady: deps.recorderReady ?? (() => true),
          flushAudit: deps.flushAudit,
          logger: deps.logger,
          clock: deps.clock,
          random: deps.random,
          catalog: deps.catalog,
          approve: deps.approve,
          ...(deps.maxFrontendMessage ? { maxFrontendMessage: deps.maxFrontendMessage } : {}),
        },
      );
      heldStatements.set(stream, inspecting);
    } else relay(client, up.socket, stream);
  } catch (err) {
    reportStartupFailure(err, client, session, target, deps);
  } finally {
    done = true;
    deps.clock.clearTimeout(startupTimer);
    if (!relaying) {
      deps.clock.clearTimeout(expiryTimer);
      deps.registry.remove(stream);
      if (!client.writableEnded) client.end();
      // Give the final ErrorResponse a moment to flush, then make sure nothing lingers.
      const t = deps.clock.setTimeout(() => stream.destroy(), 1_000);
      client.once('close', () => deps.clock.clearTimeout(t));
      upstream?.destroy();
      opts.upstream?.destroy();
    }
  }
  if (!relaying) return;
  await closed;
  deps.clock.clearTimeout(expiryTimer);
  deps.registry.remove(stream);
  const sock = client as Partial<net.Socket>;
  deps.emit({
    event: 'connection.closed',
    session: session.id,
    target: target.name,
    outcome: 'info',
    data: {
      stream: streamId,
      bytesIn: sock.bytesRead ?? 0,
      bytesOut: sock.bytesWritten ?? 0,
      seconds: Math.round((deps.clock.now() - started) / 1000),
    },
  });
}

/** SSLRequest/GSSENCRequest are answered 'N' (at most twice), then the real first packet. */
async function readFirstPacket(reader: PacketReader, client: Duplex): Promise<StartupPacket> {
  let packet = await reader.startupPacket();
  for (let n = 0; packet.kind === 'ssl' || packet.kind === 'gssenc'; n++) {
    if (n >= 2) throw new PgProtocolError('too many negotiation requests');
    // Bytes sent ahead of our answer would be plaintext smuggled before a TLS handshake.
    reader.assertNothingBuffered();
    client.write('N');
    packet = await reader.startupPacket();
  }
  return packet;
}

function checkStartup(
  packet: Extract<StartupPacket, { kind: 'startup' }>,
  session: SessionInfo,
  target: PostgresTargetRef,
  client: Duplex,
): { user: string; database: string; passthrough: Record<string, string> } | { fatal: Fatal } {
  const params = packet.params;
  const unsupported = [...params.keys()].filter((k) => k.startsWith('_pq_.'));
  if (packet.minor > 0 || unsupported.length > 0) client.write(negotiateProtocolVersion(0, unsupported));
  const replication = (params.get('replication') ?? 'false').toLowerCase();
  if (!['false', 'off', 'no', '0'].includes(replication)) {
    return { fatal: { code: '42501', message: 'replication connections are not allowed through jit' } };
  }
  const expected = sessionRoleName(session.id);
  const user = params.get('user') ?? '';
  if (user !== expected) {
    return {
      fatal: {
        code: '28000',
        message: `user "${user.slice(0, 64)}" is not the user of this jit session`,
        hint: `connect as ${expected} with the connection string jit connect printed`,
      },
    };
  }
  let database = params.get('database') ?? '';
  const own = session.database ?? target.config.database;
  // libpq and node-postgres default the database to the user name; that means "not chosen".
  if (database === '' || database === user) database = own;
  // The session was opened for one database; another one on the same server is not open to it.
  if (database !== own) {
    return {
      fatal: {
        code: '42501',
        message: `this jit session is for database "${own}", not "${database.slice(0, 63)}"`,
        hint: 'open a session for that database with jit connect --database <name> (policy decides)',
      },
    };
  }
  const passthrough: Record<string, string> = {};
  for (const [k, v] of params) {
    if (PASSTHROUGH_PARAMS.has(k.toLowerCase()) && v.length <= MAX_PARAM_VALUE) passthrough[k] = v;
  }
  return { user, database, passthrough };
}

/** Returns the server-final message to send later, or undefined when the client failed to prove the secret. */
async function authenticateLocal(reader: PacketReader, client: Duplex, session: SessionInfo): Promise<string | undefined> {
  client.write(authenticationSASL([SCRAM_MECHANISM]));
  const init = await reader.message();
  if (init.type !== 0x70 /* p */) throw new PgProtocolError('expected SASLInitialResponse');
  const { mechanism, data } = parseSASLInitialResponse(init.body);
  if (mechanism !== SCRAM_MECHANISM || data === null) {
    throw new PgProtocolError('client selected an invalid SASL authentication mechanism', '28000');
  }
  try {
    const server = new ScramServer(session.localVerifier);
    client.write(authenticationSASLContinue(server.serverFirst(data)));
    const resp = await reader.message();
    if (resp.type !== 0x70) throw new PgProtocolError('expected SASLResponse');
    return server.serverFinal(resp.body.toString('utf8'));
  } catch (err) {
    if (err instanceof ScramError) return undefined;
    throw err;
  }
}

async function forwardCancel(
  pid: number,
  secret: Buffer,
  session: SessionInfo,
  target: PostgresTargetRef,
  deps: PostgresEngineDeps,
): Promise<void> {
  const found = deps.registry.lookupCancelKey(pid, secret);
  // Unknown keys and keys of other sessions do nothing, exactly like PostgreSQL (no answer either way).
  if (!found || found.stream.sessionId !== session.id || found.stream.target !== target.name) return;
  // A statement held for approval never reached the server: cancelling gives up the wait instead.
  if (heldStatements.get(found.stream)?.cancelHeld()) {
    deps.emit({
      event: 'query.cancelled',
      session: session.id,
      target: target.name,
      outcome: 'info',
      data: { stream: found.stream.id, held: true },
    });
    return;
  }
  try {
    await sendUpstreamCancel(target.config, found.real, deps.clock);
    deps.emit({ event: 'query.cancelled', session: session.id, target: target.name, outcome: 'info', data: { stream: found.stream.id } });
  } catch (err) {
    deps.logger.warn({ session: session.id, target: target.name, err: (err as Error).message }, 'forwarding a cancel request failed');
  }
}

function relay(client: Duplex, upstream: Duplex, stream: LiveStream): void {
  (client as Partial<net.Socket>).setNoDelay?.(true);
  (upstream as Partial<net.Socket>).setNoDelay?.(true);
  const kill = () => stream.destroy();
  upstream.on('error', kill);
  client.on('close', kill);
  upstream.on('close', kill);
  // pipe ends the destination when the source ends: a FIN travels through (half-close).
  upstream.pipe(client);
  client.pipe(upstream);
}

function makeKey(deps: PostgresEngineDeps): { pid: number; secret: Buffer } {
  const b = deps.random(8);
  return { pid: b.readUInt32BE(0) & 0x7fffffff || 1, secret: Buffer.from(b.subarray(4)) };
}

/** Close the stream when the session expires, even if nobody told us (VALID UNTIL only stops new logins). */
function armExpiry(session: SessionInfo, clock: Clock, onExpire: () => void): NodeJS.Timeout | undefined {
  const at = Date.parse(session.expiresAt);
  if (Number.isNaN(at)) return undefined;
  const ms = Math.min(Math.max(at - clock.now(), 0), 2 ** 31 - 1);
  const t = clock.setTimeout(onExpire, ms);
  t.unref?.();
  return t;
}

function sendFatal(client: Duplex, f: Fatal): void {
  if (client.writable) client.write(buildErrorResponse({ severity: 'FATAL', code: f.code, message: f.message, hint: f.hint }));
}

/** The agent refuses this connection before it starts (recorded as connection.refused). */
class SessionRefused extends Error {
  constructor(
    readonly reason: string,
    readonly fatal: { code: string; message: string; hint?: string },
  ) {
    super(fatal.message);
  }
}

/**
 * A server newer than the SQL parser has grammar jit cannot judge: refused. The major version
 * comes from the server's own server_version (ParameterStatus), e.g. "18.4", "19beta1".
 */
export function serverVersionRefusal(
  parameters: { name: string; value: string }[],
): { reason: string; fatal: { code: string; message: string; hint: string } } | undefined {
  const v = parameters.find((p) => p.name === 'server_version')?.value ?? '';
  const major = Number(/^(\d+)/.exec(v)?.[1]);
  if (Number.isInteger(major) && major <= PG_BUILTIN_MAJOR) return undefined;
  return {
    reason: 'server-version',
    fatal: {
      code: '0A000',
      message: Number.isInteger(major)
        ? `jit: the target runs PostgreSQL ${major}, newer than the SQL parser jit inspects with (${PG_BUILTIN_MAJOR}); its statements cannot be judged`
        : `jit: the target did not report a PostgreSQL version jit can read ("${v.slice(0, 40)}")`,
      hint: 'upgrade the jit agent to a version whose parser knows this server',
    },
  };
}

function reportStartupFailure(
  err: unknown,
  client: Duplex,
  session: SessionInfo,
  target: PostgresTargetRef,
  deps: PostgresEngineDeps,
): void {
  const log = { session: session.id, target: target.name };
  if (err instanceof PeerClosedError) return;
  if (err instanceof SessionRefused) {
    deps.emit({
      event: 'connection.refused',
      session: session.id,
      target: target.name,
      outcome: 'failure',
      data: { reason: err.reason, message: err.fatal.message },
    });
    sendFatal(client, err.fatal);
    return;
  }
  if (err instanceof PgProtocolError) {
    deps.logger.warn({ ...log, err: err.message }, 'client broke the protocol during startup');
    sendFatal(client, { code: err.sqlstate, message: err.message });
    return;
  }
  if (err instanceof UpstreamErrorResponse) {
    deps.logger.warn({ ...log, sqlstate: err.fields['C'] }, 'target refused the session role');
    if (client.writable) client.write(err.raw);
    return;
  }
  if (err instanceof UpstreamUnavailableError || err instanceof ScramError) {
    deps.logger.warn({ ...log, err: err.message }, 'cannot log in to the target');
    const e = new JitError('JIT_TARGET_UNREACHABLE');
    sendFatal(client, { code: '08001', message: `jit: ${e.message}`, hint: e.hint });
    return;
  }
  if (err instanceof JitError) {
    deps.logger.warn({ ...log, code: err.code, detail: err.detail }, 'session setup failed');
    sendFatal(client, { code: '08004', message: `jit: ${err.message}`, hint: err.hint });
    return;
  }
  deps.logger.error({ ...log, err }, 'unexpected error in the postgres engine');
  sendFatal(client, { code: 'XX000', message: 'jit: unexpected error in the agent' });
}
