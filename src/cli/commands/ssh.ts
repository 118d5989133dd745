import { type Command, InvalidArgumentError } from 'commander';
import { EXIT } from '#shared/errors/codes.js';
import { isErrorCode } from '#shared/errors/codes.js';
import { JitError } from '#shared/errors/jit-error.js';
import { encodeFrame, FrameType, SSH_STREAM_VERSION } from '#shared/contract/ssh-stream.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { cliServices } from '../api/services.js';
import { type CommandEnv, ExitWith } from '../main.js';
import { clean } from '../output/style.js';
import { openRelayStream } from '../ssh/relay-stream.js';
import { leaseEndWords, sessionEndedError } from '../session/lease.js';
import { type LiveSshSession, openSshSession } from '../ssh/session.js';
import { exitCodeOf, runTerminal, type TerminalEnd } from '../ssh/terminal.js';
import { sessionDurationFlag as parseDurationFlag } from '../flags.js';

export interface SshOptions {
  target: string;
  login?: string | undefined;
  reason?: string | undefined;
  durationSeconds?: number | undefined;
  /** Words of the remote command (joined with spaces, as ssh does); none = a shell. */
  command: string[];
  /** Force a PTY for a command (-t). */
  tty?: boolean;
  /** ProxyCommand mode: stdin/stdout carry an SSH connection. */
  stdio?: boolean;
}

/**
 * Run `jit ssh`: open a session, one stream, and the command, shell or ProxyCommand relay on it.
 * Returns jit's exit code: the remote status for a command, EXIT.accessDenied when a guardrail
 * refused it; throws JitError when jit itself could not do it.
 */
export async function runSsh(ctx: Ctx, services: ReturnType<typeof cliServices>, opts: SshOptions): Promise<number> {
  const live = await openSshSession(
    { api: services.api, clock: ctx.clock },
    { target: opts.target, login: opts.login, reason: opts.reason, durationSeconds: opts.durationSeconds },
  );
  try {
    const socket = await openRelayStream({
      server: services.settings.server,
      sessionId: live.session.id,
      grant: live.grant,
      accessToken: await services.auth.getAccessToken(),
    });
    if (opts.stdio) return await runStdio(ctx, live, socket);
    const interactive = opts.command.length === 0;
    const pty = interactive ? Boolean(ctx.io.stdin.isTTY) : Boolean(opts.tty);
    const end = await runTerminal(
      socket,
      {
        mode: interactive ? 'shell' : 'exec',
        ...(interactive ? {} : { command: opts.command.join(' ') }),
        pty,
        term: ctx.env['TERM'] && /^[A-Za-z0-9._+-]{1,64}$/.test(ctx.env['TERM']) ? ctx.env['TERM'] : 'xterm-256color',
        env: pickEnv(ctx.env),
      },
      { io: ctx.io, onSignal: (h) => ctx.onSignal(h), stop: live.ended.then((e) => leaseEndWords(e)) },
    );
    return await outcome(end, opts.target, live);
  } finally {
    await live.close();
    // A TTY or pipe left open keeps the process alive after the remote side is done.
    if (!opts.stdio) ctx.io.stdin.pause();
  }
}

/** LANG and LC_* travel like ssh's SendEnv default; sshd's AcceptEnv decides. */
function pickEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && (k === 'LANG' || k.startsWith('LC_')) && v.length <= 256) out[k] = v;
  return out;
}

async function outcome(end: TerminalEnd, target: string, live: LiveSshSession): Promise<number> {
  if (end.kind === 'lost') {
    throw new JitError('JIT_TARGET_UNREACHABLE', {
      message: `The connection to ${target} was lost before the remote side finished (the agent or the jit server went away)`,
      hint: 'run the command again; jit replay <session> shows what was recorded',
    });
  }
  if (end.kind === 'stopped') {
    throw sessionEndedError(await live.ended, { during: `jit ssh ${target} ran`, hint: 'jit ssh again opens a new session' });
  }
  const { exit } = end;
  if (exit.blocked) return EXIT.accessDenied;
  if (exit.error) {
    const code = isErrorCode(exit.error.code) ? exit.error.code : 'JIT_TARGET_UNREACHABLE';
    throw new JitError(code, { message: clean(exit.error.message) });
  }
  return exitCodeOf(exit);
}

/** ProxyCommand: stdin/stdout ⇄ the stream, after one REQUEST frame. Status only on stderr. */
async function runStdio(ctx: Ctx, live: LiveSshSession, socket: import('node:net').Socket): Promise<number> {
  socket.write(encodeFrame(FrameType.request, JSON.stringify({ v: SSH_STREAM_VERSION, mode: 'stdio' })));
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, line?: string) => {
      if (done) return;
      done = true;
      off();
      if (line) ctx.io.stderr.write(`jit: ${line}\n`);
      ctx.io.stdin.unpipe(socket);
      ctx.io.stdin.pause();
      socket.destroy();
      resolve(code);
    };
    const off = ctx.onSignal(() => finish(EXIT.ok));
    void live.ended.then((e) => {
      const err = sessionEndedError(e);
      finish(err.exitCode, `${err.message} [${err.code}]`);
    });
    ctx.io.stdin.pipe(socket);
    socket.pipe(ctx.io.stdout, { end: false });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => finish(EXIT.ok));
  });
}

function parseLogin(value: string): string {
  if (!/^[a-z_][a-z0-9_.-]{0,31}\$?$/i.test(value)) throw new InvalidArgumentError('a Unix account name');
  return value;
}

function parseReason(value: string): string {
  if (value.length === 0 || value.length > 1000) throw new InvalidArgumentError('1 to 1000 characters');
  return value;
}

interface SshFlags {
  login?: string;
  reason?: string;
  duration?: number;
  tty?: boolean;
  stdio?: boolean;
}

export function registerSsh(program: Command, env: CommandEnv): void {
  program
    .command('ssh')
    .description('open a shell or run a command on an SSH target with a certificate that lives as long as the session')
    .argument('<target>', 'target name (jit targets lists them)')
    .argument('[command...]', 'command to run (after --); without one, an interactive shell')
    .option('-l, --login <user>', 'account to log in as (policy lists the allowed ones; default: the first)', parseLogin)
    .option('-r, --reason <text>', 'why you need access (recorded in the audit log)', parseReason)
    .option('-d, --duration <time>', 'session length, e.g. 30m (policy sets the maximum)', parseDurationFlag)
    .option('-t, --tty', 'allocate a terminal for the command (as ssh -t)')
    .option('--stdio', 'carry an SSH connection on stdin/stdout, for ProxyCommand (see docs/ssh.md)')
    .addHelpText(
      'after',
      '\nExamples:\n  jit ssh web-1                     an interactive shell\n  jit ssh web-1 -- uptime           run a command; its exit status is jit\'s\n  ssh -o ProxyCommand="jit ssh --stdio --login %r %n" web-1\n',
    )
    .action(async (target: string, command: string[], flags: SshFlags) => {
      const { ctx } = env;
      if (flags.stdio && command.length > 0) {
        throw new JitError('JIT_USAGE', { message: '--stdio carries a whole SSH connection; give the command to ssh instead' });
      }
      const code = await runSsh(ctx, cliServices(ctx, env.globals()), {
        target,
        login: flags.login,
        reason: flags.reason,
        durationSeconds: flags.duration,
        command,
        tty: flags.tty,
        stdio: flags.stdio,
      });
      if (code !== 0) throw new ExitWith(code);
    });
}
