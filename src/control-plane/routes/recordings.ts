/**
 * `GET /v1/sessions/:id/recording` — a session's terminal recording (asciicast v2), for the
 * session's owner and for admins; others get the same answer as for a missing session.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { JitError } from '#shared/errors/jit-error.js';
import type { Principal } from '../auth.js';
import type { RecordingStore } from '../recordings/store.js';
import type { SessionService } from '../sessions/session-service.js';
import { idSchema } from '#shared/contract/ids.js';

export interface RecordingRoutesDeps {
  recordings: RecordingStore;
  sessions: Pick<SessionService, 'getOwned'>;
  who(req: FastifyRequest): Promise<Principal>;
  isAdmin(p: Principal): boolean;
}

const IdParam = z.object({ id: idSchema('session id') });

/** The recording route, as a fastify plugin (errors go to the app's error handler). */
export const recordingRoutes: FastifyPluginAsync<RecordingRoutesDeps> = async (app, deps) => {
  app.get('/v1/sessions/:id/recording', async (req, reply) => {
    const p = await deps.who(req);
    const { id } = IdParam.parse(req.params);
    await deps.sessions.getOwned(p, id, deps.isAdmin(p));
    const st = deps.recordings.stat(id);
    if (!st) {
      throw new JitError('JIT_SESSION_NOT_FOUND', {
        message: `Session ${id} has no recording`,
        hint: 'only SSH sessions are recorded; jit replay shows the timeline of others',
      });
    }
    return reply
      .header('content-type', 'application/x-asciicast; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(deps.recordings.open(id));
  });
};
