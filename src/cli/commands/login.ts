import type { Command } from 'commander';
import { JitError } from '../../shared/errors/jit-error.js';
import type { CommandEnv } from '../main.js';

// Placeholder: replaced by the real command.
export function registerLogin(program: Command, _env: CommandEnv): void {
  program.command('login').description('(not built yet)').action(() => {
    throw new JitError('JIT_USAGE', { message: 'jit login is not built yet' });
  });
}
