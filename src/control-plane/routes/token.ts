/**
 * POST /v1/token: machine identity for CI. Two grants, one answer (a short-lived jit access token):
 * RFC 8693 token exchange of a trusted workload's ID token, and OAuth client credentials (HTTP
 * Basic, or client_id/client_secret in the body) for service accounts. Bodies are form-encoded
 * (as OAuth clients send them) or JSON; errors follow RFC 6749 §5.2 so OAuth tooling understands
 * them. Every decision is audited, never with the token or secret.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import { type MachineIdentity, MachineRefused, TOKEN_EXCHANGE_GRANT } from '../identity/workload.js';

export interface TokenRouteOptions {
  machines: MachineIdentity;
  audit: AuditLog;
}

const CLIENT_CREDENTIALS = 'client_credentials';
const MAX_FIELD = 16 * 1024;

const TokenBody = z.object({
  grant_type: z.string().max(200),
  subject_token: z.string().max(MAX_FIELD).optional(),
  subject_token_type: z.string().max(200).optional(),
  requested_token_type: z.string().max(200).optional(),
  audience: z.string().max(1000).optional(),
  resource: z.string().max(1000).optional(),
  scope: z.string().max(1000).optional(),
  client_id: z.string().max(200).optional(),
  client_secret: z.string().max(1024).optional(),
});

type OAuthError =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unsupported_grant_type'
  | 'unsupported_token_type'
  | 'invalid_target';

function oauthError(reply: FastifyReply, status: number, error: OAuthError, description: string) {
  reply.header('cache-control', 'no-store');
  if (error === 'invalid_client') reply.header('www-authenticate', 'Basic realm="jit"');
  return reply.status(status).send({ error, error_description: description });
}

/** RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64. */
function basicCredentials(req: FastifyRequest): { id: string; secret: string } | undefined {
  const h = req.headers.authorization;
  if (!h || h.length > 4096) return undefined;
  const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(h);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  try {
    const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: dec(decoded.slice(0, i)), secret: dec(decoded.slice(i + 1)) };
  } catch {
    return undefined;
  }
}

export const tokenRoutes: FastifyPluginAsync<TokenRouteOptions> = async (app, opts) => {
  const { machines, audit } = opts;
  // Encapsulated: only this plugin's route parses forms.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => {
    try {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  app.post('/v1/token', async (req, reply) => {
    const parsed = TokenBody.safeParse(req.body ?? {});
    if (!parsed.success) return oauthError(reply, 400, 'invalid_request', 'the request is missing grant_type or has an invalid field');
    const body = parsed.data;
    if (!machines.enabled) {
      return oauthError(reply, 400, 'unsupported_grant_type', 'this jit server trusts no workloads or service accounts');
    }
    const remote = req.ip;
    try {
      if (body.grant_type === TOKEN_EXCHANGE_GRANT) {
        if (!body.subject_token || !body.subject_token_type) {
          return oauthError(reply, 400, 'invalid_request', 'token exchange needs subject_token and subject_token_type');
        }
        const r = await machines.exchange(body.subject_token, body.subject_token_type);
        // Audit before the token leaves: a crash between the two must not lose the record.
        await audit.append({
          type: 'workload.exchanged',
          actor: `workload:${r.workload.name}`,
          outcome: 'success',
          data: {
            method: 'token-exchange',
            workload: r.workload.name,
            issuer: r.workload.issuer,
            subject: r.subject,
            remote,
            expiresIn: r.token.expires_in,
          },
        });
        reply.header('cache-control', 'no-store');
        return r.token;
      }
      if (body.grant_type === CLIENT_CREDENTIALS) {
        const basic = basicCredentials(req);
        const id = basic?.id ?? body.client_id;
        const secret = basic?.secret ?? body.client_secret;
        if (!id || !secret) {
          throw new MachineRefused('client credentials need a client id and secret (HTTP Basic)', 'invalid_client');
        }
        const r = await machines.clientCredentials(id, secret);
        await audit.append({
          type: 'workload.exchanged',
          actor: `service:${r.account.name}`,
          outcome: 'success',
          data: { method: 'client-credentials', serviceAccount: r.account.name, remote, expiresIn: r.token.expires_in },
        });
        reply.header('cache-control', 'no-store');
        return r.token;
      }
      return oauthError(reply, 400, 'unsupported_grant_type', 'grant_type must be token exchange or client_credentials');
    } catch (err) {
      if (!(err instanceof MachineRefused)) throw err;
      await audit.append({
        type: 'workload.refused',
        outcome: 'failure',
        data: {
          method: body.grant_type === CLIENT_CREDENTIALS ? 'client-credentials' : 'token-exchange',
          reason: err.reason,
          ...err.auditData,
          remote,
        },
      });
      return oauthError(reply, err.oauthError === 'invalid_client' ? 401 : 400, err.oauthError, err.reason);
    }
  });
};
