import type { Command } from 'commander';
import { revokeRefreshToken } from '../auth/oidc.js';
import type { TokenStore } from '../auth/token-store.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';

export interface LogoutResult {
  server: string;
  /** Whether there were tokens to remove. */
  loggedOut: boolean;
  /** Whether the IdP confirmed revoking the refresh token. */
  revoked: boolean;
}

/** Revoke the refresh token at the IdP (best effort, at most a few seconds), then forget the tokens. */
export async function runLogout(deps: { ctx: Pick<Ctx, 'fetch'>; store: TokenStore; server: string }): Promise<LogoutResult> {
  const tokens = await deps.store.get();
  if (!tokens) return { server: deps.server, loggedOut: false, revoked: false };
  // Local logout must not depend on the IdP being reachable: revocation failures are reported, not thrown.
  const revoked = await revokeRefreshToken(deps.ctx, tokens, 5);
  await deps.store.delete();
  return { server: deps.server, loggedOut: true, revoked };
}

export function registerLogout(program: Command, env: CommandEnv): void {
  program
    .command('logout')
    .description('revoke your login at the identity provider and remove the stored tokens')
    .action(async () => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const s = cliServices(ctx, env.globals());
      const result = await runLogout({ ctx, store: s.store, server: s.settings.server });
      if (mode.json) printJson(ctx.io.stdout, result);
      else if (!result.loggedOut) mode.status(`Not logged in to ${result.server}`);
      else
        mode.status(
          `Logged out of ${result.server}${result.revoked ? '' : ' (the identity provider could not be told; the tokens were removed here)'}`,
        );
    });
}
