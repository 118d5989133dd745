import type { Command } from 'commander';
import type { Target } from '#shared/contract/http.js';
import type { ApiClient } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { formatTargets } from '../output/format.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';

/** The targets the caller may use (GET /v1/targets). */
export function runTargets(deps: { api: ApiClient }): Promise<Target[]> {
  return deps.api.targets();
}

export function registerTargets(program: Command, env: CommandEnv): void {
  program
    .command('targets')
    .description('list the databases and hosts you may connect to')
    .action(async () => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const targets = await runTargets(cliServices(ctx, env.globals()));
      if (mode.json) printJson(ctx.io.stdout, { targets });
      else ctx.io.stdout.write(formatTargets(targets, mode.color));
    });
}
