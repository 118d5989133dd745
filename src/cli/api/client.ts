/**
 * The control plane's REST API (src/shared/contract/http.ts) as typed calls. Every response is
 * validated with zod; error bodies become JitErrors; a 401 gets one refresh-and-retry.
 */
import { z } from 'zod';
import {
  type AccessRequest,
  API_PREFIX,
  ApprovalRequirement,
  type ApproveBody,
  AuditEvent,
  CreateAccessRequest,
  CreateSessionRequest,
  CreateSessionResponse,
  HeartbeatResponse,
  RequestList,
  RequestResponse,
  Session,
  Target,
  WhoAmI,
} from '#shared/contract/http.js';
import type { ErrorCode } from '#shared/errors/codes.js';
import { errorFromBody, JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import type { AccessTokenOptions } from '../auth/auth.js';
import { clean } from '../output/style.js';
import { isId } from '#shared/contract/ids.js';

const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

export interface ApiClientDeps {
  ctx: Pick<Ctx, 'fetch' | 'clock'>;
  /** Normalised server URL (no trailing slash). */
  server: string;
  auth: { getAccessToken(opts?: AccessTokenOptions): Promise<string> };
  timeoutMs?: number;
}

export interface AuditQuery {
  session?: string;
  type?: string;
  user?: string;
  limit?: number;
}

/** An HTTP error answer that carried (or implied) an error code. */
export class ApiError extends JitError {
  constructor(
    readonly status: number,
    base: JitError,
    /** The whole error body (it may carry more than the error, e.g. `approval`). */
    readonly body?: unknown,
  ) {
    // Server text reaches the user's terminal: no escape sequences.
    super(base.code, { message: clean(base.message), hint: clean(base.hint), cause: base.cause });
  }
}

/** What the approvals rule asks for, when `err` is the server's JIT_APPROVAL_REQUIRED answer. */
export function approvalRequirementOf(err: unknown): ApprovalRequirement | undefined {
  if (!(err instanceof ApiError) || err.code !== 'JIT_APPROVAL_REQUIRED') return undefined;
  const parsed = ApprovalRequirement.safeParse((err.body as { approval?: unknown } | undefined)?.approval);
  return parsed.success ? parsed.data : undefined;
}

/** The fallback code for an HTTP status whose body names no code of ours. */
function codeForStatus(status: number): ErrorCode {
  if (status === 401) return 'JIT_AUTH_INVALID_TOKEN';
  if (status === 403) return 'JIT_ACCESS_DENIED';
  if (status === 410) return 'JIT_SESSION_ENDED';
  if (status === 502 || status === 503 || status === 504) return 'JIT_SERVER_UNREACHABLE';
  return 'JIT_INTERNAL';
}

/** Read a body with a size cap (a hostile server must not make us buffer without bound). */
async function readLimited(res: Response, limit: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > limit) throw new JitError('JIT_PROTOCOL_ERROR', { message: 'The jit server sent an oversized answer' });
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new JitError('JIT_PROTOCOL_ERROR', { message: 'The jit server sent an oversized answer' });
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Validate a session id from the user before it goes into a URL path. */
export function checkSessionId(id: string): string {
  if (!isId(id)) {
    throw new JitError('JIT_USAGE', {
      message: `"${id.slice(0, 40)}" is not a session id (20 lowercase letters and digits)`,
      hint: 'jit sessions lists your sessions and their ids',
    });
  }
  return id;
}

/** Validate a request id from the user before it goes into a URL path. */
export function checkRequestId(id: string): string {
  if (!isId(id)) {
    throw new JitError('JIT_USAGE', {
      message: `"${id.slice(0, 40)}" is not a request id (20 lowercase letters and digits)`,
      hint: 'jit requests lists your requests and those you may review',
    });
  }
  return id;
}

/** Typed access to the control plane's /v1 API. */
export class ApiClient {
  constructor(private readonly deps: ApiClientDeps) {}

  get server(): string {
    return this.deps.server;
  }

  /** GET /v1/whoami */
  whoami(): Promise<WhoAmI> {
    return this.request('GET', '/whoami', WhoAmI);
  }

  /** GET /v1/targets */
  async targets(): Promise<Target[]> {
    return (await this.request('GET', '/targets', z.object({ targets: z.array(Target) }))).targets;
  }

  /** POST /v1/sessions */
  createSession(req: CreateSessionRequest): Promise<CreateSessionResponse> {
    return this.request('POST', '/sessions', CreateSessionResponse, CreateSessionRequest.parse(req));
  }

  /** POST /v1/sessions/:id/heartbeat → the session (410 once it has ended). */
  async heartbeat(id: string): Promise<Session> {
    return (await this.request('POST', `/sessions/${checkSessionId(id)}/heartbeat`, HeartbeatResponse)).session;
  }

  /** DELETE /v1/sessions/:id?reason=… */
  async endSession(id: string, reason: 'exit' | 'killed' = 'exit', timeoutMs?: number): Promise<Session> {
    const path = `/sessions/${checkSessionId(id)}?reason=${reason}`;
    return (await this.request('DELETE', path, z.object({ session: Session }), undefined, timeoutMs)).session;
  }

  /** GET /v1/sessions[?all=1] */
  async sessions(opts: { all?: boolean } = {}): Promise<Session[]> {
    const path = opts.all ? '/sessions?all=1' : '/sessions';
    return (await this.request('GET', path, z.object({ sessions: z.array(Session) }))).sessions;
  }

  /** POST /v1/requests — file an access request. */
  async fileRequest(req: CreateAccessRequest): Promise<AccessRequest> {
    return (await this.request('POST', '/requests', RequestResponse, CreateAccessRequest.parse(req))).request;
  }

  /** GET /v1/requests/:id */
  async getRequest(id: string): Promise<AccessRequest> {
    return (await this.request('GET', `/requests/${checkRequestId(id)}`, RequestResponse)).request;
  }

  /** GET /v1/requests[?mine=1][&to-review=1] (neither: both lists). */
  async requests(opts: { mine?: boolean; toReview?: boolean } = {}): Promise<AccessRequest[]> {
    const params = new URLSearchParams();
    if (opts.mine) params.set('mine', '1');
    if (opts.toReview) params.set('to-review', '1');
    const qs = params.size ? `?${params}` : '';
    return (await this.request('GET', `/requests${qs}`, RequestList)).requests;
  }

  /** POST /v1/requests/:id/approve */
  async approveRequest(id: string, body: ApproveBody = {}): Promise<AccessRequest> {
    return (await this.request('POST', `/requests/${checkRequestId(id)}/approve`, RequestResponse, body)).request;
  }

  /** POST /v1/requests/:id/deny */
  async denyRequest(id: string, reason: string): Promise<AccessRequest> {
    return (await this.request('POST', `/requests/${checkRequestId(id)}/deny`, RequestResponse, { reason })).request;
  }

  /** POST /v1/requests/:id/cancel */
  async cancelRequest(id: string, timeoutMs?: number): Promise<AccessRequest> {
    return (await this.request('POST', `/requests/${checkRequestId(id)}/cancel`, RequestResponse, {}, timeoutMs)).request;
  }

  /** GET /v1/sessions/:id/events — a session's timeline (owner or admin). */
  async sessionEvents(id: string): Promise<{ session: Session; events: AuditEvent[] }> {
    return this.request('GET', `/sessions/${encodeURIComponent(id)}/events`, z.object({ session: Session, events: z.array(AuditEvent) }));
  }

  /** GET /v1/audit?session=&type=&user=&limit= */
  async audit(q: AuditQuery = {}): Promise<AuditEvent[]> {
    const params = new URLSearchParams();
    if (q.session) params.set('session', q.session);
    if (q.type) params.set('type', q.type);
    if (q.user) params.set('user', q.user);
    if (q.limit !== undefined) params.set('limit', String(q.limit));
    const qs = params.size ? `?${params}` : '';
    return (await this.request('GET', `/audit${qs}`, z.object({ events: z.array(AuditEvent) }))).events;
  }

  /** One authenticated call: JSON in, zod-validated JSON out. */
  async request<S extends z.ZodType>(method: string, path: string, schema: S, body?: unknown, timeoutMs?: number): Promise<z.infer<S>> {
    let token = await this.deps.auth.getAccessToken();
    let res = await this.send(method, path, token, body, timeoutMs);
    if (res.status === 401) {
      // The server refused a token we thought valid (revoked, clock skew, key rotation): one refresh.
      await res.body?.cancel();
      token = await this.deps.auth.getAccessToken({ rejected: token });
      res = await this.send(method, path, token, body, timeoutMs);
    }
    const text = await readLimited(res, MAX_RESPONSE_BYTES);
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const err = errorFromBody(json, codeForStatus(res.status));
      if (err.code === 'JIT_INTERNAL' && json === undefined) {
        throw new ApiError(
          res.status,
          new JitError('JIT_INTERNAL', {
            message: `The jit server answered HTTP ${res.status} to ${method} ${API_PREFIX}${path.split('?')[0]}`,
          }),
        );
      }
      throw new ApiError(res.status, err, json);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new JitError('JIT_PROTOCOL_ERROR', {
        message: `The jit server sent an unexpected answer to ${method} ${API_PREFIX}${path.split('?')[0]}`,
        hint: 'the server and this CLI may be of incompatible versions; re-run with --debug',
        detail: parsed.error.message.slice(0, 2000),
      });
    }
    return parsed.data;
  }

  private async send(method: string, path: string, token: string, body: unknown, timeoutMs?: number): Promise<Response> {
    const ac = new AbortController();
    const timer = this.deps.ctx.clock.setTimeout(() => ac.abort(), timeoutMs ?? this.deps.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    try {
      return await this.deps.ctx.fetch(`${this.deps.server}${API_PREFIX}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: ac.signal,
      });
    } catch (err) {
      throw new JitError('JIT_SERVER_UNREACHABLE', {
        message: ac.signal.aborted
          ? `The jit server at ${this.deps.server} did not answer in time`
          : `The jit server at ${this.deps.server} cannot be reached`,
        detail: (err as Error)?.message,
        cause: err,
      });
    } finally {
      // The body may still be streaming; the timer only guards reaching the headers.
      this.deps.ctx.clock.clearTimeout(timer);
    }
  }
}
