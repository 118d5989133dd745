import { type Command, InvalidArgumentError } from 'commander';
import { cliServices } from '../api/services.js';
import { createApprovalPresenter } from '../approvals/present.js';
import { ENV_PREFIX } from '../exec/environment.js';
import { runExec } from '../exec/run-exec.js';
import { type CommandEnv, ExitWith } from '../main.js';
import { outputMode } from '../output/mode.js';
import { sessionDurationFlag as parseDurationFlag, textFlag as parseText } from '../flags.js';

function parsePrefix(value: string): string {
  if (!ENV_PREFIX.test(value)) throw new InvalidArgumentError('letters, digits and _ (not starting with a digit)');
  return value;
}

interface ExecFlags {
  reason?: string;
  duration?: number;
  database?: string;
  request?: string;
  envPrefix?: string;
  login?: string;
  secretInEnv?: boolean;
}

export function registerExec(program: Command, env: CommandEnv): void {
  program
    .command('exec')
    .description('run a command with a session to a target in its environment; the session ends when it exits')
    .argument('<target>', 'target name (jit targets lists them)')
    .argument('<command...>', 'the command and its arguments (put -- before it)')
    .option('-r, --reason <text>', 'why you need access (recorded in the audit log)', parseText(1000))
    .option('-d, --duration <time>', 'session length, e.g. 30m (policy sets the maximum)', parseDurationFlag)
    .option('--database <name>', 'PostgreSQL database (default: the target’s)', parseText(63))
    .option('--request <id>', 'open the session under this access request (waits while it is pending)')
    .option('--env-prefix <prefix>', 'prefix the connection variables (e.g. SRC_ gives SRC_PGHOST, SRC_DATABASE_URL)', parsePrefix)
    .option('-l, --login <user>', 'SSH targets: account to log in as', parseText(32))
    .option(
      '--secret-in-env',
      'PostgreSQL: also put the session secret in PGPASSWORD and DATABASE_URL (readable by the same OS user in /proc); default: a 0600 pgpass file only',
    )
    .addHelpText(
      'after',
      [
        '',
        'PostgreSQL targets set PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE, PGPASSFILE (a 0600 file, removed',
        'at exit) and DATABASE_URL (no password; passfile= points at the file); --secret-in-env adds PGPASSWORD;',
        'SSH targets set JIT_SSH_COMMAND (an ssh command line using jit ssh --stdio) and JIT_SSH_TARGET.',
        "Exit status: the command's own (128+n if a signal killed it); 8 if the server ended the session.",
        '',
        'Examples:',
        "  jit exec prod-db --reason 'migrate' -- npm run migrate",
        "  jit exec prod-db -- psql -c 'select current_user'",
        "  jit exec web-1 -- sh -c '$JIT_SSH_COMMAND $JIT_SSH_TARGET uptime'",
        '  JIT_ID_TOKEN=$(cat token) jit exec prod-db -- ./deploy.sh      (CI: see docs/ci.md)',
        '',
      ].join('\n'),
    )
    .action(async (target: string, command: string[], flags: ExecFlags) => {
      const { ctx } = env;
      const globals = env.globals();
      const mode = outputMode(ctx, globals);
      const services = cliServices(ctx, globals);
      // Plain lines only: the child owns the terminal once it runs.
      const approval = createApprovalPresenter(ctx, { ...mode, interactive: false }, { wait: true });
      const code = await runExec(
        {
          ctx,
          api: services.api,
          server: services.settings.server,
          profile: services.settings.profile,
          accessToken: () => services.auth.getAccessToken(),
          status: (line) => mode.status(line),
          approval,
          // The composition root: how this very jit was started, for the SSH ProxyCommand.
          self: { node: process.execPath, script: process.argv[1] ?? 'jit' },
        },
        {
          target,
          command,
          reason: flags.reason,
          durationSeconds: flags.duration,
          database: flags.database,
          request: flags.request,
          envPrefix: flags.envPrefix,
          login: flags.login,
          secretInEnv: flags.secretInEnv,
        },
      );
      if (code !== 0) throw new ExitWith(code);
    });
}
