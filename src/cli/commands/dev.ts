import type { Command } from 'commander';
import { JitError } from '../../shared/errors/jit-error.js';
import type { CommandEnv } from '../main.js';

// Placeholder: replaced by the real command.
export function registerDev(program: Command, _env: CommandEnv): void {
  program.command('dev').description('(not built yet)').action(() => {
    throw new JitError('JIT_USAGE', { message: 'jit dev is not built yet' });
  });
}
