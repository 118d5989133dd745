import type { Command } from 'commander';
import type { Session } from '#shared/contract/http.js';
import type { ApiClient } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { formatSessions } from '../output/format.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';

export interface SessionsOptions {
  /** Everyone's sessions (admins only). */
  all?: boolean;
}

/** Your sessions, or everyone's with `all` (GET /v1/sessions). */
export function runSessions(deps: { api: ApiClient }, opts: SessionsOptions): Promise<Session[]> {
  return deps.api.sessions({ all: Boolean(opts.all) });
}

export function registerSessions(program: Command, env: CommandEnv): void {
  program
    .command('sessions')
    .description('list your sessions')
    .option('--all', "everyone's sessions (administrators)")
    .action(async (opts: SessionsOptions) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const sessions = await runSessions(cliServices(ctx, env.globals()), opts);
      if (mode.json) printJson(ctx.io.stdout, { sessions });
      else ctx.io.stdout.write(formatSessions(sessions, ctx.clock.now(), mode.color));
    });
}
