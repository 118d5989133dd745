/**
 * The agent's half of the engine registry (src/shared/contract/engines.ts): one engine per target
 * type. The record is typed over the registry's types, so a type without an engine does not
 * compile, and agent/main.ts dispatches every stream through it without knowing any protocol.
 */
import type { Duplex } from 'node:stream';
import type { SessionInfo } from '#shared/contract/agent.js';
import type { TargetTypeName } from '#shared/contract/engines.js';
import { createPostgresService, type PostgresServiceDeps } from './postgres-service.js';
import { createSshService, type SshServiceDeps } from './ssh/service.js';

export interface AgentEngine {
  /**
   * Serve one stream of a session on a target of this type. `dial` opens the data stream to the
   * control plane; the engine calls it when it is ready (after reaching the target, where that
   * can fail). A rejection is reported to the control plane as stream.failed.
   */
  open(session: SessionInfo, streamId: string, dial: () => Promise<Duplex>): Promise<void>;
  /** The session is over: destroy what the engine minted for it. */
  sessionEnded(session: string, target: string, reason: string): Promise<void>;
  close(): Promise<void>;
}

export type EngineDeps = PostgresServiceDeps & SshServiceDeps;

export interface AgentEngines {
  engines: Record<TargetTypeName, AgentEngine>;
  /** Session roles per postgres target, for the reaper. */
  reapable: ReturnType<typeof createPostgresService>['roles'];
}

export function createEngines(deps: EngineDeps): AgentEngines {
  const postgres = createPostgresService(deps);
  const ssh = createSshService(deps);
  return {
    engines: {
      postgres,
      ssh: {
        async open(session, streamId, dial) {
          await ssh.handle(await dial(), session, streamId);
        },
        async sessionEnded(session, _target, reason) {
          ssh.sessionEnded(session, reason);
        },
        async close() {
          ssh.close();
        },
      },
    },
    reapable: postgres.roles,
  };
}
