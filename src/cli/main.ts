/**
 * The jit program: commander setup and the ONE place where errors become output and exit codes.
 * Command files declare flags and call a run function; they never print errors or exit.
 */
import { Command, CommanderError } from 'commander';
import { ERROR_CODES, EXIT } from '#shared/errors/codes.js';
import { isJitError, JitError } from '#shared/errors/jit-error.js';
import { type Ctx, createSystemCtx } from '#shared/runtime/ctx.js';
import { registerAgent } from './commands/agent.js';
import { registerApprove } from './commands/approve.js';
import { registerAudit } from './commands/audit.js';
import { registerCancel } from './commands/cancel.js';
import { registerCompletion } from './commands/completion.js';
import { registerConnect } from './commands/connect.js';
import { registerDeny } from './commands/deny.js';
import { registerDev } from './commands/dev.js';
import { registerDisconnect } from './commands/disconnect.js';
import { registerExec } from './commands/exec.js';
import { registerLogin } from './commands/login.js';
import { registerLogout } from './commands/logout.js';
import { registerReplay } from './commands/replay.js';
import { registerRequests } from './commands/requests.js';
import { registerServer } from './commands/server.js';
import { registerSsh } from './commands/ssh.js';
import { registerSessions } from './commands/sessions.js';
import { registerTargets } from './commands/targets.js';
import { registerTools } from './commands/tools.js';
import { registerWhoami } from './commands/whoami.js';
import { VERSION } from '#shared/version.js';
import { readEnvFlag } from '#shared/runtime/env.js';

export interface GlobalOptions {
  server?: string;
  profile?: string;
  json?: boolean;
  debug?: boolean;
  quiet?: boolean;
  /** An OIDC ID token to exchange for a jit token (CI; env JIT_ID_TOKEN_FILE). */
  idTokenFile?: string;
}

/** Global flags completed from the environment: a flag wins; JIT_JSON/JIT_QUIET/JIT_DEBUG=1 otherwise. */
export function globalsWithEnv(flags: GlobalOptions, env: Readonly<Record<string, string | undefined>>): GlobalOptions {
  return {
    ...flags,
    json: flags.json ?? (readEnvFlag(env, 'JIT_JSON') || undefined),
    quiet: flags.quiet ?? (readEnvFlag(env, 'JIT_QUIET') || undefined),
    debug: flags.debug ?? (readEnvFlag(env, 'JIT_DEBUG') || undefined),
  };
}

/** Everything a command needs: the runtime context and the parsed global flags. */
export interface CommandEnv {
  ctx: Ctx;
  globals(): GlobalOptions;
}

export function buildProgram(env: CommandEnv): Command {
  const program = new Command('jit')
    .description('Just-in-time access to databases and hosts: no standing credentials')
    .version(VERSION, '-V, --version')
    .option('--server <url>', 'control plane URL (env JIT_SERVER)')
    .option('--profile <name>', 'profile name, to keep several servers apart (env JIT_PROFILE)')
    .option('--json', 'machine-readable output on stdout (env JIT_JSON=1)')
    .option('-q, --quiet', 'print only data, no status lines (env JIT_QUIET=1)')
    .option('--debug', 'show stack traces and debug logs (env JIT_DEBUG=1)')
    .option('--id-token-file <file>', 'CI: exchange the OIDC ID token in this file for a jit token (env JIT_ID_TOKEN_FILE; see docs/ci.md)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => env.ctx.io.stdout.write(s),
      writeErr: (s) => env.ctx.io.stderr.write(s),
    });
  for (const register of [
    registerLogin,
    registerLogout,
    registerWhoami,
    registerTargets,
    registerConnect,
    registerExec,
    registerSsh,
    registerDisconnect,
    registerSessions,
    registerRequests,
    registerApprove,
    registerDeny,
    registerCancel,
    registerReplay,
    registerAudit,
    registerDev,
    registerServer,
    registerAgent,
    registerTools,
    registerCompletion,
  ]) {
    register(program, env);
  }
  return program;
}

/** Render an error as one line plus a hint; the stack only with --debug. Returns the exit code. */
export function reportError(ctx: Ctx, err: unknown, debug: boolean): number {
  const color = ctx.io.stderr.isTTY && !ctx.env['NO_COLOR'];
  const red = (s: string) => (color ? `\x1b[31m${s}\x1b[0m` : s);
  const dim = (s: string) => (color ? `\x1b[2m${s}\x1b[0m` : s);
  if (isJitError(err)) {
    ctx.io.stderr.write(`${red('✘')} ${err.message}  [${err.code}]\n  ${dim(`hint: ${err.hint}`)}\n`);
    if (debug) {
      if (err.detail) ctx.io.stderr.write(`detail: ${err.detail}\n`);
      ctx.io.stderr.write(`${err.stack ?? ''}\n`);
      if (err.cause) ctx.io.stderr.write(`cause: ${(err.cause as Error)?.stack ?? String(err.cause)}\n`);
    }
    return err.exitCode;
  }
  const spec = ERROR_CODES.JIT_INTERNAL;
  ctx.io.stderr.write(`${red('✘')} ${spec.message}  [JIT_INTERNAL]\n  ${dim(`hint: ${spec.hint}`)}\n`);
  if (debug) ctx.io.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  return spec.exit;
}

/** Entry point used by bin/jit.js. Returns the exit code; never calls process.exit. */
export async function run(argv: string[], ctx: Ctx = createSystemCtx()): Promise<number> {
  let globals: GlobalOptions = {};
  const env: CommandEnv = { ctx, globals: () => globals };
  const program = buildProgram(env);
  program.hook('preAction', (cmd) => {
    globals = globalsWithEnv(cmd.optsWithGlobals() as GlobalOptions, ctx.env);
  });
  const debug = argv.includes('--debug') || readEnvFlag(ctx.env, 'JIT_DEBUG');
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) {
        return EXIT.ok;
      }
      return EXIT.usage;
    }
    if (err instanceof ExitWith) return err.code;
    return reportError(ctx, err, debug);
  }
}

/** Thrown by a command that has finished and wants a specific exit code (e.g. a child's). */
export class ExitWith extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export { JitError };
