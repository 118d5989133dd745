import type { Command } from 'commander';
import type { Discovery } from '#shared/contract/http.js';
import { JitError, isJitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { cliServices } from '../api/services.js';
import { fetchDiscovery, openOidc, toStoredTokens } from '../auth/oidc.js';
import type { TokenStore } from '../auth/token-store.js';
import { type CommandEnv, ExitWith } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import { rememberServer, type Settings } from '../settings/settings.js';

/** What the user must do in the browser. */
export interface DevicePrompt {
  server: string;
  /** The URL to open: `verification_uri_complete` when given (the code is pre-filled). */
  url: string;
  /** The plain verification URL, for typing the code by hand. */
  verificationUri: string;
  userCode: string;
  /** When the device code expires (ms since the epoch). */
  expiresAt: number;
}

export interface LoginResult {
  server: string;
  username: string;
  subject: string;
  issuer: string;
  tokenStore: 'keychain' | 'file';
}

export interface LoginDeps {
  ctx: Pick<Ctx, 'fetch' | 'clock'>;
  settings: Settings;
  store: TokenStore;
}

export interface LoginOptions {
  /** Called once the device code exists: show the URL and code. */
  onPrompt(prompt: DevicePrompt): void | Promise<void>;
  /** Aborts polling (Ctrl-C). */
  signal?: AbortSignal;
}

function checkBrowserUrl(raw: unknown): string {
  const url = typeof raw === 'string' ? URL.parse(raw) : null;
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new JitError('JIT_AUTH_LOGIN_FAILED', { message: 'The identity provider sent an unusable verification URL' });
  }
  return url.href;
}

/** Map openid-client's polling failures to what the user did (or did not do). */
function loginFailure(err: unknown, signal: AbortSignal | undefined): JitError {
  if (isJitError(err)) return err;
  const code = (err as { error?: unknown })?.error;
  if (code === 'access_denied') {
    return new JitError('JIT_AUTH_LOGIN_FAILED', { message: 'The login was denied in the browser', cause: err });
  }
  if (code === 'expired_token' || (!signal?.aborted && (err as Error)?.name === 'AbortError') || (err as Error)?.name === 'TimeoutError') {
    return new JitError('JIT_AUTH_LOGIN_FAILED', {
      message: 'The login code expired before the browser step was finished',
      cause: err,
    });
  }
  return new JitError('JIT_AUTH_LOGIN_FAILED', { detail: (err as Error)?.message, cause: err });
}

/**
 * Device authorization grant against the server's IdP: discover, show the code, poll until the
 * user finishes or the code expires, store the tokens. Returns who we are now.
 */
export async function runLogin(deps: LoginDeps, opts: LoginOptions): Promise<LoginResult> {
  const { ctx, settings } = deps;
  const discovery: Discovery = await fetchDiscovery(ctx, settings.server);
  const oidc = await openOidc(ctx, discovery.issuer, discovery.clientId);
  let device: Awaited<ReturnType<typeof oidc.lib.initiateDeviceAuthorization>>;
  try {
    device = await oidc.lib.initiateDeviceAuthorization(oidc.config, {
      scope: discovery.scopes.join(' '),
      resource: discovery.audience,
    });
  } catch (err) {
    throw new JitError('JIT_AUTH_LOGIN_FAILED', {
      message: 'The identity provider refused to start a device login',
      detail: (err as { error?: string })?.error ?? (err as Error)?.message,
      cause: err,
    });
  }
  const verificationUri = checkBrowserUrl(device.verification_uri);
  const url = device.verification_uri_complete ? checkBrowserUrl(device.verification_uri_complete) : verificationUri;
  const expiresAt = ctx.clock.now() + device.expires_in * 1000;
  await opts.onPrompt({ server: settings.server, url, verificationUri, userCode: clean(device.user_code), expiresAt });

  // openid-client stops polling at expires_in by itself; our signal adds Ctrl-C.
  let response: Awaited<ReturnType<typeof oidc.lib.pollDeviceAuthorizationGrant>>;
  try {
    response = await oidc.lib.pollDeviceAuthorizationGrant(
      oidc.config,
      device,
      { resource: discovery.audience },
      opts.signal ? { signal: opts.signal } : undefined,
    );
  } catch (err) {
    throw loginFailure(err, opts.signal);
  }
  const tokens = toStoredTokens(response, {
    issuer: discovery.issuer,
    clientId: discovery.clientId,
    audience: discovery.audience,
    now: ctx.clock.now(),
  });
  await deps.store.set(tokens);
  if (settings.serverSource === 'flag') rememberServer(settings, settings.server);
  return {
    server: settings.server,
    username: tokens.claims?.username ?? tokens.claims?.sub ?? 'unknown',
    subject: tokens.claims?.sub ?? '',
    issuer: discovery.issuer,
    tokenStore: deps.store.backend,
  };
}

/** Plain-text prompt for non-TTY use: the complete URL and the code on stderr. */
export function plainPrompt(p: DevicePrompt, now: number): string {
  const minutes = Math.max(1, Math.round((p.expiresAt - now) / 60_000));
  return [
    `To log in to ${p.server}, open this URL in a browser:`,
    `  ${p.url}`,
    `and check that it shows the code ${p.userCode} (or enter it at ${p.verificationUri}).`,
    `Waiting for you to finish in the browser; the code expires in ${minutes} min.`,
  ].join('\n');
}

export function registerLogin(program: Command, env: CommandEnv): void {
  program
    .command('login')
    .description('log in with your identity provider (device code flow); --server URL is remembered for the profile')
    .action(async () => {
      const { ctx } = env;
      const globals = env.globals();
      const mode = outputMode(ctx, globals);
      const services = cliServices(ctx, globals);
      const abort = new AbortController();
      const offSignal = ctx.onSignal(() => abort.abort());
      let view: import('../ui/mount.js').MountedView | undefined;
      let ticker: NodeJS.Timeout | undefined;
      let finish: (() => void) | undefined;
      try {
        const result = await runLogin(services, {
          signal: abort.signal,
          onPrompt: async (p) => {
            if (!mode.interactive) {
              // Always shown, even with --quiet: without it the login cannot be finished.
              ctx.io.stderr.write(`${plainPrompt(p, ctx.clock.now())}\n`);
              return;
            }
            const { mountView, loadViews } = await import('../ui/mount.js');
            const { createElement, LoginView } = await loadViews();
            const el = (finished = false) =>
              createElement(LoginView, {
                server: p.server,
                url: p.url,
                userCode: p.userCode,
                secondsLeft: Math.max(0, (p.expiresAt - ctx.clock.now()) / 1000),
                finished,
                color: mode.statusColor,
              });
            view = await mountView(ctx, el());
            ticker = ctx.clock.setInterval(() => view?.update(el()), 1000);
            finish = () => view?.update(el(true));
          },
        });
        ctx.clock.clearInterval(ticker);
        finish?.();
        await view?.done();
        if (mode.json) printJson(ctx.io.stdout, result);
        else mode.status(`Logged in to ${result.server} as ${clean(result.username)}`);
      } catch (err) {
        ctx.clock.clearInterval(ticker);
        await view?.done();
        if (abort.signal.aborted) throw new ExitWith(130);
        throw err;
      } finally {
        offSignal();
      }
    });
}
