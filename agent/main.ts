/**
 * The jit agent: dials out to the control plane, serves stream.open with the engine for the
 * session's target, mints and destroys per-session credentials, and reaps orphans.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AgentConfig, AgentPostgresTarget } from '#shared/config/agent.js';
import { AGENT_PROTOCOL_VERSION, type ServerToAgent } from '#shared/contract/agent.js';
import { isErrorCode } from '#shared/errors/codes.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import { type Clock, systemClock } from '#shared/runtime/ctx.js';
import { loadSqlParser } from '#protocol/postgres/classify.js';
import { Catalog } from './catalog.js';
import { PostgresRoles } from './credentials/postgres-roles.js';
import { ControlChannel, dialStream } from './dialer.js';
import { StatementApprovals } from './engines/inspect/approval.js';
import { handlePostgresClient } from './engines/postgres.js';
import { dialTarget } from './engines/postgres-upstream.js';
import { createSshService } from './engines/ssh/service.js';
import { startReaper } from './reaper.js';
import { StreamRegistry } from './streams.js';

/** Reported in hello; kept equal to package.json's version. */
export const AGENT_VERSION = '0.1.0';
/** What this agent can do; the control plane fails closed on a missing capability. */
export const AGENT_CAPABILITIES = ['postgres.scram-local', 'postgres.inspect', 'ssh'];

export interface RunningAgent {
  close(): Promise<void>;
  whenConnected(): Promise<void>;
}

export interface StartAgentOptions {
  config: AgentConfig;
  token: string;
  logger: Logger;
  clock?: Clock;
  /** Environment for `adminUrlEnv` (read once here); defaults to the process environment. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Reconnect backoff overrides (tests). */
  backoff?: { baseDelayMs?: number; maxDelayMs?: number };
}

