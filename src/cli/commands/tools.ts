import { createHash, randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { JitError } from '#shared/errors/jit-error.js';
import type { CommandEnv } from '../main.js';

async function readStdin(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) {
    chunks.push(Buffer.from(c as Buffer));
    if (chunks.reduce((n, b) => n + b.length, 0) > 4096) throw new JitError('JIT_USAGE', { message: 'input too long' });
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Administrator helpers for writing configuration: password hashes and agent tokens. */
export function registerTools(program: Command, env: CommandEnv): void {
  program
    .command('hash-password')
    .description('read a password on stdin and print its hash for identity.builtin.users[].passwordHash')
    .action(async () => {
      const { ctx } = env;
      if (ctx.io.stdin.isTTY) {
        throw new JitError('JIT_USAGE', {
          message: 'jit hash-password reads the password from stdin',
          hint: 'printf \'%s\' "$PASSWORD" | jit hash-password',
        });
      }
      const pw = await readStdin(ctx.io.stdin);
      if (pw.length < 8) throw new JitError('JIT_USAGE', { message: 'The password must have at least 8 characters' });
      const { hashPassword } = await import('#dev/launch.js');
      ctx.io.stdout.write(`${await hashPassword(pw)}\n`);
    });
  program
    .command('agent-token')
    .description('make a new agent token: the token goes to the agent, the hash to the server config')
    .action(() => {
      const { ctx } = env;
      const token = `jat_${randomBytes(32).toString('base64url')}`;
      const hash = `sha256:${createHash('sha256').update(token).digest('hex')}`;
      if (env.globals().json) ctx.io.stdout.write(`${JSON.stringify({ token, tokenHash: hash })}\n`);
      else ctx.io.stdout.write(`token:     ${token}\ntokenHash: ${hash}\n`);
    });
}
