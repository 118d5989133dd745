/** Bearer-token authentication for the REST API: one verifier for built-in and external IdPs. */
import type { FastifyRequest } from 'fastify';
import { JitError } from '#shared/errors/jit-error.js';
import type { AuditLog } from './audit/audit-log.js';

import type { Principal, TokenVerifier } from './identity/verifier.js';
import { parseBearer } from '#shared/http/bearer.js';

export type { Principal, TokenVerifier };

export interface Admins {
  users: string[];
  groups: string[];
}

export function isAdmin(p: Principal, admins: Admins): boolean {
  return admins.users.includes(p.username) || p.groups.some((g) => admins.groups.includes(g));
}

/** Verify the request's bearer token; failures are audited (without the token) and answered 401. */
export async function authenticate(req: FastifyRequest, verifier: TokenVerifier, audit: AuditLog): Promise<Principal> {
  const token = parseBearer(req.headers.authorization);
  if (!token) throw new JitError('JIT_AUTH_REQUIRED');
  try {
    return await verifier.verify(token);
  } catch (err) {
    const e = err instanceof JitError ? err : new JitError('JIT_AUTH_INVALID_TOKEN', { cause: err });
    await audit.append({
      type: 'auth.failed',
      outcome: 'failure',
      data: { code: e.code, reason: e.detail?.slice(0, 200), remote: req.ip, path: req.routeOptions.url },
    });
    throw e;
  }
}
