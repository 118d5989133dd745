import { type Command, InvalidArgumentError } from 'commander';
import { cliServices } from '../api/services.js';
import { completionScript, SHELLS, type Shell } from '../completion/scripts.js';
import { completionSpec } from '../completion/spec.js';
import { completeTargets } from '../completion/targets.js';
import type { CommandEnv } from '../main.js';

function parseShell(value: string): Shell {
  if (!(SHELLS as readonly string[]).includes(value)) throw new InvalidArgumentError(`one of ${SHELLS.join(', ')}`);
  return value as Shell;
}

export function registerCompletion(program: Command, env: CommandEnv): void {
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish)')
    .argument('<shell>', SHELLS.join(' | '), parseShell)
    .addHelpText(
      'after',
      [
        '',
        'Load it in the current shell:',
        '  bash:  source <(jit completion bash)',
        '  zsh:   source <(jit completion zsh)',
        '  fish:  jit completion fish | source',
        '',
        'Target names are fetched from the control plane (cached for 60 s) when you are logged in.',
        '',
      ].join('\n'),
    )
    .action((shell: Shell) => {
      // The root program: completion covers every command, including those registered after this one.
      let root: Command = program;
      while (root.parent) root = root.parent;
      env.ctx.io.stdout.write(completionScript(shell, completionSpec(root)));
    });

  const hidden = program.command('__complete', { hidden: true }).description('completion helper for the shell scripts');
  hidden
    .command('targets')
    .description('target names, one per line (cached; silent when offline or logged out)')
    .action(async () => {
      const { ctx } = env;
      const names = await completeTargets(ctx, () => cliServices(ctx, env.globals()));
      // Names come from the server: only plain words reach the shell.
      const safe = names.filter((n) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(n));
      if (safe.length > 0) ctx.io.stdout.write(`${safe.join('\n')}\n`);
    });
}
