/**
 * A CI identity for the CLI, with no keychain and nothing written to disk. Where it comes from,
 * first match wins (docs/ci.md):
 *   1. --id-token-file FILE      an OIDC ID token in a file, exchanged at POST /v1/token
 *   2. JIT_TOKEN                 a jit access token, used as it is
 *   3. JIT_ID_TOKEN              an OIDC ID token, exchanged
 *   4. JIT_ID_TOKEN_FILE         like 1
 *   5. JIT_CLIENT_ID + JIT_CLIENT_SECRET   a service account (client credentials)
 *   6. ACTIONS_ID_TOKEN_REQUEST_URL + ACTIONS_ID_TOKEN_REQUEST_TOKEN   GitHub Actions: ask for an
 *      ID token with audience JIT_ID_TOKEN_AUDIENCE or the server's audience, then exchange it
 * Explicit JIT_* settings beat the ambient GitHub Actions variables; none of them → the stored login.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Discovery } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { readEnv, readEnvText } from '#shared/runtime/env.js';
import { clean } from '../output/style.js';
import type { AccessTokenOptions } from './auth.js';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';

const REFRESH_MARGIN_MS = 60_000;
const TIMEOUT_MS = 15_000;
const MAX_TOKEN_CHARS = 16 * 1024;

export type CiCredential =
  | { kind: 'jit-token'; from: 'JIT_TOKEN'; token: string }
  | { kind: 'id-token'; from: 'JIT_ID_TOKEN'; token: string }
  | { kind: 'id-token-file'; from: '--id-token-file' | 'JIT_ID_TOKEN_FILE'; file: string }
  | { kind: 'client-credentials'; from: 'JIT_CLIENT_ID'; clientId: string; clientSecret: string }
  | { kind: 'github-actions'; from: 'ACTIONS_ID_TOKEN_REQUEST_URL'; requestUrl: string; requestToken: string; audience?: string };

/** The CI credential the environment (and --id-token-file) names, or undefined for the stored login. */
export function ciCredentialFrom(
  env: Readonly<Record<string, string | undefined>>,
  flags: { idTokenFile?: string | undefined } = {},
): CiCredential | undefined {
  const v = (name: string) => {
    const s = env[name]?.trim();
    return s ? s : undefined;
  };
  if (flags.idTokenFile) return { kind: 'id-token-file', from: '--id-token-file', file: flags.idTokenFile };
  const jitToken = readEnvText(env, 'JIT_TOKEN');
  if (jitToken) return { kind: 'jit-token', from: 'JIT_TOKEN', token: jitToken };
  const idToken = readEnvText(env, 'JIT_ID_TOKEN');
  if (idToken) return { kind: 'id-token', from: 'JIT_ID_TOKEN', token: idToken };
  const idFile = readEnvText(env, 'JIT_ID_TOKEN_FILE');
  if (idFile) return { kind: 'id-token-file', from: 'JIT_ID_TOKEN_FILE', file: idFile };
  const clientId = readEnvText(env, 'JIT_CLIENT_ID');
  const clientSecret = readEnv(env, 'JIT_CLIENT_SECRET');
  if (clientId || clientSecret) {
    if (!clientId || !clientSecret) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: 'JIT_CLIENT_ID and JIT_CLIENT_SECRET go together; only one is set',
        hint: 'set both for a service account, or neither',
      });
    }
    return { kind: 'client-credentials', from: 'JIT_CLIENT_ID', clientId, clientSecret };
  }
  const ghUrl = v('ACTIONS_ID_TOKEN_REQUEST_URL');
  const ghToken = v('ACTIONS_ID_TOKEN_REQUEST_TOKEN');
  if (ghUrl && ghToken) {
    const audience = readEnvText(env, 'JIT_ID_TOKEN_AUDIENCE');
    return {
      kind: 'github-actions',
      from: 'ACTIONS_ID_TOKEN_REQUEST_URL',
      requestUrl: ghUrl,
      requestToken: ghToken,
      ...(audience ? { audience } : {}),
    };
  }
  return undefined;
}

/** Human name of where a credential came from, for messages. */
export function describeCiCredential(c: CiCredential): string {
  switch (c.kind) {
    case 'jit-token':
      return 'JIT_TOKEN';
    case 'id-token':
      return 'JIT_ID_TOKEN';
    case 'id-token-file':
      return `${c.from} ${c.file}`;
    case 'client-credentials':
      return `service account ${c.clientId} (JIT_CLIENT_ID)`;
    case 'github-actions':
      return 'the GitHub Actions ID token';
  }
}

const TokenAnswer = z.object({ access_token: z.string().min(1).max(MAX_TOKEN_CHARS), expires_in: z.number().positive().optional() });
const OAuthError = z.object({ error: z.string().max(100), error_description: z.string().max(500).optional() });

export interface CiAuthDeps {
  ctx: Pick<Ctx, 'fetch' | 'clock'>;
  server: string;
  credential: CiCredential;
}

/** Access tokens for a CI identity, held in memory only; re-exchanged shortly before expiry. */
export class CiAuth {
  private cached: { token: string; expiresAt: number } | undefined;
  private inflight: Promise<string> | undefined;

  constructor(private readonly deps: CiAuthDeps) {}

  get credential(): CiCredential {
    return this.deps.credential;
  }