/** Start the agent; it keeps (re)connecting to the control plane until close(). */
export async function startAgent(opts: StartAgentOptions): Promise<RunningAgent> {
  const { config, token, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const env = opts.env ?? process.env;
  const registry = new StreamRegistry();
  // The SQL parser (WebAssembly) loads once, before any session can be inspected.
  await loadSqlParser();
  const ca = config.caFile ? readFileSync(config.caFile) : undefined;

  // The channel exists before the roles so their events have somewhere to go (queued until connected).
  let channel: ControlChannel;
  const emit = (e: Parameters<ControlChannel['emit']>[0]) => channel.emit(e);

  const pgTargets = new Map<string, { config: AgentPostgresTarget; roles: PostgresRoles; catalog: Catalog }>();
  for (const [name, t] of Object.entries(config.targets)) {
    if (t.type !== 'postgres') continue;
    const adminUrl = t.adminUrl ?? (t.adminUrlEnv ? env[t.adminUrlEnv] : undefined);
    if (!adminUrl) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: `target ${name}: no admin connection URL`,
        hint: t.adminUrlEnv ? `set the environment variable ${t.adminUrlEnv}` : 'set adminUrlEnv (or adminUrl) for the target',
      });
    }
    const roles = new PostgresRoles({ target: name, config: t, adminUrl, emit, logger, clock, random: randomBytes });
    const catalog = new Catalog({ adminUrl, target: name, logger, clock });
    pgTargets.set(name, { config: t, roles, catalog });
  }

  // require-approval statements are held here until the control plane's decision (fail closed).
  const approvals = new StatementApprovals({
    send: (m) => channel.send(m),
    connected: () => channel.connected,
    clock,
    random: randomBytes,
    logger,
  });

  const ssh = createSshService({ config, env, emit, send: (m) => channel.send(m), registry, logger, clock, approve: approvals.await });

  const engineDeps = (t: { roles: PostgresRoles; catalog: Catalog }) => ({
    roles: t.roles,
    catalog: t.catalog,
    registry,
    emit,
    logger,
    clock,
    random: randomBytes,
    // Inspected statements run only while their audit events can reach the control plane.
    recorderReady: () => channel.connected,
    flushAudit: () => channel.flush(),
    approve: approvals.await,
  });

  const refuse = (streamId: string, code: JitError['code'], message: string) => {
    channel.send({ type: 'stream.failed', streamId, code, message });
  };

  const onStreamOpen = async (msg: Extract<ServerToAgent, { type: 'stream.open' }>): Promise<void> => {
    const { session, streamId } = msg;
    if (ssh.serves(session.target)) {
      let socket: Awaited<ReturnType<typeof dialStream>>;
      try {
        socket = await dialStream({ controlPlane: config.controlPlane, token, streamId, ca, clock });
      } catch (err) {
        const e = err instanceof JitError ? err : new JitError('JIT_TARGET_UNREACHABLE');
        refuse(streamId, isErrorCode(e.code) ? e.code : 'JIT_TARGET_UNREACHABLE', e.message);
        return;
      }
      await ssh.handle(socket, session, streamId);
      return;
    }
    const t = pgTargets.get(session.target);
    if (!t) {
      refuse(streamId, 'JIT_TARGET_NOT_FOUND', `This agent does not serve ${session.target}`);
      return;
    }
    // Reach the target first, so the user gets a clear error instead of a connection that dies.
    let upstream: Awaited<ReturnType<typeof dialTarget>>;
    try {
      upstream = await dialTarget(t.config, clock, 5_000);
    } catch (err) {
      logger.warn({ target: session.target, err: (err as Error).message }, 'target unreachable');
      refuse(streamId, 'JIT_TARGET_UNREACHABLE', `The target ${session.target} cannot be reached from its agent`);
      return;
    }
    let socket: Awaited<ReturnType<typeof dialStream>>;
    try {
      socket = await dialStream({ controlPlane: config.controlPlane, token, streamId, ca, clock });
    } catch (err) {
      upstream.destroy();
      const e = err instanceof JitError ? err : new JitError('JIT_TARGET_UNREACHABLE');
      logger.warn({ stream: streamId, code: e.code, detail: e.detail }, 'could not open the data stream');
      refuse(streamId, isErrorCode(e.code) ? e.code : 'JIT_TARGET_UNREACHABLE', e.message);
      return;
    }
    await handlePostgresClient(socket, session, { name: session.target, config: t.config }, engineDeps(t), {
      streamId,
      upstream,
    });
  };

  const onSessionEnd = async (msg: Extract<ServerToAgent, { type: 'session.end' }>): Promise<void> => {
    approvals.sessionEnded(msg.session);
    const closed = registry.closeSession(msg.session);
    ssh.sessionEnded(msg.session, msg.reason);
    const t = pgTargets.get(msg.target);
    if (!t) return;
    try {
      await t.roles.dropSessionRole(msg.session, msg.reason);
    } catch {
      // Logged and reported by dropSessionRole; the reaper retries later.
    }
    logger.info({ session: msg.session, streams: closed }, 'session ended');
  };

  const reaper = startReaper(
    {
      targets: new Map([...pgTargets].map(([n, t]) => [n, t.roles])),
      askLive: (ids) => channel.askLive(ids),
      logger,
      clock,
    },
    config.reaperInterval * 1000,
  );

  channel = new ControlChannel({
    controlPlane: config.controlPlane,
    token,
    ca,
    hello: {
      type: 'hello',
      agent: config.name,
      version: AGENT_VERSION,
      protocol: AGENT_PROTOCOL_VERSION,
      capabilities: AGENT_CAPABILITIES,
      targets: Object.entries(config.targets).map(([name, t]) => ({ name, type: t.type })),
    },
    onMessage(msg) {
      if (msg.type === 'stream.open') {
        void onStreamOpen(msg).catch((err) => logger.error({ err, stream: msg.streamId }, 'stream failed'));
      } else if (msg.type === 'session.end') {
        void onSessionEnd(msg).catch((err) => logger.error({ err, session: msg.session }, 'session end failed'));
      } else if (msg.type === 'approval.decision') {
        approvals.onDecision(msg);
      }
    },
    onConnected: () => {
      approvals.onConnected();
      void reaper.runNow();
    },
    onDisconnected: () => approvals.onDisconnected(),
    logger,
    clock,
    baseDelayMs: opts.backoff?.baseDelayMs,
    maxDelayMs: opts.backoff?.maxDelayMs,
  });
  channel.start();

  return {
    whenConnected: () => channel.whenConnected(),
    async close() {
      reaper.stop();
      await channel.close();
      registry.closeAll();
      ssh.close();
      await Promise.all([...pgTargets.values()].flatMap((t) => [t.roles.close(), t.catalog.close()]));
    },
  };
}
