/**
 * The agent's PostgreSQL side, wired once: per target its admin connection for session roles and
 * its catalog for masking. agent/engines/registry.ts hands it the streams of postgres targets.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { AgentConfig, AgentPostgresTarget } from '#shared/config/agent.js';
import type { SessionInfo } from '#shared/contract/agent.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import { PG_BUILTIN_MAJOR } from '#protocol/postgres/pg-builtins.js';
import { Catalog } from '../catalog.js';
import { PostgresRoles } from '../credentials/postgres-roles.js';
import type { EmitEvent } from '../events.js';
import type { StreamRegistry } from '../streams.js';
import type { AwaitApproval } from './inspect/approval.js';
import { handlePostgresClient } from './postgres.js';
import { dialTarget } from './postgres-upstream.js';

export interface PostgresServiceDeps {
  config: AgentConfig;
  env: Readonly<Record<string, string | undefined>>;
  emit: EmitEvent;
  registry: StreamRegistry;
  logger: Logger;
  clock: Clock;
  /** Inspected statements run only while their audit events can reach the control plane. */
  recorderReady(): boolean;
  flushAudit(): void;
  approve: AwaitApproval;
}

interface PgTarget {
  config: AgentPostgresTarget;
  roles: PostgresRoles;
  catalog: Catalog;
  /** When a probe last reached the target (0: never). */
  reachableAt: number;
  probing: Promise<void> | undefined;
}

/** A successful reachability probe counts for this long. */
const PROBE_FRESH_MS = 10_000;

/** Load the postgres targets of the agent config (throws JIT_CONFIG_INVALID without an admin URL). */
export function createPostgresService(deps: PostgresServiceDeps) {
  const { logger, clock } = deps;
  const targets = new Map<string, PgTarget>();
  for (const [name, t] of Object.entries(deps.config.targets)) {
    if (t.type !== 'postgres') continue;
    const adminUrl = t.adminUrl ?? (t.adminUrlEnv ? deps.env[t.adminUrlEnv] : undefined);
    if (!adminUrl) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: `target ${name}: no admin connection URL`,
        hint: t.adminUrlEnv ? `set the environment variable ${t.adminUrlEnv}` : 'set adminUrlEnv (or adminUrl) for the target',
      });
    }
    const roles = new PostgresRoles({ target: name, config: t, adminUrl, emit: deps.emit, logger, clock, random: randomBytes });
    const catalog = new Catalog({ adminUrl, target: name, logger, clock });
    targets.set(name, { config: t, roles, catalog, reachableAt: 0, probing: undefined });
    // At start, say at once when the target is newer than the SQL parser: its sessions will be
    // refused (or warned, if policy says newerServer: warn) — each session checks again.
    catalog.serverMajor(t.database).then(
      (major) => {
        if (major > PG_BUILTIN_MAJOR) {
          logger.warn(
            { target: name, serverMajor: major, parserMajor: PG_BUILTIN_MAJOR },
            "target runs a PostgreSQL newer than jit's SQL parser; inspected sessions are refused unless policy says newerServer: warn",
          );
        }
      },
      () => {},
    );
  }

  /** A TCP connect to the target (closed at once), fresh for PROBE_FRESH_MS after a success. */
  const probe = (t: PgTarget): Promise<void> => {
    if (clock.now() - t.reachableAt < PROBE_FRESH_MS) return Promise.resolve();
    t.probing ??= dialTarget(t.config, clock, 5_000)
      .then((sock) => {
        sock.destroy();
        t.reachableAt = clock.now();
      })
      .finally(() => {
        t.probing = undefined;
      });
    return t.probing;
  };

  return {
    /** Session roles per target, for the reaper. */
    roles: new Map([...targets].map(([n, t]) => [n, t.roles])),

    /**
     * Reach the target first, so the user gets a clear error instead of a stream that dies — but
     * never one target connection per stream: a connection that sends nothing must not take a
     * server slot. The target connection is opened only after the client's startup message and
     * the session secret (handlePostgresClient); this is a probe, made at most once per
     * PROBE_FRESH_MS per target and shared by concurrent streams.
     */
    async open(session: SessionInfo, streamId: string, dial: () => Promise<Duplex>): Promise<void> {
      const t = targets.get(session.target)!;
      try {
        await probe(t);
      } catch (err) {
        logger.warn({ target: session.target, err: (err as Error).message }, 'target unreachable');
        throw new JitError('JIT_TARGET_UNREACHABLE', { message: `The target ${session.target} cannot be reached from its agent` });
      }
      const socket = await dial();
      const engineDeps = {
        roles: t.roles,
        catalog: t.catalog,
        registry: deps.registry,
        emit: deps.emit,
        logger,
        clock,
        random: randomBytes,
        recorderReady: deps.recorderReady,
        flushAudit: deps.flushAudit,
        approve: deps.approve,
      };
      await handlePostgresClient(socket, session, { name: session.target, config: t.config }, engineDeps, { streamId });
    },

    async sessionEnded(session: string, target: string, reason: string): Promise<void> {
      const t = targets.get(target);
      if (!t) return;
      try {
        await t.roles.dropSessionRole(session, reason);
      } catch {
        // Logged and reported by dropSessionRole; the reaper retries later.
      }
    },

    async close(): Promise<void> {
      await Promise.all([...targets.values()].flatMap((t) => [t.roles.close(), t.catalog.close()]));
    },
  };
}
