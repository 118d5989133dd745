/**
 * What user commands share: resolved settings, the token store, Auth and the API client,
 * built from the runtime context and the global flags. Construction does no I/O beyond
 * reading the small config file, so `connect` can reach its listening port fast.
 */
import type { Ctx } from '../../shared/runtime/ctx.js';
import { Auth } from '../auth/auth.js';
import { createTokenStore, type TokenStore } from '../auth/token-store.js';
import { resolveSettings, type Settings } from '../settings/settings.js';
import { ApiClient } from './client.js';

export interface CliGlobals {
  server?: string | undefined;
  profile?: string | undefined;
  json?: boolean | undefined;
  quiet?: boolean | undefined;
  debug?: boolean | undefined;
}

export interface CliServices {
  ctx: Ctx;
  settings: Settings;
  store: TokenStore;
  auth: Auth;
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
  const auth = new Auth({
    ctx,
    store,
    configDir: settings.configDir,
    profile: settings.profile,
    server: settings.server,
  });
  const api = new ApiClient({ ctx, server: settings.server, auth });
  return { ctx, settings, store, auth, api };
}
