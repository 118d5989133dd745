/**
 * The built-in OpenID provider (oidc-provider v9) that `jit server` runs at `<publicUrl>/oidc`
 * when no external IdP is configured. It knows one public client (the CLI), speaks only the
 * device authorization grant (RFC 8628) plus refresh, and issues JWT access tokens bound to
 * the control plane's audience. Users come from the server configuration; their passwords are
 * checked with scrypt (password.ts). State lives in the control plane's database (adapter.ts),
 * signing and cookie keys in a 0600 file, so logins survive a restart.
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import type { Kysely } from 'kysely';
import Provider, { errors, type InteractionDetails, type KoaContextLike } from 'oidc-provider';
import { z } from 'zod';
import type { BuiltinUser as BuiltinUserSchema } from '#shared/config/server.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import { createAdapterFactory, migrateOidcStore, type OidcSchema } from './adapter.js';
import { verifyPassword } from './password.js';

export type BuiltinUser = z.infer<typeof BuiltinUserSchema>;

export interface BuiltinIdpAuditEvent {
  type: string;
  actor?: string;
  outcome: 'success' | 'failure';
  data?: Record<string, unknown>;
}

export interface BuiltinIdpOptions {
  /** Exactly `<publicUrl>/oidc`, e.g. http://127.0.0.1:PORT/oidc. */
  issuer: string;
  users: BuiltinUser[];
  /** The control plane's kysely database; the IdP creates its own table in it. */
  // biome-ignore lint/suspicious/noExplicitAny: the control plane's schema type does not (and should not) list the IdP's table
  db: Kysely<any>;
  /** JSON file with the private JWKS and cookie keys; created 0600 if missing, reused after restart. */
  keysFile: string;
  clientId: string;
  /** Resource indicator: access tokens are JWTs with `aud` = audience. */
  audience: string;
  /** Seconds. */
  accessTokenTtl: number;
  /** Seconds: the absolute lifetime of a login (rotation does not extend it). */
  refreshTokenTtl: number;
  logger: Logger;
  audit?: (e: BuiltinIdpAuditEvent) => void;
  /**
   * Trust X-Forwarded-For from one reverse proxy in front of the control plane (device info on
   * the confirm page). Off by default: any client could otherwise claim any address.
   */
  trustProxy?: boolean;
  /** Delay after a failed password, in ms (default 1000). */
  loginFailureDelayMs?: number;
  /**
   * Code entries and password attempts one source may make in a window (default 300 per 10
   * minutes each, room for everyone behind one proxy address): a person needs one or two;
   * guessing another device's code needs billions. Over it the source gets 429 and one
   * aggregated audit event per window.
   */
  attemptsPerSource?: { max: number; windowMs: number };
  /** Clock for the storage adapter's expiry (epoch ms). */
  now?: () => number;
}

export interface BuiltinIdp {
  /** Node handler for every request whose path starts with the issuer's path (/oidc...). */
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const SCOPES = ['openid', 'profile', 'email', 'offline_access'];
const CLIENT_NAME = 'jit CLI';
const MAX_FORM_BYTES = 8 * 1024;

// ---------------------------------------------------------------------------------------------
// Keys

const KeysFile = z.object({
  version: z.literal(1),
  jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }),
  cookieKeys: z.array(z.string().min(32)).min(1),
});
type KeysFile = z.infer<typeof KeysFile>;

async function newKeys(): Promise<KeysFile> {
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    version: 1,
    jwks: { keys: [{ ...jwk, kid: randomBytes(12).toString('base64url'), alg: 'RS256', use: 'sig' }] },
    cookieKeys: [randomBytes(32).toString('base64url')],
  };
}

/** Load the IdP's keys, creating the file (0600, exclusively) on first start. */
async function loadOrCreateKeys(file: string, logger: Logger): Promise<KeysFile> {
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text === undefined) {
    const keys = await newKeys();
    try {
      // 'wx': if two processes race on first start, one wins and the other reads its file.
      writeFileSync(file, `${JSON.stringify(keys)}\n`, { mode: 0o600, flag: 'wx' });
      return keys;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      text = readFileSync(file, 'utf8');
    }
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    logger.warn({ file }, 'identity provider key file was readable by others; restricting it to 0600');
    chmodSync(file, 0o600);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const r = KeysFile.safeParse(parsed);
  if (!r.success) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `The identity provider key file ${file} is not valid`,
      hint: 'restore it from a backup, or delete it to make new keys (everyone must log in again)',
      detail: r.error?.message,
    });
  }
  return r.data;
}

