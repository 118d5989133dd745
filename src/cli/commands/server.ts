import path from 'node:path';
import type { Command } from 'commander';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { ServerConfig } from '#shared/config/server.js';
import { JitError } from '#shared/errors/jit-error.js';
import { createLogger } from '#shared/log.js';
import { readEnvText } from '#shared/runtime/env.js';
import type { CommandEnv } from '../main.js';
import { untilSignal } from './serve-loop.js';

interface ServerFlags {
  config?: string;
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  logLevel?: string;
}

/** `jit server`: run the control plane until a signal arrives. */
export function registerServer(program: Command, env: CommandEnv): void {
  program
    .command('server')
    .description('run the control plane (identity, policy, sessions, relay, audit)')
    .option('-c, --config <file>', 'server configuration file (YAML); env JIT_SERVER_CONFIG')
    .option('--listen <host:port>', 'override the listen address')
    .option('--tls-cert <file>', 'TLS certificate (PEM)')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--log-level <level>', 'log level: debug, info, warn, error', 'info')
    .action(async (flags: ServerFlags) => {
      const { ctx } = env;
      const given = flags.config ?? readEnvText(ctx.env, 'JIT_SERVER_CONFIG');
      if (given === undefined) {
        throw new JitError('JIT_USAGE', {
          message: 'jit server needs a configuration file',
          hint: 'jit server --config server.yaml (or set JIT_SERVER_CONFIG)',
        });
      }
      const file = path.resolve(ctx.cwd, given);
      const config = loadYamlConfigFile(file, ServerConfig);
      if (flags.listen) config.listen = flags.listen;
      if (flags.tlsCert || flags.tlsKey)
        config.tls = { cert: path.resolve(ctx.cwd, flags.tlsCert ?? ''), key: path.resolve(ctx.cwd, flags.tlsKey ?? '') };
      const logger = createLogger({ level: flags.logLevel ?? 'info', name: 'jit-server' });
      // Dynamic import: the control plane's dependencies are loaded only by this command.
      const { startServer } = await import('#dev/launch.js');
      const running = await startServer({ config, configDir: path.dirname(file), logger });
      ctx.io.stderr.write(`jit control plane listening on ${running.url}\n`);
      await untilSignal(ctx);
      await running.close();
    });
}
