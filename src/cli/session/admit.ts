/**
 * What every CLI verb checks about a session the server just created, before using it: the id is
 * well formed (it goes into URLs, role names and the environment) and the target's engine opens
 * with this verb. A session of the wrong type is ended at once, so nothing lingers.
 */
import type { Session } from '#shared/contract/http.js';
import { type EngineSpec, verbRefusal } from '#shared/contract/engines.js';
import { isId } from '#shared/contract/ids.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { ApiClient } from '../api/client.js';

export async function admitSession(
  api: Pick<ApiClient, 'endSession'>,
  verb: EngineSpec['verbs'][number],
  target: string,
  session: Session,
): Promise<void> {
  if (!isId(session.id)) throw new JitError('JIT_PROTOCOL_ERROR', { message: 'The jit server sent a malformed session id' });
  const refusal = verbRefusal(verb, target, session.targetType);
  if (refusal === undefined) return;
  await api.endSession(session.id, 'exit').catch(() => undefined);
  throw new JitError('JIT_USAGE', { message: refusal, hint: `jit targets shows each target's type` });
}
