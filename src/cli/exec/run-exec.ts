/**
 * `jit exec <target> -- <command…>`: open a session (through runConnect, so approvals, heartbeats
 * and the local listener behave exactly as in `jit connect`), run the command with the connection
 * in its environment, and end the session when it exits. jit's exit code is the child's.
 *
 * Signals: before the child runs they go to runConnect (cancel the approval wait / end the
 * session); once it runs they go to the child, and the child's exit ends the session. A session
 * ended by the server while the child runs stops the child (SIGTERM, then SIGKILL) → exit 8.
 */
import type { Target } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import type { ApiClient } from '../api/client.js';
import type { ApprovalObserver } from '../approvals/wait.js';
import { type ConnectEnd, runConnect } from '../commands/connect.js';
import { clean } from '../output/style.js';
import { endedByUserLine, leaseEndWords, sessionEndedError } from '../session/lease.js';
import { type ChildEnd, exitCodeFor, type RunningChild, startChild } from './child.js';
import { type Env, pgpassLine, sessionEnvironment, sshEnvironment, withoutCiSecrets } from './environment.js';
import { SecretFile } from './secret-file.js';

export interface ExecOptions {
  target: string;
  /** The command and its arguments (no shell). */
  command: string[];
  reason?: string | undefined;
  durationSeconds?: number | undefined;
  database?: string | undefined;
  request?: string | undefined;
  /** Prefix for the connection variables (PGHOST → <prefix>PGHOST …). */
  envPrefix?: string | undefined;
  /** SSH targets: the account to log in as (default: what ssh is told, e.g. -l / user@). */
  login?: string | undefined;
  /** How long the child gets between SIGTERM and SIGKILL when jit must stop it (default 10 s). */
  graceMs?: number | undefined;
  /** Put the session secret in PGPASSWORD and DATABASE_URL (default: a 0600 pgpass file only). */
  secretInEnv?: boolean | undefined;
}

export interface ExecDeps {
  ctx: Pick<Ctx, 'clock' | 'onSignal' | 'env' | 'io'>;
  api: ApiClient;
  server: string;
  profile: string;
  accessToken: () => Promise<string>;
  /** One status line on stderr (dropped with --quiet). */
  status(line: string): void;
  approval: ApprovalObserver;
  /** How to run this jit again (ProxyCommand for SSH targets). */
  self: { node: string; script: string };
  start?: typeof startChild;
}

const DEFAULT_GRACE_MS = 10_000;

