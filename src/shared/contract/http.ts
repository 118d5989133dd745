/**
 * HTTP API between the CLI and the control plane. Changes are additive only:
 * new fields are optional with defaults; old CLIs must keep working.
 */
import { z } from 'zod';
import { EndReason } from './end-reasons.js';
import { TargetType } from './engines.js';
import { idSchema } from './ids.js';

export const API_PREFIX = '/v1';

/** GET /.well-known/jit — what a CLI needs to log in and talk to this control plane. */
export const Discovery = z.object({
  issuer: z.string().url(),
  clientId: z.string(),
  /** Audience / resource indicator the CLI asks access tokens for. */
  audience: z.string(),
  /** Scopes the CLI requests at login. */
  scopes: z.array(z.string()),
  apiBase: z.string().url(),
  version: z.string(),
});
export type Discovery = z.infer<typeof Discovery>;

export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }),
});

/** GET /v1/targets → { targets: Target[] } (only targets the caller may use). */
export const Target = z.object({
  name: z.string(),
  type: TargetType,
  description: z.string().default(''),
  /** Default database for postgres targets. */
  database: z.string().optional(),
  /** Whether the agent serving it is connected right now. */
  online: z.boolean(),
  maxDurationSeconds: z.number().int().positive(),
});
export type Target = z.infer<typeof Target>;

/** GET /v1/whoami */
export const WhoAmI = z.object({
  subject: z.string(),
  username: z.string(),
  email: z.string().optional(),
  groups: z.array(z.string()),
  admin: z.boolean(),
  issuer: z.string(),
  expiresAt: z.string(),
});
export type WhoAmI = z.infer<typeof WhoAmI>;

export { EndReason };
export const SessionState = z.enum(['active', 'ended']);

/** POST /v1/sessions body. Duration strings (`30m`, `2h`) are parsed by the CLI. */
export const CreateSessionRequest = z.object({
  target: z.string().min(1).max(128),
  reason: z.string().max(1000).optional(),
  durationSeconds: z
    .number()
    .int()
    .positive()
    .max(7 * 24 * 3600)
    .optional(),
  /** postgres: database to connect to; defaults to the target's. */
  database: z.string().min(1).max(63).optional(),
  /** ssh: the account to log in as; defaults to the first login policy allows. */
  login: z
    .string()
    .regex(/^[a-z_][a-z0-9_.-]{0,31}\$?$/i)
    .optional(),
  /** An approved access request to open this session under (targets with an approvals rule). */
  request: idSchema('request id').optional(),
});
export type CreateSessionRequest = z.infer<typeof CreateSessionRequest>;

export const Session = z.object({
  id: z.string(),
  user: z.string(),
  target: z.string(),
  targetType: TargetType,
  database: z.string().optional(),
  reason: z.string().optional(),
  state: SessionState,
  createdAt: z.string(),
  expiresAt: z.string(),
  endedAt: z.string().optional(),
  endReason: EndReason.optional(),
  /** The database role name the agent creates for this session (postgres). */
  dbUser: z.string().optional(),
  /** The approved access request the session was opened under, if any. */
  request: z.string().optional(),
});
export type Session = z.infer<typeof Session>;

/** POST /v1/sessions → 201 */
export const CreateSessionResponse = z.object({
  session: Session,
  /** Signed session grant (JWT, aud "relay"): presented on every relay stream. */
  grant: z.string(),
  /**
   * Per-session local secret: the local client presents it as the password (postgres), so
   * another OS user cannot ride the local port. Shown once; the control plane keeps only a verifier.
   */
  localSecret: z.string(),
  heartbeatIntervalSeconds: z.number().int().positive(),
});
export type CreateSessionResponse = z.infer<typeof CreateSessionResponse>;

/** POST /v1/sessions/:id/heartbeat → 200 { session } ; 410 when ended. */
export const HeartbeatResponse = z.object({ session: Session });

/** DELETE /v1/sessions/:id?reason=exit|killed → 200 { session } */

/** GET /v1/sessions → { sessions: Session[] } (own; admins see all with ?all=1) */

export const AuditEvent = z.object({
  id: z.number().int(),
  time: z.string(),
  type: z.string(),
  actor: z.string().optional(),
  target: z.string().optional(),
  session: z.string().optional(),
  outcome: z.enum(['success', 'failure', 'info']).default('info'),
  data: z.record(z.string(), z.unknown()).default({}),
  /** Hash chain (docs/audit.md): the writer's stream, the event's number in it, the hashes. */
  stream: z.string().optional(),
  seq: z.number().int().optional(),
  prevHash: z.string().optional(),
  hash: z.string().optional(),
});
export type AuditEvent = z.infer<typeof AuditEvent>;

/**
 * GET /v1/audit?session=&type=&user=&target=&outcome=&since=&until=&afterId=&wait=&limit=
 * → { events: AuditEvent[], lastId } (admins only). `type` ending in `.` or `*` is a prefix;
 * since/until are epoch ms; with afterId the oldest events after it come first, and `wait`
 * (seconds, ≤ 30) holds the answer until one arrives (long poll for `jit audit --follow`).
 */
