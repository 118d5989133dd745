/**
 * The one table of stable error codes. Each code maps to an exit code (CLI), an HTTP status
 * (control plane), a message that is safe to show to any user, and a hint.
 * docs/errors.md must list exactly these codes (a test checks it).
 */

/** Process exit codes: stable, documented in docs/errors.md. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  authNeeded: 3,
  accessDenied: 4,
  approvalDenied: 5,
  approvalExpired: 6,
  targetUnreachable: 7,
  sessionEnded: 8,
  auditTampered: 9,
  internal: 70,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface ErrorSpec {
  exit: ExitCode;
  http: number;
  message: string;
  hint: string;
}

export const ERROR_CODES = {
  JIT_USAGE: {
    exit: EXIT.usage,
    http: 400,
    message: 'The command was not used correctly',
    hint: 'run the command with --help',
  },
  JIT_CONFIG_INVALID: {
    exit: EXIT.usage,
    http: 500,
    message: 'The configuration is not valid',
    hint: 'fix the file or variable named in the message',
  },
  JIT_AUTH_REQUIRED: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'You are not logged in',
    hint: 'run jit login',
  },
  JIT_AUTH_INVALID_TOKEN: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'The access token was refused',
    hint: 'run jit login',
  },
  JIT_AUTH_EXPIRED: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'Your login has expired',
    hint: 'run jit login',
  },
  JIT_AUTH_REFRESH_FAILED: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'Your login could not be refreshed',
    hint: 'run jit login',
  },
  JIT_AUTH_LOGIN_FAILED: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'Login did not complete',
    hint: 'run jit login again and finish the steps in the browser',
  },
  JIT_AUTH_MACHINE_REFUSED: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'The CI identity was refused',
    hint: 'check the workload or service account in the server config against the token (docs/ci.md)',
  },
  JIT_ACCESS_DENIED: {
    exit: EXIT.accessDenied,
    http: 403,
    message: 'Access denied',
    hint: 'ask an administrator for access; jit targets lists what you can reach',
  },
  JIT_ADMIN_REQUIRED: {
    exit: EXIT.accessDenied,
    http: 403,
    message: 'This needs administrator rights',
    hint: 'ask a jit administrator to run it',
  },
  JIT_TARGET_NOT_FOUND: {
    exit: EXIT.accessDenied,
    http: 404,
    message: 'No such target',
    hint: 'jit targets lists the targets you can reach',
  },
  JIT_TARGET_UNREACHABLE: {
    exit: EXIT.targetUnreachable,
    http: 503,
    message: 'The target cannot be reached right now',
    hint: 'the agent serving it may be down; try again or ask an administrator',
  },
  JIT_AGENT_UNAVAILABLE: {
    exit: EXIT.targetUnreachable,
    http: 503,
    message: 'The agent serving this target is not connected',
    hint: 'check that jit agent is running and can reach the control plane',
  },
  JIT_SERVER_UNREACHABLE: {
    exit: EXIT.targetUnreachable,
    http: 502,
    message: 'The jit server cannot be reached',
    hint: 'check --server / JIT_SERVER and your network',
  },
  JIT_SESSION_NOT_FOUND: {
    exit: EXIT.sessionEnded,
    http: 404,
    message: 'No such session',
    hint: 'jit sessions lists your sessions',
  },
  JIT_SESSION_ENDED: {
    exit: EXIT.sessionEnded,
    http: 410,
    message: 'The session has ended',
    hint: 'run jit connect again for a new session',
  },
  JIT_SESSION_DURATION: {
    exit: EXIT.usage,
    http: 400,
    message: 'The requested duration is longer than policy allows',
    hint: 'ask for a shorter --duration',
  },
  JIT_GRANT_INVALID: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'The session grant was refused',
    hint: 'run jit connect again',
  },
  JIT_APPROVAL_DENIED: {
    exit: EXIT.approvalDenied,
    http: 403,
    message: 'The request was denied',
    hint: 'file a new request with a clearer --reason',
  },
  JIT_APPROVAL_EXPIRED: {
    exit: EXIT.approvalExpired,
    http: 403,
    message: 'The request expired before anyone decided',
    hint: 'file a new request',
  },
  JIT_APPROVAL_REQUIRED: {
    exit: EXIT.accessDenied,
    http: 403,
    message: 'Access to this target needs an approved request',
    hint: 'jit connect <target> --reason "…" files a request and waits for an approver',
  },
  JIT_APPROVAL_CANCELLED: {
    exit: EXIT.approvalDenied,
    http: 409,
    message: 'The request was cancelled',
    hint: 'file a new request with jit connect <target> --reason "…"',
  },
  JIT_APPROVAL_DECIDED: {
    exit: EXIT.failure,
    http: 409,
    message: 'The request has already been decided',
    hint: 'jit requests <id> shows its state; decisions are final',
  },
  JIT_APPROVAL_NOT_FOUND: {
    exit: EXIT.accessDenied,
    http: 404,
    message: 'No such request',
    hint: 'jit requests lists the requests you filed or may review',
  },
  JIT_PORT_IN_USE: {
    exit: EXIT.usage,
    http: 400,
    message: 'The local port is already in use',
    hint: 'pick another --port or leave it out for a free one',
  },
  JIT_LOCAL_AUTH_FAILED: {
    exit: EXIT.accessDenied,
    http: 401,
    message: 'The local connection did not present the session secret',
    hint: 'use the connection string jit connect printed',
  },
  JIT_AGENT_AUTH_FAILED: {
    exit: EXIT.authNeeded,
    http: 401,
    message: 'The agent token was refused',
    hint: 'check the agent token in the agent configuration',
  },
  JIT_PROTOCOL_ERROR: {
    exit: EXIT.failure,
    http: 400,
    message: 'A peer sent a message that breaks the protocol',
    hint: 're-run with --debug and report it',
  },
  JIT_CREDENTIAL_FAILED: {
    exit: EXIT.targetUnreachable,
    http: 502,
    message: 'The session credential could not be created on the target',
    hint: 'an administrator should check the agent log and its admin connection',
  },
  JIT_KEYCHAIN_UNAVAILABLE: {
    exit: EXIT.failure,
    http: 500,
    message: 'The OS keychain is not available',
    hint: 'tokens are kept in a 0600 file instead',
  },
  JIT_AUDIT_TAMPERED: {
    exit: EXIT.auditTampered,
    http: 409,
    message: 'The audit log failed verification: events were removed, inserted, altered or reordered',
    hint: 'keep the store as it is for investigation; jit audit verify --json names the first bad event',
  },
  JIT_INTERNAL: {
    exit: EXIT.internal,
    http: 500,
    message: 'unexpected error',
    hint: 're-run with --debug',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Whether a string is one of our stable codes (for errors that crossed the wire). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}
