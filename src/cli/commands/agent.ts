import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { AgentConfig } from '#shared/config/agent.js';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { JitError } from '#shared/errors/jit-error.js';
import { createLogger } from '#shared/log.js';
import type { CommandEnv } from '../main.js';
import { untilSignal } from './serve-loop.js';
import { readEnvText } from '#shared/runtime/env.js';

/** `jit agent`: run an agent next to the targets; it dials out to the control plane. */
export function registerAgent(program: Command, env: CommandEnv): void {
  program
    .command('agent')
    .description('run an agent next to the targets (dials out to the control plane)')
    .requiredOption('-c, --config <file>', 'agent configuration file (YAML)')
    .option('--log-level <level>', 'log level: debug, info, warn, error', 'info')
    .action(async (flags: { config: string; logLevel?: string }) => {
      const { ctx } = env;
      const file = path.resolve(ctx.cwd, flags.config);
      const config = loadYamlConfigFile(file, AgentConfig);
      const token =
        readEnvText(ctx.env, 'JIT_AGENT_TOKEN') ??
        (config.tokenFile ? readFileSync(path.resolve(path.dirname(file), config.tokenFile), 'utf8').trim() : config.token);
      if (!token) {
        throw new JitError('JIT_CONFIG_INVALID', {
          message: `${file}: no agent token`,
          hint: 'set JIT_AGENT_TOKEN, token or tokenFile (make one with jit agent-token)',
        });
      }
      if (config.caFile) config.caFile = path.resolve(path.dirname(file), config.caFile);
      const logger = createLogger({ level: flags.logLevel ?? 'info', name: 'jit-agent' });
      const { startAgent } = await import('#dev/launch.js');
      const running = await startAgent({ config, token, logger });
      ctx.io.stderr.write(`jit agent ${config.name} started; control plane ${config.controlPlane}\n`);
      await untilSignal(ctx);
      await running.close();
    });
}
