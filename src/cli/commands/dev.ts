import path from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '#shared/duration.js';
import { type CommandEnv, ExitWith } from '../main.js';

interface DevFlags {
  dir: string;
  port: number;
  pgPort: number;
  heartbeatTimeout: number;
  reset?: boolean;
}

function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('a port number from 0 to 65535 (0: any free port)');
  return n;
}

function parseTimeout(value: string): number {
  let seconds: number;
  try {
    seconds = parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  if (seconds < 1 || seconds > 3600) throw new InvalidArgumentError('between 1s and 1h');
  return seconds;
}

/** `jit dev`: control plane, built-in IdP, agent and a demo PostgreSQL on this machine. */
export function registerDev(program: Command, env: CommandEnv): void {
  program
    .command('dev')
    .description('run everything on this machine: control plane, built-in IdP, agent and a demo PostgreSQL')
    .option('--dir <path>', 'folder for state, passwords and PostgreSQL data', '.jit-dev')
    .option('--port <n>', 'control plane port on 127.0.0.1 (0: any free port)', parsePort, 8443)
    .option('--pg-port <n>', 'demo PostgreSQL port (0: the last one if free, else any free one)', parsePort, 0)
    .option('--heartbeat-timeout <time>', 'end a session whose jit connect stops heartbeating after this', parseTimeout, 30)
    .option('--reset', 'delete the state folder first (new passwords, fresh demo data)')
    .action(async (flags: DevFlags) => {
      const { ctx } = env;
      const quiet = Boolean(env.globals().quiet);
      // Dynamic import: PostgreSQL, the control plane and the agent load only for this command.
      const { runDev } = await import('#dev/run.js');
      const code = await runDev(
        {
          ctx,
          status: (line) => {
            if (!quiet) ctx.io.stderr.write(`${line}\n`);
          },
          // The one sanctioned hard exit, as in serve-loop: the user asked twice.
          forceExit: (c) => process.exit(c),
        },
        {
          dir: path.resolve(ctx.cwd, flags.dir),
          port: flags.port,
          pgPort: flags.pgPort,
          heartbeatTimeoutSeconds: flags.heartbeatTimeout,
          reset: Boolean(flags.reset),
        },
      );
      if (code !== 0) throw new ExitWith(code);
    });
}
