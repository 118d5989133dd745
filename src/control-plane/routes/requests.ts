/**
 * Access requests over REST: file, list, show, approve, deny, cancel (docs/approvals.md).
 * Sessions are opened with an approved request through POST /v1/sessions { request }.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ApproveBody, CreateAccessRequest, DenyBody } from '#shared/contract/http.js';
import type { ApprovalService } from '../approvals/approval-service.js';
import type { Principal } from '../auth.js';
import { idSchema } from '#shared/contract/ids.js';

export interface RequestRoutesDeps {
  approvals: ApprovalService;
  /** The authenticated caller (401 otherwise). */
  who(req: FastifyRequest): Promise<Principal>;
  isAdmin(p: Principal): boolean;
}

const IdParam = z.object({ id: idSchema('request id') });
const flag = z
  .string()
  .optional()
  .transform((v) => v === '1' || v === 'true');
const ListQuery = z.object({
  mine: flag,
  'to-review': flag,
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

/** The /v1/requests routes, as a fastify plugin (errors go to the app's error handler). */
export const requestRoutes: FastifyPluginAsync<RequestRoutesDeps> = async (app, deps) => {
  const { approvals, who, isAdmin } = deps;

  app.post('/v1/requests', async (req, reply) => {
    const p = await who(req);
    const body = CreateAccessRequest.parse(req.body ?? {});
    return reply.status(201).send({ request: await approvals.file(p, body) });
  });

  app.get('/v1/requests', async (req) => {
    const p = await who(req);
    const q = ListQuery.parse(req.query);
    // Neither flag: both lists (what I filed and what waits for me).
    const neither = !q.mine && !q['to-review'];
    const requests = await approvals.list(p, {
      mine: q.mine || neither,
      toReview: q['to-review'] || neither,
      ...(q.limit ? { limit: q.limit } : {}),
    });
    return { requests };
  });

  app.get('/v1/requests/:id', async (req) => {
    const p = await who(req);
    const { id } = IdParam.parse(req.params);
    return { request: await approvals.get(p, id, isAdmin(p)) };
  });

  app.post('/v1/requests/:id/approve', async (req) => {
    const p = await who(req);
    const { id } = IdParam.parse(req.params);
    const body = ApproveBody.parse(req.body ?? {});
    return { request: await approvals.approve(p, id, body, isAdmin(p)) };
  });

  app.post('/v1/requests/:id/deny', async (req) => {
    const p = await who(req);
    const { id } = IdParam.parse(req.params);
    const body = DenyBody.parse(req.body ?? {});
    return { request: await approvals.deny(p, id, body, isAdmin(p)) };
  });

  app.post('/v1/requests/:id/cancel', async (req) => {
    const p = await who(req);
    const { id } = IdParam.parse(req.params);
    return { request: await approvals.cancel(p, id, isAdmin(p)) };
  });
};