// ---------------------------------------------------------------------------------------------
// HTML

function esc(v: unknown): string {
  return String(v ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const STYLE =
  'body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#222}' +
  'h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]' +
  '{width:100%;padding:.5rem;box-sizing:border-box;font-size:1rem}button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem}' +
  '.error{color:#b00020}.muted{color:#666;font-size:.9rem}code{font-size:1.4rem;letter-spacing:.1rem}dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}dt{color:#666}dd{margin:0;word-break:break-all}';

/** A complete page. `body` must already be escaped. No scripts, no external assets. */
function page(title: string, body: string): string {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="referrer" content="no-referrer"><title>${esc(title)} · jit</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

function loginPage(action: string, clientName: string, error?: string, username?: string): string {
  return page(
    'Sign in',
    `<h1>Sign in to jit</h1><p>${esc(clientName)} asks you to sign in.</p>` +
      (error ? `<p class="error" role="alert">${esc(error)}</p>` : '') +
      `<form method="post" action="${esc(action)}" autocomplete="off">` +
      `<label for="username">Username</label><input type="text" id="username" name="username" value="${esc(username ?? '')}" autocapitalize="none" autofocus required>` +
      `<label for="password">Password</label><input type="password" id="password" name="password" required>` +
      `<button type="submit">Sign in</button></form>`,
  );
}

// ---------------------------------------------------------------------------------------------
// Small HTTP helpers for our own interaction routes (oidc-provider parses its own bodies)

function send(res: ServerResponse, status: number, html: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  res.end(html);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------

/** Start the built-in IdP: keys, storage, provider configuration and the interaction pages. */
export async function createBuiltinIdp(opts: BuiltinIdpOptions): Promise<BuiltinIdp> {
  const { logger, audience, clientId } = opts;
  const issuerUrl = new URL(opts.issuer);
  if (issuerUrl.href.replace(/\/$/, '') !== opts.issuer || issuerUrl.search || issuerUrl.hash || issuerUrl.pathname === '/') {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `The built-in identity provider's issuer must be <publicUrl>/oidc, not ${opts.issuer}`,
      detail: 'issuer must have a path, no query, no fragment, no trailing slash',
    });
  }
  const prefix = issuerUrl.pathname; // e.g. /oidc
  const audit = opts.audit ?? (() => {});
  const failureDelay = opts.loginFailureDelayMs ?? 1000;
  const users = new Map(opts.users.map((u) => [u.username, u]));

  const db = opts.db as unknown as Kysely<OidcSchema>;
  await migrateOidcStore(db);
  const keys = await loadOrCreateKeys(opts.keysFile, logger);

  const accountFor = (username: string) => {
    const u = users.get(username);
    if (!u) return undefined;
    return {
      accountId: u.username,
      async claims() {
        return {
          sub: u.username,
          preferred_username: u.username,
          ...(u.email ? { email: u.email } : {}),
          ...(u.name ? { name: u.name } : {}),
          groups: [...u.groups],
        };
      },
    };
  };

  // A rotated refresh token keeps the remaining lifetime of the one it replaces, so a stolen
  // token cannot be kept alive forever by refreshing; the login ends after refreshTokenTtl.
  function refreshTokenTtl(ctx: { oidc?: { entities?: { RotatedRefreshToken?: { remainingTTL: number } } } } | undefined): number {
    return ctx?.oidc?.entities?.RotatedRefreshToken?.remainingTTL ?? opts.refreshTokenTtl;
  }
  const ttl = {
    AccessToken: opts.accessTokenTtl,
    IdToken: opts.accessTokenTtl,
    DeviceCode: 600,
    Interaction: 600,
    // The browser session only bridges the steps of one login; it is not an SSO session.
    Session: 600,
    Grant: opts.refreshTokenTtl,
    RefreshToken: refreshTokenTtl,
    AuthorizationCode: 60,
    ClientCredentials: opts.accessTokenTtl,
    BackchannelAuthenticationRequest: 600,
    PreAuthorizedCode: 600,
  };

  const provider = new Provider(opts.issuer, {
    adapter: createAdapterFactory(db, opts.now ?? Date.now),
    clients: [
      {
        client_id: clientId,
        client_name: CLIENT_NAME,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
        response_types: [],
        redirect_uris: [],
        scope: SCOPES.join(' '),
      },
    ],
    jwks: keys.jwks,
    cookies: {
      keys: keys.cookieKeys,
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
    },
    findAccount: (_ctx: unknown, sub: string) => accountFor(sub),
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'groups'],
      email: ['email'],
    },
    scopes: SCOPES,
    // Access tokens are bound to the control plane, so userinfo could not serve them anyway:
    // the claims go into the ID token and the access token instead.
    conformIdTokenClaims: false,
    async extraTokenClaims(_ctx: unknown, token: { accountId?: string; kind?: string }) {
      if (!token.accountId) return undefined;
      const u = users.get(token.accountId);
      if (!u) return undefined;
      return {
        preferred_username: u.username,
        ...(u.email ? { email: u.email } : {}),
        groups: [...u.groups],
      };
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: false },
      introspection: { enabled: false },
      registration: { enabled: false },
      revocation: {
        enabled: true,
        // Only the client a token was issued to may revoke it (one client here, but keep it true).
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) =>
          token.clientId === client.clientId,
      },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx: KoaContextLike, form: string) => {
          ctx.type = 'html';
          ctx.body = page(
            'Sign out',
            `<h1>Sign out of jit?</h1>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Sign out</button> <button type="submit" form="op.logoutForm">Stay signed in</button>`,
          );
        },
        postLogoutSuccessSource: async (ctx: KoaContextLike) => {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<h1>Signed out</h1><p>You can close this page.</p>');
        },
      },
      deviceFlow: {
        enabled: true,
        charset: 'base-20',
        mask: '****-****',
        userCodeInputSource: async (ctx: KoaContextLike, form: string, _out: unknown, err?: { name?: string; userCode?: string }) => {
          let msg = '<p>Enter the code shown by <strong>jit login</strong>.</p>';
          if (err && (err.userCode || err.name === 'NoCodeError'))
            msg = '<p class="error" role="alert">That code is not valid or has expired. Check it and try again.</p>';
          else if (err?.name === 'AbortedError') msg = '<p class="error" role="alert">The sign-in was cancelled.</p>';
          else if (err) msg = '<p class="error" role="alert">The request could not be processed. Start again with jit login.</p>';
          ctx.type = 'html';
          ctx.body = page(
            'Enter code',
            `<h1>Sign in to jit</h1>${msg}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`,
          );
        },
        // RFC 8628 §5.4: a phished user code must be recognisable, so show who asks and from where.
        userCodeConfirmSource: async (
          ctx: KoaContextLike,
          form: string,
          client: { clientId: string; clientName?: string },
          deviceInfo: { ip?: string; ua?: string } | undefined,
          userCode: string,
        ) => {
          ctx.type = 'html';
          ctx.body = page(
            'Confirm device',
            `<h1>Confirm this sign-in</h1>` +
              `<p><strong>${esc(client.clientName ?? client.clientId)}</strong> wants to sign in as you.</p>` +
              `<p>Check that your terminal shows this code:</p><p><code>${esc(userCode)}</code></p>` +
              `<dl><dt>Application</dt><dd class="client">${esc(client.clientName ?? client.clientId)} (${esc(client.clientId)})</dd>` +
              `<dt>Requested from IP</dt><dd class="device-ip">${esc(deviceInfo?.ip ?? 'unknown')}</dd>` +
              `<dt>Device</dt><dd class="device-ua">${esc(deviceInfo?.ua ?? 'unknown')}</dd></dl>` +
              `<p class="muted">If you did not run <strong>jit login</strong> yourself just now, or the code or device is not yours, choose Cancel.</p>` +
              `${form}<button type="submit" form="op.deviceConfirmForm">Continue</button> ` +
              `<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Cancel</button>`,
          );
        },
        successSource: async (ctx: KoaContextLike) => {
          ctx.type = 'html';
          ctx.body = page(
            'Signed in',
            '<h1>You are signed in</h1><p class="success">Return to your terminal; you can close this page.</p>',
          );
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string[]) => oneOf ?? audience,
        // Token and refresh requests without `resource` still get the audience-bound JWT.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          if (resource !== audience) throw new errors.InvalidTarget!('unknown resource indicator');
          return {
            scope: SCOPES.join(' '),
            audience,
            accessTokenTTL: opts.accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl,
    clientBasedCORS: () => false,
    interactions: {
      url: (_ctx: unknown, interaction: { uid: string }) => `${prefix}/interaction/${interaction.uid}`,
    },
    renderError: async (ctx: KoaContextLike, out: { error?: string; error_description?: string }) => {
      ctx.type = 'html';
      ctx.body = page(
        'Error',
        `<h1>Sign-in failed</h1><p class="error">${esc(out.error_description ?? out.error ?? 'unexpected error')}</p><p class="muted">Start again with jit login.</p>`,
      );
    },
  });

  // All endpoint URLs derive from the issuer, never from request headers a client controls:
  // the handler pins Host and proto to the issuer's, so the provider may "trust" them.
  provider.proxy = true;
  provider.maxIpsCount = 1;

  // Koa prints unhandled errors to stderr unless someone listens: route them to our logger
  // (name and message only; oidc-provider errors never carry token values in those).
  provider.on('error', (err) => {
    logger.error({ err: { name: (err as Error)?.name, message: (err as Error)?.message } }, 'identity provider request failed');
  });
  provider.on('server_error', (_ctx, err) => {
    logger.error(
      { err: { name: (err as Error)?.name, message: (err as Error)?.message, stack: (err as Error)?.stack } },
      'identity provider error',
    );
  });
  for (const ev of ['grant.error', 'revocation.error', 'device_authorization.error', 'code_verification.error']) {
    provider.on(ev, (_ctx, err) => {
      const e = err as { name?: string; error?: string; error_description?: string };
      logger.debug({ event: ev, error: e?.error ?? e?.name, description: e?.error_description }, 'identity provider refused a request');
    });
  }

  const callback = provider.callback();

  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string, action: 'show' | 'login'): Promise<void> {
    let details: InteractionDetails;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      send(res, 400, page('Sign-in expired', '<h1>This sign-in has expired</h1><p>Start again with jit login.</p>'));
      return;
    }
    // The interaction cookie must belong to the URL's interaction.
    if (details.uid !== uid) {
      send(res, 400, page('Sign-in expired', '<h1>This sign-in has expired</h1><p>Start again with jit login.</p>'));
      return;
    }
    const loginAction = `${prefix}/interaction/${encodeURIComponent(uid)}/login`;
    const requestingClient = String(details.params.client_id ?? '');

    if (details.prompt.name === 'login') {
      if (action === 'show') {
        send(res, 200, loginPage(loginAction, CLIENT_NAME));
        return;
      }
      const form = await readForm(req);
      const username = (form?.get('username') ?? '').trim().toLowerCase().slice(0, 64);
      const password = form?.get('password') ?? '';
      const user = users.get(username);
      // Verify even for unknown users so the response time does not reveal who exists.
      let ok = false;
      if (user) ok = await verifyPassword(password, user.passwordHash);
      else await verifyPassword(password, DUMMY_HASH);
      if (!ok) {
        audit({
          type: 'login.failed',
          actor: username || undefined,
          outcome: 'failure',
          data: { reason: user ? 'bad password' : 'unknown user', remote: remoteOf(req) },
        });
        await sleep(failureDelay);
        send(res, 401, loginPage(loginAction, CLIENT_NAME, 'Wrong username or password.', username));
        return;
      }
      audit({ type: 'login.succeeded', actor: username, outcome: 'success', data: { remote: remoteOf(req) } });
      await provider.interactionFinished(req, res, { login: { accountId: username, remember: false } }, { mergeWithLastSubmission: false });
      return;
    }

    if (details.prompt.name === 'consent' && action === 'show') {
      // First-party client: consent is implied by signing in; anything else is refused.
      const accountId = details.session?.accountId;
      if (requestingClient !== clientId || !accountId) {
        await provider.interactionFinished(
          req,
          res,
          { error: 'access_denied', error_description: 'unknown client' },
          { mergeWithLastSubmission: false },
        );
        return;
      }
      const grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
      const g = grant ?? new provider.Grant({ accountId, clientId });
      const d = details.prompt.details as {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
      if (d.missingOIDCScope?.length) g.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims?.length) g.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        if (indicator === audience) g.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await g.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }

    send(res, 400, page('Sign-in failed', '<h1>This sign-in cannot continue</h1><p>Start again with jit login.</p>'));
  }

  const limits = opts.attemptsPerSource ?? { max: 300, windowMs: 10 * 60_000 };
  const attempts = new SourceWindow(limits.max, limits.windowMs, opts.now ?? Date.now);

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const path = q === -1 ? raw : raw.slice(0, q);
    if (path !== prefix && !path.startsWith(`${prefix}/`)) {
      send(res, 404, page('Not found', '<h1>Not found</h1>'));
      return;
    }
    // code entries and password submissions: counted per source, refused over the limit
    const sub = path.slice(prefix.length);
    if (req.method === 'POST' && (sub === '/device' || /^\/interaction\/[^/]+\/login$/.test(sub))) {
      const what = sub === '/device' ? 'device code entries' : 'password attempts';
      const source = remoteOf(req) ?? 'unknown';
      const hit = attempts.hit(`${what}\0${source}`);
      if (hit.over) {
        if (hit.first) {
          audit({
            type: 'login.rate_limited',
            outcome: 'failure',
            data: { remote: source, what, limit: limits.max, windowSeconds: Math.round(limits.windowMs / 1000) },
          });
        }
        res.setHeader('Retry-After', String(Math.ceil(hit.retryInMs / 1000)));
        send(
          res,
          429,
          page(
            'Too many attempts',
            `<h1>Too many attempts</h1><p>Too many ${esc(what)} from your address. Wait a few minutes, then start again with jit login.</p>`,
          ),
        );
        return;
      }
    }
    // Mounting under a path: oidc-provider routes on req.url without the prefix and rebuilds
    // its URLs from originalUrl (see its README, "Mounting oidc-provider").
    const mreq = req as IncomingMessage & { originalUrl?: string };
    mreq.originalUrl = raw;
    mreq.url = raw.slice(prefix.length) || '/';
    if (mreq.url.startsWith('?')) mreq.url = `/${mreq.url}`;
    req.headers.host = issuerUrl.host;
    req.headers['x-forwarded-host'] = issuerUrl.host;
    req.headers['x-forwarded-proto'] = issuerUrl.protocol.slice(0, -1);
    if (!opts.trustProxy) delete req.headers['x-forwarded-for'];

    const rest = path.slice(prefix.length);
    const m = /^\/interaction\/([A-Za-z0-9_-]{1,64})(\/login)?$/.exec(rest);
    if (m) {
      const action = m[2] ? 'login' : 'show';
      const allowed = action === 'login' ? 'POST' : 'GET';
      if (req.method !== allowed) {
        res.setHeader('Allow', allowed);
        send(res, 405, page('Not allowed', '<h1>Method not allowed</h1>'));
        return;
      }
      interaction(req, res, m[1]!, action).catch((err: unknown) => {
        logger.error({ err: { name: (err as Error)?.name, message: (err as Error)?.message } }, 'identity provider interaction failed');
        if (!res.headersSent) send(res, 500, page('Error', '<h1>Something went wrong</h1><p>Start again with jit login.</p>'));
        else res.destroy();
      });
      return;
    }
    callback(req, res);
  }

  return {
    handle,
    async close() {
      // Nothing to release: the database belongs to the caller, the provider holds no sockets.
    },
  };
}

/**
 * Counts per key in fixed windows; `first` is true for the first refusal of a window (so it is
 * recorded once). Bounded: the oldest keys go first beyond 10 000.
 */
class SourceWindow {
  private readonly counts = new Map<string, { start: number; n: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  hit(key: string): { over: boolean; first: boolean; retryInMs: number } {
    const t = this.now();
    let e = this.counts.get(key);
    if (!e || t - e.start >= this.windowMs) {
      e = { start: t, n: 0 };
      this.counts.delete(key);
      this.counts.set(key, e);
      while (this.counts.size > 10_000) {
        const oldest = this.counts.keys().next().value;
        if (oldest === undefined) break;
        this.counts.delete(oldest);
      }
    }
    e.n++;
    return { over: e.n > this.max, first: e.n === this.max + 1, retryInMs: e.start + this.windowMs - t };
  }
}

function remoteOf(req: IncomingMessage): string | undefined {
  return req.socket.remoteAddress;
}

// A valid hash of a random password, so unknown usernames cost the same scrypt work.
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