export const AuditList = z.object({ events: z.array(AuditEvent), lastId: z.number().int().optional() });

/** The first place where the audit log differs from what the control plane wrote. */
export const AuditProblem = z.object({
  kind: z.enum(['removed', 'inserted', 'altered', 'reordered', 'checkpoint']),
  /** The event at fault; null when the missing events were the newest ones. */
  eventId: z.number().int().nullable(),
  seq: z.number().int().nullable(),
  message: z.string(),
  stream: z.string().optional(),
});
export type AuditProblem = z.infer<typeof AuditProblem>;

export const AuditStreamVerification = z.object({
  stream: z.string(),
  ok: z.boolean(),
  anchor: z.object({ kind: z.enum(['genesis', 'pruned', 'checkpoint']), id: z.number().int().nullable(), seq: z.number().int() }),
  checked: z.number().int(),
  firstId: z.number().int().nullable(),
  lastId: z.number().int().nullable(),
  headSeq: z.number().int(),
  checkpoints: z.object({ total: z.number().int(), verified: z.number().int(), badSignatures: z.number().int() }),
  lastCheckpointId: z.number().int().nullable(),
  /** Events after the newest verified checkpoint: chained, not yet signed. */
  unsignedTail: z.number().int(),
  problem: AuditProblem.optional(),
});

/** GET|POST /v1/audit/verify?since=ID|ISO → AuditVerifyResult (admins only). */
export const AuditVerifyResult = z.object({
  ok: z.boolean(),
  verifiedAt: z.string(),
  keyIds: z.array(z.string()).default([]),
  streams: z.array(AuditStreamVerification),
  problem: AuditProblem.optional(),
});
export type AuditVerifyResult = z.infer<typeof AuditVerifyResult>;

/** A signed checkpoint of the chain (GET /v1/audit/checkpoints → { checkpoints }). */
export const AuditCheckpoint = z.object({
  stream: z.string(),
  lastId: z.number().int(),
  lastSeq: z.number().int(),
  lastHash: z.string(),
  count: z.number().int(),
  time: z.number().int(),
  prunedThroughId: z.number().int().nullable(),
  prunedThroughSeq: z.number().int().nullable(),
  prunedLastHash: z.string().nullable(),
  keyId: z.string(),
  signature: z.string(),
});
export type AuditCheckpoint = z.infer<typeof AuditCheckpoint>;

/** GET /v1/audit/key → the public keys that sign checkpoints (Ed25519 JWKs). */
export const AuditKeys = z.object({
  keys: z.array(z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string(), kid: z.string() })),
});

/** GET /v1/audit/forwarding → per destination: cursor (last acknowledged id) and backlog. */
export const AuditForwardingStatus = z.object({
  headId: z.number().int(),
  destinations: z.array(
    z.object({
      name: z.string(),
      type: z.enum(['http', 'syslog']),
      endpoint: z.string(),
      cursor: z.number().int(),
      backlog: z.number().int(),
      failures: z.number().int(),
      lastSuccessAt: z.string().optional(),
      lastError: z.string().optional(),
      nextAttemptAt: z.string().optional(),
    }),
  ),
});
export type AuditForwardingStatus = z.infer<typeof AuditForwardingStatus>;

const Count = z.number().int().nonnegative();
/** GET /v1/audit/report?since=&until= → the evidence report's data (admins only). */
export const AuditReport = z.object({
  generatedAt: z.string(),
  since: z.string(),
  until: z.string(),
  totals: z.object({
    sessions: Count,
    users: Count,
    targets: Count,
    statements: Count,
    blocked: Count,
    masked: Count,
    approvals: Count,
    denied: Count,
  }),
  sessions: z.array(
    z.object({
      id: z.string(),
      user: z.string(),
      target: z.string(),
      startedAt: z.string().optional(),
      endedAt: z.string().optional(),
      durationSeconds: z.number().optional(),
      endReason: z.string().optional(),
      reason: z.string().optional(),
      requestId: z.string().optional(),
      rule: z.string().optional(),
      database: z.string().optional(),
      credentials: z.array(
        z.object({
          role: z.string().optional(),
          createdAt: z.string().optional(),
          destroyedAt: z.string().optional(),
          outcome: z.string(),
        }),
      ),
      connections: Count,
      statements: z.object({ executed: Count, failed: Count, blocked: Count, masked: Count, approvals: Count }),
    }),
  ),
  denied: z.array(
    z.object({
      time: z.string(),
      type: z.string(),
      user: z.string().optional(),
      target: z.string().optional(),
      reason: z.string().optional(),
    }),
  ),
  /** Whether sessions were left out because there were more than the report holds. */
  truncated: z.boolean(),
});
export type AuditReport = z.infer<typeof AuditReport>;

