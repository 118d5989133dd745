/**
 * The agent's SSH side, wired once: the targets' CAs and host keys (validated at start-up),
 * the per-session certificates, the recordings. agent/main.ts hands it the streams of ssh targets.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { AgentConfig } from '#shared/config/agent.js';
import type { AgentRecordingChunk, SessionInfo } from '#shared/contract/agent.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import { SshCa, SshCredentials } from '../../credentials/ssh-ca.js';
import type { EmitEvent } from '../../events.js';
import type { StreamRegistry } from '../../streams.js';
import type { AwaitApproval } from '../inspect/approval.js';
import { HostUsers } from './host-users.js';
import { handleSshClient, type SshTargetRef } from './engine.js';
import { AgentRecordings } from './recorder.js';
import { knownHostKeys } from './upstream.js';

export interface SshServiceDeps {
  config: AgentConfig;
  env: Readonly<Record<string, string | undefined>>;
  emit: EmitEvent;
  /** Send a control message now (false while disconnected). */
  send(msg: AgentRecordingChunk): boolean;
  registry: StreamRegistry;
  logger: Logger;
  clock: Clock;
  /** The hold point for require-approval commands (the agent's StatementApprovals.await). */
  approve?: AwaitApproval;
  /** False while audit events cannot reach the control plane: no command starts (fail closed). */
  recorderReady?: () => boolean;
}

export interface SshService {
  serves(target: string): boolean;
  /** Serve a stream of an ssh target (dialled by the caller). */
  handle(socket: Duplex, session: SessionInfo, streamId: string): Promise<void>;
  sessionEnded(sessionId: string, reason: string): void;
  close(): void;
}

/** Load the ssh targets of the agent config (throws JIT_CONFIG_INVALID on a bad CA or host key). */
export function createSshService(deps: SshServiceDeps): SshService {
  const targets = new Map<string, SshTargetRef>();
  for (const [name, t] of Object.entries(deps.config.targets)) {
    if (t.type !== 'ssh') continue;
    targets.set(name, { name, config: t, hostKeys: knownHostKeys(name, t), ca: SshCa.load(name, t, deps.env) });
  }
  const credentials = new SshCredentials({ emit: deps.emit, clock: deps.clock, random: randomBytes });
  const recordings = new AgentRecordings({ send: deps.send, clock: deps.clock, logger: deps.logger });
  const hostUsers = new HostUsers({ credentials, emit: deps.emit, logger: deps.logger });
  // accounts left by an agent that died: their sessions are gone with it
  for (const t of targets.values()) {
    hostUsers.sweep(t).catch((err: Error) => deps.logger.warn({ target: t.name, err: err.message }, 'host account sweep failed'));
  }
  const engineDeps = {
    credentials,
    recordings,
    registry: deps.registry,
    emit: deps.emit,
    logger: deps.logger,
    clock: deps.clock,
    random: randomBytes,
    hostUsers,
    // the databases this agent guards must not be reachable around the PostgreSQL engine
    guarded: Object.values(deps.config.targets).flatMap((t) => (t.type === 'postgres' ? [{ host: t.host, port: t.port }] : [])),
    ...(deps.approve ? { approve: deps.approve } : {}),
    ...(deps.recorderReady ? { recorderReady: deps.recorderReady } : {}),
  };
  return {
    serves: (target) => targets.has(target),
    handle: (socket, session, streamId) => handleSshClient(socket, session, targets.get(session.target)!, engineDeps, { streamId }),
    sessionEnded(sessionId, reason) {
      credentials.forget(sessionId, reason);
      recordings.forget(sessionId);
      void hostUsers.remove(sessionId, reason);
    },
    close: () => recordings.closeAll(),
  };
}
