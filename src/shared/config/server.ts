/** Schema of the control plane's configuration file (`jit server --config`). */
import { z } from 'zod';
import { parseDuration } from '../duration.js';
import { NAME_PATTERN, NAME_RULE, STREAM_ID_PATTERN } from '../contract/ids.js';

export const DurationString = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return typeof v === 'number' ? v : parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

export const AuditDestination = z
  .object({
    name: z
      .string()
      .regex(NAME_PATTERN, NAME_RULE)
      .describe('Name of the destination; its forwarding cursor is stored under it, so renaming one re-sends everything'),
    type: z.enum(['http', 'syslog']).describe('http: JSON lines POSTed to url; syslog: RFC 5424 frames (octet counting) over TCP or TLS'),
    url: z.string().url().optional().describe('http: where to POST (https, or http on loopback)'),
    tokenEnv: z.string().regex(ENV_NAME).optional().describe('http: environment variable holding a bearer token for the receiver'),
    host: z.string().min(1).max(253).optional().describe('syslog: receiver host'),
    port: z.number().int().min(1).max(65535).optional().describe('syslog: receiver port (6514 is usual for TLS)'),
    transport: z.enum(['tcp', 'tls']).default('tls').describe('syslog: tls, or plain tcp (loopback only)'),
    caFile: z.string().optional().describe('PEM file of the CA that signed the receiver certificate (https / tls); default: system roots'),
    facility: z.number().int().min(0).max(23).default(13).describe('syslog: facility number (13 = log audit)'),
    batchSize: z.number().int().min(1).max(5000).default(500).describe('Events sent per request / connection'),
    timeout: DurationString.default(10).describe('How long to wait for the receiver to acknowledge a batch (default 10s)'),
  })
  .refine((d) => d.type !== 'http' || Boolean(d.url), { message: 'an http destination needs url' })
  .refine((d) => d.type !== 'syslog' || Boolean(d.host && d.port), { message: 'a syslog destination needs host and port' })
  .describe('A SIEM or log collector that receives every audit event');
export type AuditDestination = z.infer<typeof AuditDestination>;

export const AuditConfig = z
  .object({
    stream: z
      .string()
      .regex(STREAM_ID_PATTERN)
      .default('cp')
      .describe("Name of this control plane's hash chain; replicas sharing one store need different names"),
    checkpointEvery: z.number().int().min(1).max(1_000_000).default(1000).describe('Sign a checkpoint after this many events'),
    checkpointInterval: DurationString.default(60).describe('…and at least this often while events arrive (default 60s)'),
    retention: DurationString.optional().describe(
      'Delete events older than this (e.g. 365d), only up to a signed checkpoint; unset keeps everything',
    ),
    pruneInterval: DurationString.default(3600).describe('How often retention runs (default 1h)'),
    forward: z.array(AuditDestination).default([]).describe('Where every event is also sent (at least once, from a durable cursor)'),
    retryInitial: DurationString.default(1).describe('First retry delay after a failed delivery; doubles each time, with jitter'),
    retryMax: DurationString.default(60).describe('Longest delay between delivery retries (default 60s)'),
  })
  .refine((a) => new Set(a.forward.map((d) => d.name)).size === a.forward.length, { message: 'audit.forward names must be unique' });
export type AuditConfig = z.infer<typeof AuditConfig>;

export const BuiltinUser = z
  .object({
    username: z
      .string()
      .regex(/^[a-z][a-z0-9._-]{0,62}$/, 'lowercase letters, digits, . _ - (max 63)')
      .describe('Login name; also the `sub` and `preferred_username` of the tokens'),
    /** `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>` — make one with `jit hash-password`. */
    passwordHash: z.string().startsWith('scrypt$').describe('Made by `jit hash-password` (scrypt)'),
    email: z.string().email().optional().describe('Email claim'),
    name: z.string().optional().describe('Display name'),
    groups: z.array(z.string()).default([]).describe('Groups claim: what policy rules match on'),
  })
  .describe('A user of the built-in identity provider');

