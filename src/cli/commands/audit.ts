import type { Command } from 'commander';
import { JitError } from '../../shared/errors/jit-error.js';
import type { CommandEnv } from '../main.js';

// Placeholder: replaced by the real command.
export function registerAudit(program: Command, _env: CommandEnv): void {
  program.command('audit').description('(not built yet)').action(() => {
    throw new JitError('JIT_USAGE', { message: 'jit audit is not built yet' });
  });
}
