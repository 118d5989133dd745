import type { Command } from 'commander';
import type { AccessRequest } from '#shared/contract/http.js';
import { type ApiClient, checkRequestId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';

/** Withdraw your own pending request (POST /v1/requests/:id/cancel). */
export function runCancel(deps: { api: ApiClient }, id: string): Promise<AccessRequest> {
  return deps.api.cancelRequest(checkRequestId(id));
}

export function registerCancel(program: Command, env: CommandEnv): void {
  program
    .command('cancel')
    .description('withdraw an access request you filed that is still pending')
    .argument('<id>', 'the request id (jit requests --mine lists them)')
    .action(async (id: string) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const request = await runCancel(cliServices(ctx, env.globals()), id);
      if (mode.json) printJson(ctx.io.stdout, { request });
      else mode.status(`Cancelled request ${request.id} for ${clean(request.target)}`);
    });
}
