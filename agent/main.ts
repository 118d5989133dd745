/**
 * The jit agent: dials out to the control plane, serves stream.open with the engine for the
 * session's target, mints and destroys per-session credentials, and reaps orphans.
 */
import { randomBytes } from 'node:crypto';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { configureMasking } from '#protocol/postgres/mask.js';
import type { AgentConfig } from '#shared/config/agent.js';
import { AGENT_PROTOCOL_VERSION, type ServerToAgent } from '#shared/contract/agent.js';
import { isErrorCode } from '#shared/errors/codes.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import { type Clock, systemClock } from '#shared/runtime/ctx.js';
import { loadSqlParser } from '#protocol/postgres/classify.js';
import { loadShellParser } from '#protocol/ssh/shell.js';
import { ControlChannel, dialStream } from './dialer.js';
import { StatementApprovals } from './engines/inspect/approval.js';
import { createEngines } from './engines/registry.js';
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

/**
 * The key of masking style `hash`: the operator's file when configured (rotate by replacing it and
 * restarting; masks change from then on), else derived from the agent token, which is as stable
 * and as secret as the agent itself. Never random: masks would change at every restart.
 */
export function maskingKey(config: Pick<AgentConfig, 'maskingKeyFile'>, token: string): Buffer {
  if (config.maskingKeyFile) {
    const key = readFileSync(config.maskingKeyFile);
    const trimmed = Buffer.from(key.toString('utf8').trim(), 'utf8');
    if (trimmed.length < 16) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: `maskingKeyFile ${config.maskingKeyFile} holds fewer than 16 bytes`,
        hint: 'openssl rand -base64 32 > <file>',
      });
    }
    return trimmed;
  }
  return createHmac('sha256', token).update('jit masking hash key v1').digest();
}

/** Start the agent; it keeps (re)connecting to the control plane until close(). */
export async function startAgent(opts: StartAgentOptions): Promise<RunningAgent> {
  const { config, token, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const env = opts.env ?? process.env;
  const registry = new StreamRegistry();
  // The SQL and shell parsers (WebAssembly) load once, before any session can be inspected.
  await Promise.all([loadSqlParser(), loadShellParser()]);
  const ca = config.caFile ? readFileSync(config.caFile) : undefined;
  // Masking style `hash` must give the same mask for the same value across sessions and restarts.
  configureMasking({ hashKey: maskingKey(config, token) });

  // The channel exists before the roles so their events have somewhere to go (queued until connected).
  let channel: ControlChannel;
  const emit = (e: Parameters<ControlChannel['emit']>[0]) => channel.emit(e);

  // require-approval statements are held here until the control plane's decision (fail closed).
  const approvals = new StatementApprovals({
    send: (m) => channel.send(m),
    connected: () => channel.connected,
    clock,
    random: randomBytes,
    logger,
  });

  const { engines, reapable } = createEngines({
    config,
    env,
    emit,
    send: (m) => channel.send(m),
    registry,
    logger,
    clock,
    recorderReady: () => channel.connected,
    flushAudit: () => channel.flush(),
    approve: approvals.await,
  });
  const engineFor = (target: string) => {
    const t = config.targets[target];
    return t ? engines[t.type] : undefined;
  };

  const onStreamOpen = async (msg: Extract<ServerToAgent, { type: 'stream.open' }>): Promise<void> => {
    const { session, streamId } = msg;
    const engine = engineFor(session.target);
    if (!engine) {
      channel.send({
        type: 'stream.failed',
        streamId,
        code: 'JIT_TARGET_NOT_FOUND',
        message: `This agent does not serve ${session.target}`,
      });
      return;
    }
    // Until the data stream is open a failure is the stream's (stream.failed); after, the engine's.
    let open = false;
    const dial = async () => {
      try {
        const socket = await dialStream({ controlPlane: config.controlPlane, token, streamId, ca, clock });
        open = true;
        return socket;
      } catch (err) {
        const e = err instanceof JitError ? err : new JitError('JIT_TARGET_UNREACHABLE');
        logger.warn({ stream: streamId, code: e.code, detail: e.detail }, 'could not open the data stream');
        throw e;
      }
    };
    try {
      await engine.open(session, streamId, dial);
    } catch (err) {
      if (open) throw err;
      const e = err instanceof JitError ? err : new JitError('JIT_TARGET_UNREACHABLE');
      channel.send({ type: 'stream.failed', streamId, code: isErrorCode(e.code) ? e.code : 'JIT_TARGET_UNREACHABLE', message: e.message });
    }
  };

  const onSessionEnd = async (msg: Extract<ServerToAgent, { type: 'session.end' }>): Promise<void> => {
    approvals.sessionEnded(msg.session);
    const closed = registry.closeSession(msg.session);
    await engineFor(msg.target)?.sessionEnded(msg.session, msg.target, msg.reason);
    logger.info({ session: msg.session, streams: closed }, 'session ended');
  };

  const reaper = startReaper(
    {
      targets: reapable,
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
      await Promise.all(Object.values(engines).map((e) => e.close()));
    },
  };
}