export const IdentityConfig = z
  .object({
    builtin: z
      .object({
        users: z.array(BuiltinUser).default([]).describe('Users who may log in'),
        /** Access token lifetime. Keep short: JWT access tokens cannot be revoked. */
        accessTokenTtl: DurationString.default(600).describe('Access token lifetime (default 10m); short, since JWTs cannot be revoked'),
        refreshTokenTtl: DurationString.default(14 * 86400).describe('Refresh token lifetime (default 14d)'),
      })
      .optional()
      .describe('Run the built-in OIDC provider at <publicUrl>/oidc'),
    oidc: z
      .object({
        issuer: z.string().url().describe('Issuer URL, exactly as in its discovery document'),
        clientId: z.string().describe('Public client registered for the jit CLI (device flow)'),
        audience: z.string().describe('Audience (resource) the access tokens must carry'),
        scopes: z.array(z.string()).default(['openid', 'profile', 'email', 'offline_access']).describe('Scopes the CLI requests'),
      })
      .optional()
      .describe('Trust an external OIDC issuer instead'),
    groupsClaim: z.string().default('groups').describe('Token claim holding the groups'),
    usernameClaim: z.string().default('preferred_username').describe('Token claim holding the user name (falls back to sub)'),
    algorithms: z
      .array(z.string())
      .default(['RS256', 'PS256', 'ES256', 'EdDSA'])
      .describe('Accepted signature algorithms (none and HS* are always refused)'),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(30).describe('Allowed clock skew for exp/nbf'),
  })
  .refine((v) => Boolean(v.builtin) !== Boolean(v.oidc), {
    message: 'set exactly one of identity.builtin or identity.oidc',
  });
export type IdentityConfig = z.infer<typeof IdentityConfig>;

export const WEBHOOK_EVENTS = ['request.created', 'request.decided'] as const;

export const Webhook = z
  .object({
    url: z.string().url().describe('Where to POST (https, or http on loopback)'),
    secret: z.string().min(16).optional().describe('HMAC key for X-Jit-Signature (prefer secretEnv)'),
    secretEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/)
      .optional()
      .describe('Environment variable holding the HMAC key'),
    format: z
      .enum(['jit', 'slack'])
      .default('jit')
      .describe('jit: the request as JSON; slack: { text, blocks } for a Slack incoming webhook'),
    events: z
      .array(z.enum(WEBHOOK_EVENTS))
      .default([...WEBHOOK_EVENTS])
      .describe('request.created (a request waits for approvers) and/or request.decided (approved, denied, expired, cancelled)'),
  })
  .refine((w) => !(w.secret && w.secretEnv), { message: 'set secret or secretEnv, not both' })
  .refine((w) => w.format !== 'jit' || Boolean(w.secret || w.secretEnv), {
    message: 'a jit-format webhook needs secret or secretEnv, so receivers can verify it',
  })
  .describe('One receiver of request notifications');
export type Webhook = z.infer<typeof Webhook>;

export const Notifications = z.object({
  webhooks: z.array(Webhook).default([]).describe('Receivers of request notifications (delivered from a durable outbox)'),
  maxAttempts: z.number().int().min(1).max(100).default(10).describe('Deliveries tried per notification before giving up (audited)'),
  retryInitial: DurationString.default(2).describe('First retry delay; doubles each attempt, with jitter (default 2s)'),
  retryMax: DurationString.default(600).describe('Longest delay between retries (default 10m)'),
  approveUrl: z
    .string()
    .url()
    .optional()
    .describe('Link put in notifications, with {id} replaced by the request id (default: the request in the API)'),
});
export type Notifications = z.infer<typeof Notifications>;

const MachineName = z.string().regex(NAME_PATTERN, NAME_RULE);
/** A claim pattern: exact, or a trailing `*` for a prefix. */
const ClaimPattern = z.string().min(1).max(512);

export const Workload = z
  .object({
    name: MachineName.describe('Workload name; its jit tokens have sub and preferred_username workload:<name> (what policy users name)'),
    issuer: z
      .string()
      .url()
      .describe(
        "Issuer of the CI platform's ID tokens, exactly as in its discovery document (GitHub Actions: https://token.actions.githubusercontent.com)",
      ),
    audience: z
      .string()
      .min(1)
      .max(512)
      .describe("Audience the ID token must carry (jit exec asks GitHub Actions for the server's audience: its public URL)"),
    subject: ClaimPattern.optional().describe(
      "Pattern the ID token's sub must match: exact, or a trailing * for a prefix (e.g. repo:acme/app:*)",
    ),
    claims: z
      .record(z.string().min(1).max(128), ClaimPattern)
      .default({})
      .describe(
        'Claims the ID token must carry, each exact or with a trailing * for a prefix (e.g. repository: acme/app, ref: refs/heads/main)',
      ),
    groups: z.array(z.string().min(1).max(128)).max(64).default([]).describe('Groups of the jit token: what policy rules match on'),
    algorithms: z
      .array(z.string())
      .default(['RS256', 'PS256', 'ES256', 'EdDSA'])
      .describe('Accepted signature algorithms (none and HS* are always refused)'),
  })
  // The issuer alone (e.g. GitHub's) vouches for every repository in the world.
  .refine((w) => w.subject !== undefined || Object.keys(w.claims).length > 0, {
    message: 'a workload must pin subject or at least one claim (the issuer alone is shared by everyone using it)',
  })
  .describe("A CI job or other workload that exchanges its platform's ID token for a jit token (RFC 8693)");
