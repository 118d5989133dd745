import type { Command } from 'commander';
import type { AccessRequest } from '#shared/contract/http.js';
import { type ApiClient, checkRequestId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';

/** Deny a request (POST /v1/requests/:id/deny); the reason reaches the requester and the audit log. */
export function runDeny(deps: { api: ApiClient }, id: string, reason: string): Promise<AccessRequest> {
  return deps.api.denyRequest(checkRequestId(id), reason);
}

export function registerDeny(program: Command, env: CommandEnv): void {
  program
    .command('deny')
    .description('deny an access request or a held statement (final)')
    .argument('<id>', 'the request id (jit requests --to-review lists them)')
    .requiredOption('-r, --reason <text>', 'why (shown to the requester, kept in the audit log)')
    .action(async (id: string, flags: { reason: string }) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const request = await runDeny(cliServices(ctx, env.globals()), id, flags.reason);
      if (mode.json) printJson(ctx.io.stdout, { request });
      else mode.status(`Denied request ${request.id} (${clean(request.requester.username)} → ${clean(request.target)})`);
    });
}
