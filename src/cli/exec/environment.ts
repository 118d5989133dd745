/**
 * The child's environment in `jit exec`: the session's connection in the variables its tools
 * already read (libpq's PG*, DATABASE_URL), and no CI secret of jit's own.
 */
import type { Session } from '#shared/contract/http.js';
import { SECRET_ENV } from '#shared/runtime/env.js';

export type Env = Record<string, string | undefined>;

/** Names a prefix may have: what a shell accepts as a variable name start. */
export const ENV_PREFIX = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/**
 * libpq settings that would redirect or alter the connection (PGHOSTADDR beats PGHOST, PGSERVICE
 * fills in a host, PGOPTIONS adds GUCs…): without a prefix, the inherited PG* variables go.
 */
function withoutPgVariables(env: Env): Env {
  const out: Env = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('PG')) out[k] = v;
  return out;
}

/** The base environment minus jit's own CI secrets (the child gets a session, not an identity). */
export function withoutCiSecrets(env: Env): Env {
  const out: Env = { ...env };
  for (const k of SECRET_ENV) delete out[k];
  return out;
}

/** A pgpass field: `:` and `\` escaped with a backslash. */
function pgpassField(v: string): string {
  return v.replace(/[\\:]/g, (c) => `\\${c}`);
}

/** The one pgpass line for a session's local port (0600 file written by the caller). */
export function pgpassLine(url: string, port: number): string {
  const u = new URL(url);
  const db = decodeURIComponent(u.pathname.replace(/^\//, ''));
  return `${['127.0.0.1', String(port), db, decodeURIComponent(u.username), decodeURIComponent(u.password)].map(pgpassField).join(':')}\n`;
}

/**
 * Environment for a PostgreSQL or TCP session. `url` is the connection URL runConnect made
 * (`postgresql://jit_<sid>:<secret>@127.0.0.1:<port>/<db>?sslmode=disable` or `tcp://…`).
 *
 * The session secret is not in the child's environment unless `secretInEnv`: it is in the 0600
 * pgpass file at `passfile` (PGPASSFILE, and `passfile=` in DATABASE_URL, which libpq, pgx and
 * node-postgres read), and DATABASE_URL carries no password. With `secretInEnv` (the old
 * behaviour) PGPASSWORD and the URL's password are set, readable in /proc by the same user.
 */
export function sessionEnvironment(
  base: Env,
  session: Session,
  url: string,
  port: number,
  prefix = '',
  secret: { passfile?: string; secretInEnv?: boolean } = { secretInEnv: true },
): Env {
  const env: Env = { ...(prefix ? base : withoutPgVariables(base)), JIT_SESSION_ID: session.id, JIT_TARGET: session.target };
  if (session.targetType === 'postgres') {
    const u = new URL(url);
    const set = (name: string, value: string) => {
      env[`${prefix}${name}`] = value;
    };
    set('PGHOST', '127.0.0.1');
    set('PGPORT', String(port));
    set('PGUSER', decodeURIComponent(u.username));
    set('PGDATABASE', decodeURIComponent(u.pathname.replace(/^\//, '')));
    set('PGSSLMODE', 'disable');
    if (secret.secretInEnv) {
      set('PGPASSWORD', decodeURIComponent(u.password));
      set('DATABASE_URL', url);
    } else {
      const bare = new URL(url);
      bare.password = '';
      if (secret.passfile) {
        set('PGPASSFILE', secret.passfile);
        bare.searchParams.set('passfile', secret.passfile);
      }
      set('DATABASE_URL', bare.toString());
    }
  } else {
    env[`${prefix}JIT_HOST`] = '127.0.0.1';
    env[`${prefix}JIT_PORT`] = String(port);
  }
  return env;
}

/** Single-quote a word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * SSH targets: no session is opened up front; each ssh the child runs opens its own through
 * `jit ssh --stdio` (ProxyCommand). JIT_SSH_COMMAND is an ssh command line for a shell (sh -c,
 * GIT_SSH_COMMAND, rsync -e); the host name given to it does not matter, the target is pinned.
 */
export function sshEnvironment(
  base: Env,
  target: string,
  jit: { node: string; script: string; server: string; profile: string },
  login: string | undefined,
): Env {
  const proxy = [jit.node, jit.script, 'ssh', '--stdio', '--login', login ?? '%r', target]
    .map((w) => (w === '%r' ? w : shellQuote(w)))
    .join(' ');
  const words = [
    'ssh',
    '-o',
    shellQuote(`ProxyCommand=${proxy}`),
    // The host key is the agent's, reached through the authenticated jit session; there is no
    // network path a man in the middle could sit on, and nothing needs to be written to disk.
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    ...(login ? ['-l', shellQuote(login)] : []),
  ];
  return {
    ...base,
    JIT_SERVER: jit.server,
    JIT_PROFILE: jit.profile,
    JIT_TARGET: target,
    JIT_SSH_TARGET: target,
    JIT_SSH_COMMAND: words.join(' '),
  };
}
