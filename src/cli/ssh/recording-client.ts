/**
 * GET /v1/sessions/:id/recording — the raw asciicast text (not JSON, so not through
 * ApiClient.request), size-capped: a hostile server must not make us buffer without bound.
 */
import { API_PREFIX } from '#shared/contract/http.js';
import { errorFromBody, JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';

const MAX_RECORDING_BYTES = 256 * 1024 * 1024;

/** The recording's text, or undefined when the session has none (404). */
export async function fetchRecording(
  deps: { ctx: Pick<Ctx, 'fetch'>; server: string; accessToken(): Promise<string> },
  sessionId: string,
): Promise<string | undefined> {
  let res: Response;
  try {
    res = await deps.ctx.fetch(`${deps.server}${API_PREFIX}/sessions/${encodeURIComponent(sessionId)}/recording`, {
      headers: { authorization: `Bearer ${await deps.accessToken()}`, accept: 'application/x-asciicast, application/json' },
    });
  } catch (err) {
    throw new JitError('JIT_SERVER_UNREACHABLE', { message: `The jit server at ${deps.server} cannot be reached`, cause: err });
  }
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.ok) {
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      body = undefined;
    }
    throw errorFromBody(body, res.status === 401 ? 'JIT_AUTH_INVALID_TOKEN' : res.status === 403 ? 'JIT_ACCESS_DENIED' : 'JIT_INTERNAL');
  }
  const reader = res.body?.getReader();
  if (!reader) return '';
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_RECORDING_BYTES) {
      await reader.cancel();
      throw new JitError('JIT_PROTOCOL_ERROR', { message: 'The recording is larger than jit replay plays (256 MiB)' });
    }
    parts.push(value);
  }
  return Buffer.concat(parts).toString('utf8');
}
