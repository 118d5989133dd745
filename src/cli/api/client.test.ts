import { describe, expect, it } from 'vitest';
import { systemClock } from '#shared/runtime/ctx.js';
import { ApiClient } from './client.js';

const WHOAMI = { subject: 's', username: 'alice', groups: [], admin: false, issuer: 'i', expiresAt: '2026-01-01T00:00:00Z' };

/** A scripted fetch (unit test: the network is out of scope here; cli-connect.test.ts uses real sockets). */
function scripted(responses: Array<() => Response>) {
  const seen: Array<{ url: string; auth: string | null }> = [];
  const fetch = (async (url: string, init: RequestInit) => {
    seen.push({ url, auth: new Headers(init.headers).get('authorization') });
    const next = responses.shift();
    if (!next) throw new Error('no more responses');
    return next();
  }) as typeof globalThis.fetch;
  return { fetch, seen };
}

function auth() {
  const calls: Array<string | undefined> = [];
  return {
    calls,
    getAccessToken: async (opts?: { rejected?: string }) => {
      calls.push(opts?.rejected);
      return opts?.rejected ? 'at-2' : 'at-1';
    },
  };
}

const json = (status: number, body: unknown) => () =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

describe('ApiClient', () => {
  it('a 401 triggers one refresh and a retry with the new token', async () => {
    const f = scripted([json(401, { error: { code: 'JIT_AUTH_INVALID_TOKEN', message: 'no' } }), json(200, WHOAMI)]);
    const a = auth();
    const api = new ApiClient({ ctx: { fetch: f.fetch, clock: systemClock }, server: 'https://jit.example.com', auth: a });
    expect((await api.whoami()).username).toBe('alice');
    expect(f.seen).toEqual([
      { url: 'https://jit.example.com/v1/whoami', auth: 'Bearer at-1' },
      { url: 'https://jit.example.com/v1/whoami', auth: 'Bearer at-2' },
    ]);
    expect(a.calls).toEqual([undefined, 'at-1']);
  });

  it('a second 401 → JIT_AUTH_INVALID_TOKEN', async () => {
    const body = { error: { code: 'JIT_AUTH_INVALID_TOKEN', message: 'The access token was refused' } };
    const f = scripted([json(401, body), json(401, body)]);
    const api = new ApiClient({ ctx: { fetch: f.fetch, clock: systemClock }, server: 'https://x', auth: auth() });
    await expect(api.whoami()).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN', exitCode: 3 });
  });

  it('error bodies keep the server code and message; unknown bodies fall back by status', async () => {
    const f = scripted([
      json(403, { error: { code: 'JIT_APPROVAL_DENIED', message: 'bob denied it', hint: 'ask again' } }),
      () => new Response('<html>bad gateway</html>', { status: 502 }),
      () => new Response('oops', { status: 500 }),
    ]);
    const api = new ApiClient({ ctx: { fetch: f.fetch, clock: systemClock }, server: 'https://x', auth: auth() });
    await expect(api.targets()).rejects.toMatchObject({ code: 'JIT_APPROVAL_DENIED', message: 'bob denied it', hint: 'ask again' });
    await expect(api.targets()).rejects.toMatchObject({ code: 'JIT_SERVER_UNREACHABLE' });
    await expect(api.targets()).rejects.toMatchObject({
      code: 'JIT_INTERNAL',
      message: 'The jit server answered HTTP 500 to GET /v1/targets',
    });
  });

  it('network failure → JIT_SERVER_UNREACHABLE; a malformed answer → JIT_PROTOCOL_ERROR', async () => {
    const f = scripted([
      () => {
        throw new TypeError('fetch failed');
      },
      json(200, { targets: [{ name: 1 }] }),
    ]);
    const api = new ApiClient({ ctx: { fetch: f.fetch, clock: systemClock }, server: 'https://x', auth: auth() });
    await expect(api.targets()).rejects.toMatchObject({
      code: 'JIT_SERVER_UNREACHABLE',
      message: 'The jit server at https://x cannot be reached',
    });
    await expect(api.targets()).rejects.toMatchObject({
      code: 'JIT_PROTOCOL_ERROR',
      message: 'The jit server sent an unexpected answer to GET /v1/targets',
    });
  });

  it('an oversized answer is refused', async () => {
    const f = scripted([() => new Response('x'.repeat(9 * 1024 * 1024), { status: 200 })]);
    const api = new ApiClient({ ctx: { fetch: f.fetch, clock: systemClock }, server: 'https://x', auth: auth() });
    await expect(api.targets()).rejects.toMatchObject({ code: 'JIT_PROTOCOL_ERROR', message: 'The jit server sent an oversized answer' });
  });
});
