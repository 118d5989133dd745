/**
 * The audit API, for administrators only: query and tail events, verify the chain, read its
 * checkpoints and public keys, see forwarding backlog, and get the evidence report's data.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AuditForwardingStatus, AuditVerifyResult } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { AuditLog } from '../audit/audit-log.js';
import { dbEventSource, toCheckpoint } from '../audit/db-source.js';
import { buildReport } from '../audit/report.js';
import { verifyAudit } from '#shared/audit/verify.js';
import { type Admins, authenticate, isAdmin, type Principal, type TokenVerifier } from '../auth.js';
import type { Db } from '../store/db.js';

export interface AuditRoutesOptions {
  audit: AuditLog;
  db: Db;
  verifier: TokenVerifier;
  admins: Admins;
}

const Outcome = z.enum(['success', 'failure', 'info']);
const EpochMs = z.coerce.number().int().min(0).max(8.64e15);
const AuditQueryString = z.object({
  session: z.string().max(64).optional(),
  type: z
    .string()
    .max(64)
    .regex(/^[a-z0-9.*_-]+$/, 'letters, digits, . - _ and a trailing *')
    .optional(),
  user: z.string().max(256).optional(),
  target: z.string().max(128).optional(),
  outcome: Outcome.optional(),
  since: EpochMs.optional(),
  until: EpochMs.optional(),
  afterId: z.coerce.number().int().min(0).optional(),
  /** Long poll: hold the answer up to this many seconds until a matching event arrives. */
  wait: z.coerce.number().min(0).max(25).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).optional(),
});
const VerifyQuery = z.object({
  /** Start at the newest checkpoint at or before this event id. */
  since: z.coerce.number().int().min(0).optional(),
  /** …or at or before the first event at this time (epoch ms). */
  sinceTime: EpochMs.optional(),
});
const ReportQuery = z.object({ since: EpochMs, until: EpochMs.optional() });
const MAX_REPORT_WINDOW_MS = 3 * 366 * 86_400_000;

/** Fastify plugin: the /v1/audit routes. */
export async function auditRoutes(app: FastifyInstance, opts: AuditRoutesOptions): Promise<void> {
  const { audit, db } = opts;
  const admin = async (req: FastifyRequest): Promise<Principal> => {
    req.principal ??= await authenticate(req, opts.verifier, audit);
    if (!isAdmin(req.principal, opts.admins)) throw new JitError('JIT_ADMIN_REQUIRED');
    return req.principal;
  };

  app.get('/v1/audit', async (req) => {
    await admin(req);
    const q = AuditQueryString.parse(req.query);
    const query = {
      session: q.session,
      type: q.type,
      actor: q.user,
      target: q.target,
      outcome: q.outcome,
      since: q.since,
      until: q.until,
      afterId: q.afterId,
      limit: q.limit,
    };
    let events = await audit.query(query);
    if (events.length === 0 && q.afterId !== undefined && q.wait) {
      // Long poll: wake on the next commit, the deadline, or the client going away.
      const deadline = audit.clock.now() + q.wait * 1000;
      let gone = false;
      req.raw.once('close', () => {
        gone = true;
      });
      while (events.length === 0 && !gone && audit.clock.now() < deadline) {
        await new Promise<void>((resolve) => {
          const t = audit.clock.setTimeout(finish, Math.max(1, deadline - audit.clock.now()));
          const off = audit.onAppended(finish);
          req.raw.once('close', finish);
          function finish() {
            audit.clock.clearTimeout(t);
            off();
            req.raw.off('close', finish);
            resolve();
          }
        });
        if (!gone) events = await audit.query(query);
      }
    }
    return { events, lastId: events.at(-1)?.id ?? q.afterId ?? (await audit.lastEventId()) };
  });

  const verify = async (req: FastifyRequest): Promise<AuditVerifyResult> => {
    await admin(req);
    const q = VerifyQuery.parse(req.query);
    const signer = audit.signer;
    if (!signer) throw new JitError('JIT_INTERNAL', { detail: 'audit signer missing' });
    // Include what is queued, so "I just did X; is it in the verified log?" holds.
    await audit.drain();
    return verifyAudit(dbEventSource(db), signer.verificationKeys(), { sinceId: q.since, sinceTime: q.sinceTime, now: audit.clock.now() });
  };
  app.get('/v1/audit/verify', verify);
  app.post('/v1/audit/verify', verify);

  app.get('/v1/audit/checkpoints', async (req) => {
    await admin(req);
    const q = z.object({ stream: z.string().max(32).optional() }).parse(req.query);
    let query = db.selectFrom('audit_checkpoints').selectAll().orderBy('stream').orderBy('last_seq');
    if (q.stream) query = query.where('stream', '=', q.stream);
    return { checkpoints: (await query.execute()).map(toCheckpoint) };
  });

  app.get('/v1/audit/key', async (req) => {
    await admin(req);
    return { keys: audit.signer?.publicKeys() ?? [] };
  });

  app.get('/v1/audit/forwarding', async (req): Promise<AuditForwardingStatus> => {
    await admin(req);
    return audit.forwarding ? audit.forwarding.status() : { headId: await audit.lastEventId(), destinations: [] };
  });

  app.get('/v1/audit/report', async (req) => {
    await admin(req);
    const q = ReportQuery.parse(req.query);
    const now = audit.clock.now();
    const until = q.until ?? now;
    if (until <= q.since) throw new JitError('JIT_USAGE', { message: 'The report window is empty: until must be after since' });
    if (until - q.since > MAX_REPORT_WINDOW_MS) throw new JitError('JIT_USAGE', { message: 'A report covers at most three years' });
    await audit.drain();
    return buildReport(db, { since: q.since, until, now });
  });
}
