/**
 * What user commands share: resolved settings, the token store, Auth and the API client,
 * built from the runtime context and the global flags. Construction does no I/O beyond
 * reading the small config file, so `connect` can reach its listening port fast.
 */
import type { Ctx } from '#shared/runtime/ctx.js';
import { type AccessTokenOptions, Auth } from '../auth/auth.js';
import { CiAuth, ciCredentialFrom } from '../auth/ci-token.js';
import { createTokenStore, type TokenStore } from '../auth/token-store.js';
import { resolveSettings, type Settings } from '../settings/settings.js';
import { ApiClient } from './client.js';

export interface CliGlobals {
  server?: string | undefined;
  profile?: string | undefined;
  json?: boolean | undefined;
  quiet?: boolean | undefined;
  debug?: boolean | undefined;
  /** An OIDC ID token to exchange for a jit token (CI); see auth/ci-token.ts. */
  idTokenFile?: string | undefined;
}

/** Where access tokens come from: the stored login (Auth) or a CI identity (CiAuth). */
export interface AccessTokenSource {
  getAccessToken(opts?: AccessTokenOptions): Promise<string>;
}

export interface CliServices {
  ctx: Ctx;
  settings: Settings;
  store: TokenStore;
  auth: AccessTokenSource;
  api: ApiClient;
}

/** Build the services for one command run. */
export function cliServices(ctx: Ctx, globals: CliGlobals): CliServices {
  const settings = resolveSettings({
    env: ctx.env,
    homedir: ctx.homedir,
    flags: { server: globals.server, profile: globals.profile },
  });
  const store = createTokenStore({
    env: ctx.env,
    configDir: settings.configDir,
    profile: settings.profile,
    server: settings.server,
    warn: (line) => ctx.io.stderr.write(`${line}\n`),
  });
  // A CI identity (JIT_TOKEN, JIT_ID_TOKEN, GitHub Actions, client credentials…) wins over the
  // stored login and never touches the keychain or the disk.
  const ci = ciCredentialFrom(ctx.env, { idTokenFile: globals.idTokenFile });
  const auth: AccessTokenSource = ci
    ? new CiAuth({ ctx, server: settings.server, credential: ci })
    : new Auth({
        ctx,
        store,
        configDir: settings.configDir,
        profile: settings.profile,
        server: settings.server,
      });
  const api = new ApiClient({ ctx, server: settings.server, auth });
  return { ctx, settings, store, auth, api };
}