export type Workload = z.infer<typeof Workload>;

export const ServiceAccount = z
  .object({
    name: MachineName.describe('Client id (JIT_CLIENT_ID); its jit tokens have sub and preferred_username service:<name>'),
    secretHash: z.string().startsWith('scrypt$').describe('Hash of the client secret, made by `jit hash-password`'),
    groups: z.array(z.string().min(1).max(128)).max(64).default([]).describe('Groups of the jit token: what policy rules match on'),
  })
  .describe('A machine that has no workload identity and authenticates with a client secret (OAuth client credentials)');
export type ServiceAccount = z.infer<typeof ServiceAccount>;

const unique = (names: string[]) => new Set(names).size === names.length;

export const ServerConfig = z.object({
  listen: z
    .string()
    .regex(/^[^:]+:\d{1,5}$|^\[[0-9a-f:]+\]:\d{1,5}$/i, 'host:port')
    .default('127.0.0.1:8443')
    .describe('Address to listen on; port 0 picks a free port'),
  publicUrl: z.string().url().optional().describe('URL clients and agents use; defaults to the listen address'),
  tls: z
    .object({ cert: z.string().describe('Certificate chain (PEM file)'), key: z.string().describe('Private key (PEM file)') })
    .optional()
    .describe('PEM files; required unless listening on loopback'),
  dataDir: z.string().default('./jit-data').describe('SQLite state, signing keys, IdP keys'),
  identity: IdentityConfig.describe('Who users are: the built-in IdP or an external OIDC issuer'),
  admins: z
    .object({ users: z.array(z.string()).default([]), groups: z.array(z.string()).default([]) })
    .default({ users: [], groups: [] })
    .describe('Who may read the audit log and see or end all sessions'),
  agents: z
    .array(
      z.object({
        name: z.string().regex(NAME_PATTERN, NAME_RULE).describe('Agent name, as targets name it'),
        tokenHash: z
          .string()
          .regex(/^sha256:[0-9a-f]{64}$/)
          .describe('`sha256:<hex>` of the agent token (`jit agent-token`)'),
      }),
    )
    .default([])
    .describe('Agents allowed to connect'),
  sessions: z
    .object({
      heartbeatTimeout: DurationString.default(30).describe('A session whose CLI stops heartbeating is ended after this (default 30s)'),
      heartbeatInterval: DurationString.default(10).describe('How often the CLI heartbeats (default 10s)'),
      defaultDuration: DurationString.default(3600).describe('Session length when --duration is not given (default 1h)'),
      maxDuration: DurationString.default(8 * 3600).describe('Longest session anyone may have (default 8h)'),
    })
    .default({ heartbeatTimeout: 30, heartbeatInterval: 10, defaultDuration: 3600, maxDuration: 8 * 3600 })
    .describe('Session limits and liveness'),
  audit: AuditConfig.default({
    stream: 'cp',
    checkpointEvery: 1000,
    checkpointInterval: 60,
    pruneInterval: 3600,
    forward: [],
    retryInitial: 1,
    retryMax: 60,
  }).describe('Audit trail: signed checkpoints, retention, forwarding'),
  storage: z
    .object({
      synchronous: z
        .enum(['normal', 'full'])
        .default('normal')
        .describe('normal: committed state survives a crash of the server process; full: also power loss (an fsync per commit)'),
    })
    .default({ synchronous: 'normal' })
    .describe('The embedded SQLite store'),
  policy: z.string().describe('Policy file: targets and who may use them'),
  workloads: z
    .array(Workload)
    .default([])
    .refine((ws) => unique(ws.map((w) => w.name)), { message: 'workload names must be unique' })
    .describe('Workloads (CI jobs) trusted to exchange their ID tokens for jit tokens at POST /v1/token'),
  serviceAccounts: z
    .array(ServiceAccount)
    .default([])
    .refine((ss) => unique(ss.map((s) => s.name)), { message: 'service account names must be unique' })
    .describe('Service accounts that get jit tokens with a client secret at POST /v1/token'),
  machineTokenTtl: DurationString.refine((s) => s >= 60 && s <= 900, { message: 'between 1m and 15m' })
    .default(600)
    .describe('Lifetime of the jit tokens issued to workloads and service accounts (default 10m, at most 15m)'),
  notifications: Notifications.default({ webhooks: [], maxAttempts: 10, retryInitial: 2, retryMax: 600 }).describe(
    'Where access requests and decisions are announced',
  ),
});
export type ServerConfig = z.infer<typeof ServerConfig>;