  /** A jit access token for this CI identity (the same contract as Auth.getAccessToken). */
  async getAccessToken(opts: AccessTokenOptions = {}): Promise<string> {
    const c = this.deps.credential;
    if (c.kind === 'jit-token') {
      if (opts.rejected === c.token) {
        throw new JitError('JIT_AUTH_MACHINE_REFUSED', {
          message: 'The jit server refused JIT_TOKEN (expired, or not one of its tokens)',
          hint: 'JIT_TOKEN must be a current jit token; in CI prefer JIT_ID_TOKEN or the GitHub Actions ID token (docs/ci.md)',
        });
      }
      return c.token;
    }
    const cur = this.cached;
    const stale = !cur || cur.expiresAt - this.deps.ctx.clock.now() < REFRESH_MARGIN_MS || opts.rejected === cur.token;
    if (!stale) return cur.token;
    this.inflight ??= this.obtain().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async obtain(): Promise<string> {
    const c = this.deps.credential;
    const now = this.deps.ctx.clock.now();
    let answer: z.infer<typeof TokenAnswer>;
    if (c.kind === 'client-credentials') {
      const basic = Buffer.from(`${encodeURIComponent(c.clientId)}:${encodeURIComponent(c.clientSecret)}`).toString('base64');
      answer = await this.tokenRequest(new URLSearchParams({ grant_type: 'client_credentials' }), { authorization: `Basic ${basic}` });
    } else if (c.kind !== 'jit-token') {
      const idToken = await this.idToken(c);
      answer = await this.tokenRequest(
        new URLSearchParams({ grant_type: TOKEN_EXCHANGE_GRANT, subject_token: idToken, subject_token_type: ID_TOKEN_TYPE }),
        {},
      );
    } else {
      return c.token;
    }
    this.cached = { token: answer.access_token, expiresAt: now + (answer.expires_in ?? 300) * 1000 };
    return answer.access_token;
  }

  private async idToken(c: Exclude<CiCredential, { kind: 'jit-token' | 'client-credentials' }>): Promise<string> {
    if (c.kind === 'id-token') return c.token;
    if (c.kind === 'id-token-file') {
      let text: string;
      try {
        // Re-read on every exchange: platforms (Kubernetes projected tokens) rotate the file.
        text = readFileSync(c.file, 'utf8');
      } catch (err) {
        throw new JitError('JIT_CONFIG_INVALID', {
          message: `${c.from}: ${c.file} cannot be read`,
          hint: "point it at a file holding the CI platform's ID token",
          cause: err,
        });
      }
      const token = text.trim();
      if (!token || token.length > MAX_TOKEN_CHARS) {
        throw new JitError('JIT_CONFIG_INVALID', { message: `${c.from}: ${c.file} holds no ID token` });
      }
      return token;
    }
    // GitHub Actions: GET <request URL>&audience=<aud> with the request token as bearer → { value }.
    const audience = c.audience ?? (await this.serverAudience());
    let url: URL;
    try {
      url = new URL(c.requestUrl);
    } catch {
      throw new JitError('JIT_CONFIG_INVALID', { message: 'ACTIONS_ID_TOKEN_REQUEST_URL is not a URL' });
    }
    url.searchParams.set('audience', audience);
    const res = await this.fetch(
      url.toString(),
      { headers: { authorization: `Bearer ${c.requestToken}`, accept: 'application/json' } },
      'GitHub Actions',
    );
    const body = z.object({ value: z.string().min(1).max(MAX_TOKEN_CHARS) }).safeParse(await res.json().catch(() => undefined));
    if (!res.ok || !body.success) {
      throw new JitError('JIT_AUTH_MACHINE_REFUSED', {
        message: `GitHub Actions did not hand out an ID token (HTTP ${res.status})`,
        hint: 'give the job `permissions: id-token: write` (docs/ci.md)',
      });
    }
    return body.data.value;
  }

  /** The audience CI ID tokens should carry: the server's own (GET /.well-known/jit). */
  private async serverAudience(): Promise<string> {
    const res = await this.fetch(`${this.deps.server}/.well-known/jit`, { headers: { accept: 'application/json' } }, 'the jit server');
    const d = Discovery.safeParse(await res.json().catch(() => undefined));
    if (!res.ok || !d.success) {
      throw new JitError('JIT_PROTOCOL_ERROR', {
        message: `${this.deps.server} did not describe itself (/.well-known/jit)`,
        hint: 'check --server / JIT_SERVER',
      });
    }
    return d.data.audience;
  }

  private async tokenRequest(form: URLSearchParams, headers: Record<string, string>): Promise<z.infer<typeof TokenAnswer>> {
    const res = await this.fetch(
      `${this.deps.server}/v1/token`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers },
        body: form.toString(),
      },
      'the jit server',
    );
    const json = await res.json().catch(() => undefined);
    if (res.ok) {
      const ok = TokenAnswer.safeParse(json);
      if (ok.success) return ok.data;
      throw new JitError('JIT_PROTOCOL_ERROR', { message: 'The jit server sent an unexpected answer to POST /v1/token' });
    }
    const e = OAuthError.safeParse(json);
    const why = e.success ? clean(e.data.error_description ?? e.data.error) : `HTTP ${res.status}`;
    throw new JitError('JIT_AUTH_MACHINE_REFUSED', {
      message: `The jit server refused ${describeCiCredential(this.deps.credential)}: ${why}`,
    });
  }

  private async fetch(url: string, init: RequestInit, who: string): Promise<Response> {
    const ac = new AbortController();
    const timer = this.deps.ctx.clock.setTimeout(() => ac.abort(), TIMEOUT_MS);
    try {
      return await this.deps.ctx.fetch(url, { ...init, redirect: 'error', signal: ac.signal });
    } catch (err) {
      throw new JitError('JIT_SERVER_UNREACHABLE', {
        message: ac.signal.aborted ? `${who} did not answer in time` : `${who} cannot be reached`,
        detail: (err as Error)?.message,
        cause: err,
      });
    } finally {
      this.deps.ctx.clock.clearTimeout(timer);
    }
  }
}
