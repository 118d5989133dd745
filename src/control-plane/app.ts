/**
 * Builds the control plane's HTTP API without listening (tests use `inject()`; main.ts listens).
 */
import Fastify, { type FastifyServerFactory, LogController } from 'fastify';
import { ZodError, z } from 'zod';
import { CreateSessionRequest, type Discovery, EndReason, type Target } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import { ApprovalRequiredError, type ApprovalService } from './approvals/approval-service.js';
import type { AuditLog } from './audit/audit-log.js';
import { type Admins, authenticate, isAdmin, type Principal, type TokenVerifier } from './auth.js';
import { auditRoutes } from './routes/audit.js';
import type { PolicyEngine } from './policy/policy.js';
import type { RecordingStore } from './recordings/store.js';
import type { RelayHub } from './relay/hub.js';
import { recordingRoutes } from './routes/recordings.js';
import { requestRoutes } from './routes/requests.js';
import { tokenRoutes } from './routes/token.js';
import type { MachineIdentity } from './identity/workload.js';
import { type SessionService, toSession } from './sessions/session-service.js';
import type { Db } from './store/db.js';
import { idSchema } from '#shared/contract/ids.js';

export interface AppDeps {
  discovery: Discovery;
  verifier: TokenVerifier;
  sessions: SessionService;
  audit: AuditLog;
  policy: PolicyEngine;
  hub: RelayHub;
  db: Db;
  admins: Admins;
  /** Session recordings (GET /v1/sessions/:id/recording). */
  recordings?: RecordingStore;
  /** Access requests and approvals (the /v1/requests routes). */
  approvals?: ApprovalService;
  /** Workloads and service accounts (POST /v1/token). */
  machines?: MachineIdentity;
  logger: Logger;
  serverFactory?: FastifyServerFactory;
}

const SessionIdParam = z.object({ id: idSchema('session id') });

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export function buildApp(deps: AppDeps) {
  const app = Fastify({
    loggerInstance: deps.logger,
    // Per-request lines would log paths with session ids at info level for every heartbeat.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    trustProxy: false,
    ...(deps.serverFactory ? { serverFactory: deps.serverFactory } : {}),
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof JitError) {
      if (err.detail) req.log.info({ code: err.code, detail: err.detail }, 'request refused');
      // Additive: a client that can file requests learns what the approvals rule asks for.
      if (err instanceof ApprovalRequiredError) {
        return reply.status(err.httpStatus).send({ ...err.toBody(), approval: err.requirement });
      }
      return reply.status(err.httpStatus).send(err.toBody());
    }
    if (err instanceof ZodError) {
      const issue = err.issues[0];
      const e = new JitError('JIT_USAGE', {
        message: `Invalid request: ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`.slice(0, 300),
      });
      return reply.status(400).send(e.toBody());
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) {
      return reply.status(status).send(new JitError('JIT_USAGE', { message: 'Invalid request' }).toBody());
    }
    req.log.error({ err }, 'unexpected error');
    return reply.status(500).send(new JitError('JIT_INTERNAL').toBody());
  });
  app.setNotFoundHandler((_req, reply) => reply.status(404).send(new JitError('JIT_USAGE', { message: 'No such endpoint' }).toBody()));

  const who = async (req: import('fastify').FastifyRequest): Promise<Principal> => {
    if (!req.principal) req.principal = await authenticate(req, deps.verifier, deps.audit);
    return req.principal;
  };

  app.get('/.well-known/jit', async () => deps.discovery);
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await deps.db.selectFrom('sessions').select('id').limit(1).execute();
      return { ok: true };
    } catch {
      return reply.status(503).send({ ok: false });
    }
  });

  app.get('/v1/whoami', async (req) => {
    const p = await who(req);
    return {
      subject: p.subject,
      username: p.username,
      email: p.email,
      groups: p.groups,
      admin: isAdmin(p, deps.admins),
      issuer: p.issuer,
      expiresAt: new Date(p.expiresAt).toISOString(),
    };
  });

  app.get('/v1/targets', async (req) => {
    const p = await who(req);
    const targets: Target[] = deps.policy.visibleTargets(p).map((d) => ({
      name: d.target.name,
      type: d.target.type,
      description: d.target.description,
      database: d.target.database,
      online: deps.hub.isOnline(d.target.agent),
      maxDurationSeconds: d.maxDurationSeconds,
    }));
    return { targets };
  });

  app.post('/v1/sessions', async (req, reply) => {
    const p = await who(req);
    const body = CreateSessionRequest.parse(req.body ?? {});
    const created = await deps.sessions.create(p, body);
    return reply.status(201).send(created);
  });

  app.get('/v1/sessions', async (req) => {
    const p = await who(req);
    const q = z.object({ all: z.string().optional(), active: z.string().optional() }).parse(req.query);
    const all = q.all === '1' || q.all === 'true';
    if (all && !isAdmin(p, deps.admins)) throw new JitError('JIT_ADMIN_REQUIRED');
    const rows = await deps.sessions.list({
      ...(all ? {} : { subject: p.subject, issuer: p.issuer }),
      activeOnly: q.active === '1' || q.active === 'true',
    });
    return { sessions: rows.map(toSession) };
  });

  app.get('/v1/sessions/:id', async (req) => {
    const p = await who(req);
    const { id } = SessionIdParam.parse(req.params);
    return { session: toSession(await deps.sessions.getOwned(p, id, isAdmin(p, deps.admins))) };
  });

  app.post('/v1/sessions/:id/heartbeat', async (req) => {
    const p = await who(req);
    const { id } = SessionIdParam.parse(req.params);
    return { session: toSession(await deps.sessions.heartbeat(p, id)) };
  });

  app.delete('/v1/sessions/:id', async (req) => {
    const p = await who(req);
    const { id } = SessionIdParam.parse(req.params);
    const adminCaller = isAdmin(p, deps.admins);
    const row = await deps.sessions.getOwned(p, id, adminCaller);
    const q = z.object({ reason: EndReason.optional() }).parse(req.query);
    const own = row.subject === p.subject && row.issuer === p.issuer;
    // Only the owner's CLI may say how its own session ended; anyone else ending it is an admin action.
    const reason = own ? (q.reason === 'killed' ? 'killed' : 'exit') : 'admin';
    const ended = await deps.sessions.end(id, reason, p.username);
    return { session: toSession(ended ?? row) };
  });

  // A session's own events, for its owner and for admins (jit replay).
  app.get('/v1/sessions/:id/events', async (req) => {
    const p = await who(req);
    const { id } = SessionIdParam.parse(req.params);
    const row = await deps.sessions.getOwned(p, id, isAdmin(p, deps.admins));
    const q = z.object({ limit: z.coerce.number().int().min(1).max(10_000).optional() }).parse(req.query);
    const events = await deps.audit.query({ session: id, limit: q.limit ?? 10_000 });
    return { session: toSession(row), events };
  });

  if (deps.approvals) {
    void app.register(requestRoutes, { approvals: deps.approvals, who, isAdmin: (p) => isAdmin(p, deps.admins) });
  }

  if (deps.machines) {
    void app.register(tokenRoutes, { machines: deps.machines, audit: deps.audit });
  }

  if (deps.recordings) {
    void app.register(recordingRoutes, {
      recordings: deps.recordings,
      sessions: deps.sessions,
      who,
      isAdmin: (p) => isAdmin(p, deps.admins),
    });
  }

  // The audit log's API (admins only): routes/audit.ts.
  void app.register(auditRoutes, {
    audit: deps.audit,
    db: deps.db,
    verifier: deps.verifier,
    admins: deps.admins,
  });

  return app;
}
