import type { Command } from 'commander';
import type { WhoAmI } from '#shared/contract/http.js';
import type { ApiClient } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { formatWhoami } from '../output/format.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';

/** Who the control plane says we are (GET /v1/whoami). */
export function runWhoami(deps: { api: ApiClient }): Promise<WhoAmI> {
  return deps.api.whoami();
}

export function registerWhoami(program: Command, env: CommandEnv): void {
  program
    .command('whoami')
    .description('show who you are logged in as, your groups and when the token expires')
    .action(async () => {
      const { ctx } = env;
      const services = cliServices(ctx, env.globals());
      const mode = outputMode(ctx, env.globals());
      const me = await runWhoami(services);
      if (mode.json) printJson(ctx.io.stdout, me);
      else ctx.io.stdout.write(formatWhoami(me, services.settings.server, ctx.clock.now()));
    });
}
