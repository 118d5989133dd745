import type { Command } from 'commander';
import type { AccessRequest } from '#shared/contract/http.js';
import { type ApiClient, checkRequestId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import { formatRequest, formatRequests } from '../approvals/format.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';

export interface RequestsOptions {
  /** Requests I filed. */
  mine?: boolean;
  /** Pending requests I may approve. */
  toReview?: boolean;
}

/** List access requests (GET /v1/requests): mine and/or to review; neither flag = both. */
export function runRequests(deps: { api: ApiClient }, opts: RequestsOptions): Promise<AccessRequest[]> {
  return deps.api.requests({ mine: Boolean(opts.mine), toReview: Boolean(opts.toReview) });
}

/** One request (GET /v1/requests/:id): its requester, its approvers and admins may see it. */
export function runShowRequest(deps: { api: ApiClient }, id: string): Promise<AccessRequest> {
  return deps.api.getRequest(checkRequestId(id));
}

export function registerRequests(program: Command, env: CommandEnv): void {
  program
    .command('requests')
    .description('list access requests you filed or may review, or show one')
    .argument('[id]', 'show this request in detail (statement text and parameters included)')
    .option('--mine', 'only requests you filed')
    .option('--to-review', 'only pending requests you may approve or deny')
    .action(async (id: string | undefined, opts: RequestsOptions) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const services = cliServices(ctx, env.globals());
      if (id) {
        const request = await runShowRequest(services, id);
        if (mode.json) printJson(ctx.io.stdout, { request });
        else ctx.io.stdout.write(formatRequest(request, ctx.clock.now()));
        return;
      }
      const requests = await runRequests(services, opts);
      if (mode.json) printJson(ctx.io.stdout, { requests });
      else ctx.io.stdout.write(formatRequests(requests, mode.color));
    });
}
