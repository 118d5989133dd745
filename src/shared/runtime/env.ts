/**
 * Every JIT_* environment variable jit reads, in one table, and the one reader. A variable not in
 * JIT_ENV cannot be read (the name is a type), and test/lint/contract-facts.test.ts refuses a
 * JIT_* read anywhere else. docs/cli/reference.md ("Environment") lists the table; a test keeps
 * the two equal. Variables jit SETS for a child (JIT_SESSION_ID, JIT_TARGET, JIT_SSH_COMMAND…)
 * are written by src/cli/exec/environment.ts and documented with jit exec.
 */

export type EnvSource = Readonly<Record<string, string | undefined>>;

interface EnvVar {
  /** What it does, one line (the reference table). */
  readonly doc: string;
  /** Holds a credential: never logged, never passed on to a child process. */
  readonly secret?: true;
}

export const JIT_ENV = {
  JIT_SERVER: { doc: 'control plane URL (as --server)' },
  JIT_PROFILE: { doc: 'profile name, to keep several servers apart (as --profile)' },
  JIT_JSON: { doc: '1/true: machine-readable output on stdout (as --json)' },
  JIT_QUIET: { doc: '1/true: only data, no status lines (as --quiet)' },
  JIT_DEBUG: { doc: '1/true: stack traces and debug logs (as --debug)' },
  JIT_LOG_LEVEL: { doc: 'log level of the long-running parts: debug, info, warn, error' },
  JIT_KEYRING: { doc: 'where tokens are kept: auto (default), keychain, file' },
  JIT_TOKEN: { doc: 'CI: a jit token to use as is', secret: true },
  JIT_ID_TOKEN: { doc: 'CI: an OIDC ID token to exchange for a jit token', secret: true },
  JIT_ID_TOKEN_FILE: { doc: 'CI: a file holding that ID token (as --id-token-file)' },
  JIT_ID_TOKEN_AUDIENCE: { doc: 'CI: the audience the ID token must carry (checked before it is sent)' },
  JIT_CLIENT_ID: { doc: 'CI: a machine client id, with JIT_CLIENT_SECRET (client credentials)' },
  JIT_CLIENT_SECRET: { doc: 'CI: the machine client secret', secret: true },
  JIT_AGENT_TOKEN: { doc: 'jit agent: the agent token (instead of token/tokenFile in its config)', secret: true },
  JIT_SERVER_CONFIG: { doc: 'jit server: the configuration file (as --config)' },
} as const satisfies Record<`JIT_${string}`, EnvVar>;

export type JitEnvName = keyof typeof JIT_ENV;

/** The variables that hold credentials (kept out of child processes and logs). */
export const SECRET_ENV = (Object.keys(JIT_ENV) as JitEnvName[]).filter((n) => (JIT_ENV[n] as EnvVar).secret);

/** The raw value; undefined when unset. */
export function readEnv(env: EnvSource, name: JitEnvName): string | undefined {
  return env[name];
}

/** The value trimmed; undefined when unset or blank. */
export function readEnvText(env: EnvSource, name: JitEnvName): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

const TRUE = /^(1|true|yes|on)$/i;

/** A switch: 1, true, yes or on (any case) turns it on. */
export function readEnvFlag(env: EnvSource, name: JitEnvName): boolean {
  return TRUE.test(env[name] ?? '');
}
