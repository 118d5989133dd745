/**
 * The audit log's background work, wired by main.ts: the signing key, the log itself, a timer
 * that seals the chain with a checkpoint, retention, and forwarding to SIEM / syslog.
 */
import path from 'node:path';
import type { AuditConfig } from '#shared/config/server.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import { AuditForwarder } from '../forwarding/forwarder.js';
import { createSink } from '../forwarding/sinks.js';
import type { Db } from '../store/db.js';
import { AuditSigner } from './audit-key.js';
import { AuditLog } from './audit-log.js';

export interface AuditWorkersDeps {
  config: AuditConfig;
  dataDir: string;
  db: Db;
  clock: Clock;
  logger: Logger;
  /** Resolve a path from the config file's folder. */
  resolve(p: string): string;
  env: Readonly<Record<string, string | undefined>>;
}

export interface AuditWorkers {
  audit: AuditLog;
  forwarder: AuditForwarder;
  /** Start the timers and forwarding (after the server is up). */
  start(): Promise<void>;
  /** Stop them, commit what is queued and write a last checkpoint. */
  close(): Promise<void>;
}

/** Build the audit log and its workers; a bad forwarding destination fails start-up. */
export async function startAuditWorkers(deps: AuditWorkersDeps): Promise<AuditWorkers> {
  const { config, clock, logger } = deps;
  const signer = AuditSigner.load(path.join(deps.dataDir, 'audit-key.json'));
  const audit = new AuditLog(deps.db, clock, { stream: config.stream, signer, checkpointEveryEvents: config.checkpointEvery, logger });
  const destinations = [];
  for (const dest of config.forward) destinations.push({ dest, sink: await createSink(dest, { env: deps.env, resolve: deps.resolve }) });
  const forwarder = new AuditForwarder(
    {
      db: deps.db,
      audit,
      clock,
      logger,
      random: Math.random,
      retryInitialSeconds: config.retryInitial,
      retryMaxSeconds: config.retryMax,
    },
    destinations,
  );
  if (destinations.length > 0) audit.forwarding = forwarder;
  const timers: NodeJS.Timeout[] = [];
  let pruning: Promise<unknown> | undefined;
  const prune = () => {
    if (config.retention === undefined || pruning) return;
    pruning = audit
      .prune(clock.now() - config.retention * 1000, { notAfterId: forwarder.minCursor() })
      .then((r) => r && logger.info({ ...r }, 'audit: pruned events past retention'))
      .catch((err) => logger.error({ err }, 'audit: retention failed'))
      .finally(() => {
        pruning = undefined;
      });
  };
  return {
    audit,
    forwarder,
    async start() {
      // A checkpoint at start seals whatever a previous run left after its last one.
      await audit.checkpoint();
      const cp = clock.setInterval(() => {
        audit.checkpoint().catch((err) => logger.error({ err }, 'audit: checkpoint failed'));
      }, Math.max(1, config.checkpointInterval) * 1000);
      cp.unref?.();
      timers.push(cp);
      if (config.retention !== undefined) {
        prune();
        const pr = clock.setInterval(prune, Math.max(1, config.pruneInterval) * 1000);
        pr.unref?.();
        timers.push(pr);
      }
      await forwarder.start();
    },
    async close() {
      for (const t of timers) clock.clearInterval(t);
      await pruning;
      await forwarder.close();
      await audit.close();
    },
  };
}
