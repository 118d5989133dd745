import type { Command } from 'commander';
import { JitError } from '../../shared/errors/jit-error.js';
import type { CommandEnv } from '../main.js';

// Placeholder: replaced by the real command.
export function registerServer(program: Command, _env: CommandEnv): void {
  program.command('server').description('(not built yet)').action(() => {
    throw new JitError('JIT_USAGE', { message: 'jit server is not built yet' });
  });
}