/** Run the command under a session; resolves with jit's exit code (the child's). */
export async function runExec(deps: ExecDeps, opts: ExecOptions): Promise<number> {
  const { ctx, api } = deps;
  const start = deps.start ?? startChild;
  if (opts.command.length === 0) {
    throw new JitError('JIT_USAGE', { message: 'jit exec needs a command to run', hint: 'jit exec <target> -- <command> [args…]' });
  }
  // The target's type decides how the child reaches it; this call also proves the identity works.
  const target: Target | undefined = (await api.targets()).find((t) => t.name === opts.target);
  if (target?.type === 'ssh') return runWithSsh(deps, opts, start);

  // runConnect listens for "signals" through this ctx; we decide what reaches it.
  const connectHandlers = new Set<(s: NodeJS.Signals) => void>();
  const endSession = (sig: NodeJS.Signals) => {
    for (const h of [...connectHandlers]) h(sig);
  };
  let child: RunningChild | undefined;
  let childEnd: Promise<ChildEnd> | undefined;
  let childExited = false;
  let early: NodeJS.Signals | undefined;
  const offSignal = ctx.onSignal((sig) => {
    if (child) return forward(ctx, child, sig);
    early ??= sig;
    endSession(sig);
  });

  const secretFile = new SecretFile();
  let end: ConnectEnd;
  try {
    end = await runConnect(
      {
        ctx: {
          clock: ctx.clock,
          onSignal: (h) => {
            connectHandlers.add(h);
            // A signal that came before runConnect listened still counts.
            if (early && !child) queueMicrotask(() => h(early!));
            return () => connectHandlers.delete(h);
          },
        },
        api,
        server: deps.server,
        accessToken: deps.accessToken,
      },
      {
        target: opts.target,
        reason: opts.reason,
        durationSeconds: opts.durationSeconds,
        database: opts.database,
        request: opts.request,
        verb: 'exec',
      },
      {
        approval: deps.approval,
        onReady: (ready) => {
          let passfile: string | undefined;
          if (ready.session.targetType === 'postgres' && !opts.secretInEnv) {
            passfile = secretFile.write(pgpassLine(ready.url, ready.port));
          }
          const env = sessionEnvironment(withoutCiSecrets(ctx.env as Env), ready.session, ready.url, ready.port, opts.envPrefix ?? '', {
            ...(passfile ? { passfile } : {}),
            secretInEnv: opts.secretInEnv === true,
          });
          deps.status(`jit: session ${ready.session.id} on ${clean(ready.session.target)} ready; running ${clean(opts.command[0]!)}`);
          child = start(opts.command, env);
          childEnd = child.ended.then((e) => {
            childExited = true;
            if (e.spawnError) deps.status(`jit: cannot run ${clean(opts.command[0]!)}: ${e.spawnError}`);
            // The child is done: end the session (runConnect DELETEs it and waits, bounded).
            endSession('SIGTERM');
            return e;
          });
        },
        onConnectionClose: (id, err) => {
          if (err) deps.status(`jit: connection ${id} closed: ${clean(err.message)} [${err.code}]`);
        },
        onWarning: (w) => {
          if (w) deps.status(`jit: ! ${w}`);
        },
      },
    );
  } finally {
    offSignal();
    secretFile.remove();
  }

  if (end.by === 'filed') return 0; // not reachable: exec always waits
  if (end.by === 'signal') {
    if (!childEnd) return exitCodeFor(null, early ?? 'SIGTERM');
    const result = await childEnd;
    deps.status(`jit: ${endedByUserLine(end.session, end.endedOnServer)}`);
    return result.code;
  }
  // The server ended the session (or its time ran out) while the child ran.
  if (child && !childExited) {
    deps.status(`jit: session ${end.session.id} ended (${clean(leaseEndWords(end))}); stopping ${clean(opts.command[0]!)}`);
    const onSignalDuringStop = ctx.onSignal((sig) => forward(ctx, child!, sig));
    try {
      await child.stop(ctx.clock, opts.graceMs ?? DEFAULT_GRACE_MS);
    } finally {
      onSignalDuringStop();
    }
    throw sessionEndedError(end, { during: 'the command ran', hint: 'jit exec again opens a new session' });
  }
  return (await childEnd!).code;
}

/**
 * SIGINT from a terminal already reached the child (same foreground process group): forwarding
 * it again would make a program that treats a second Ctrl-C as "force quit" do just that.
 */
function forward(ctx: Pick<Ctx, 'io'>, child: RunningChild, sig: NodeJS.Signals): void {
  if (sig === 'SIGINT' && ctx.io.stdin.isTTY) return;
  child.signal(sig);
}

/** SSH targets: the child gets a ready JIT_SSH_COMMAND; each ssh it runs is its own session. */
async function runWithSsh(deps: ExecDeps, opts: ExecOptions, start: typeof startChild): Promise<number> {
  const { ctx } = deps;
  // The nested `jit ssh --stdio` needs the same identity, so CI variables stay in this child's env.
  const env = sshEnvironment(ctx.env as Env, opts.target, { ...deps.self, server: deps.server, profile: deps.profile }, opts.login);
  deps.status(`jit: ${clean(opts.target)} is an SSH target; running ${clean(opts.command[0]!)} with JIT_SSH_COMMAND`);
  const child = start(opts.command, env);
  const off = ctx.onSignal((sig) => forward(ctx, child, sig));
  try {
    const end = await child.ended;
    if (end.spawnError) deps.status(`jit: cannot run ${clean(opts.command[0]!)}: ${end.spawnError}`);
    return end.code;
  } finally {
    off();
  }
}
