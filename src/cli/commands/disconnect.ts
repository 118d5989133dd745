import type { Command } from 'commander';
import type { Session } from '#shared/contract/http.js';
import { type ApiClient, checkSessionId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';

/** End a session (DELETE /v1/sessions/:id?reason=exit): its credential is destroyed. */
export function runDisconnect(deps: { api: ApiClient }, sessionId: string): Promise<Session> {
  return deps.api.endSession(checkSessionId(sessionId), 'exit');
}

export function registerDisconnect(program: Command, env: CommandEnv): void {
  program
    .command('disconnect')
    .description('end a session; its database role or certificate is destroyed')
    .argument('<sessionId>', 'the session id (jit sessions lists them)')
    .action(async (sessionId: string) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const session = await runDisconnect(cliServices(ctx, env.globals()), sessionId);
      if (mode.json) printJson(ctx.io.stdout, { session });
      else mode.status(`Session ${session.id} to ${session.target} ended`);
    });
}