/**
 * Relay streams (CLI → control plane): `GET /v1/relay/:sessionId` with
 * `Authorization: Bearer <grant>`, `Connection: Upgrade`, `Upgrade: jit-stream/1`.
 * The control plane answers `101 Switching Protocols` once the agent's side of the stream is
 * open, then the connection carries raw bytes both ways (see docs/architecture.md).
 * Any other answer is an HTTP error with ErrorBody.
 */
export const STREAM_UPGRADE_PROTOCOL = 'jit-stream/1';

/**
 * Relay requests also carry the user's own access token in this header: the grant is bound to the
 * user who asked for it, so a grant that leaks to another user (or process) is useless without
 * that user's login as well.
 */
export const RELAY_ACCESS_TOKEN_HEADER = 'jit-access-token';

// ---- access requests and approvals (docs/approvals.md)

/**
 * What a target's approvals rule asks for. Sent as `approval` beside the error in the 403
 * JIT_APPROVAL_REQUIRED answer to POST /v1/sessions, so a client knows whether to ask for a reason.
 */
export const ApprovalRequirement = z.object({
  rule: z.string(),
  target: z.string(),
  reasonRequired: z.boolean(),
  approvers: z.object({ users: z.array(z.string()), groups: z.array(z.string()), required: z.number().int().positive() }),
  timeoutSeconds: z.number().positive(),
  maxDurationSeconds: z.number().int().positive(),
});
export type ApprovalRequirement = z.infer<typeof ApprovalRequirement>;

/** POST /v1/requests body → 201 { request }. */
export const CreateAccessRequest = z.object({
  target: z.string().min(1).max(128),
  reason: z.string().min(1).max(1000).optional(),
  durationSeconds: z
    .number()
    .int()
    .positive()
    .max(7 * 24 * 3600)
    .optional(),
});
export type CreateAccessRequest = z.infer<typeof CreateAccessRequest>;

export const RequestState = z.enum(['pending', 'approved', 'denied', 'expired', 'cancelled', 'used']);
export type RequestState = z.infer<typeof RequestState>;
export const RequestKind = z.enum(['access', 'statement']);

/**
 * How far a statement approval reaches: `statement` = this exact statement (text + parameters,
 * bound by digest), once; `session-kind` = statements of the same kind (fingerprint) in the same
 * session until `until`.
 */
export const ApprovalScope = z.object({
  type: z.enum(['statement', 'session-kind']),
  forSeconds: z
    .number()
    .int()
    .positive()
    .max(24 * 3600)
    .optional(),
});
export type ApprovalScope = z.infer<typeof ApprovalScope>;

export const AccessRequest = z.object({
  id: z.string(),
  kind: RequestKind.default('access'),
  requester: z.object({ subject: z.string(), issuer: z.string(), username: z.string() }),
  target: z.string(),
  reason: z.string().optional(),
  /** access: the session length asked for (0 for statement requests). */
  durationSeconds: z.number().int().nonnegative(),
  rule: z.string(),
  approvers: z.object({ users: z.array(z.string()), groups: z.array(z.string()), required: z.number().int().positive() }),
  state: RequestState,
  approvals: z
    .array(z.object({ approver: z.string(), comment: z.string().optional(), time: z.string(), scope: ApprovalScope.optional() }))
    .default([]),
  denial: z.object({ approver: z.string(), reason: z.string(), time: z.string() }).optional(),
  createdAt: z.string(),
  /** Pending: when it expires undecided. */
  expiresAt: z.string(),
  decidedAt: z.string().optional(),
  /** Approved: the session must be opened before this time. */
  usableUntil: z.string().optional(),
  /** access: the session opened with it (state used); statement: the session the statement ran in. */
  session: z.string().optional(),
  /** statement requests: what is held in the agent. */
  statement: z
    .object({ sql: z.string(), params: z.array(z.string().nullable()).optional(), digest: z.string(), kind: z.string().optional() })
    .optional(),
  /** statement requests, once approved: how far the approval reaches. */
  scope: ApprovalScope.extend({ until: z.string().optional() }).optional(),
  /** Whether the caller may approve or deny it now. */
  canReview: z.boolean().default(false),
});
export type AccessRequest = z.infer<typeof AccessRequest>;

/** GET /v1/requests?mine=1|to-review=1 → { requests: AccessRequest[] }; GET /v1/requests/:id → { request }. */
export const RequestList = z.object({ requests: z.array(AccessRequest) });
export const RequestResponse = z.object({ request: AccessRequest });

/** POST /v1/requests/:id/approve */
export const ApproveBody = z.object({ comment: z.string().max(1000).optional(), scope: ApprovalScope.optional() });
export type ApproveBody = z.infer<typeof ApproveBody>;
/** POST /v1/requests/:id/deny (a reason is required) */
export const DenyBody = z.object({ reason: z.string().trim().min(1).max(1000) });
export type DenyBody = z.infer<typeof DenyBody>;
