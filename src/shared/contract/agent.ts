/**
 * Messages between the agent and the control plane.
 *
 * Control channel: the agent dials `GET /v1/agent/connect` as a WebSocket with
 * `Authorization: Bearer <agent token>`; text frames carry one JSON message each, validated
 * with these schemas on both sides. Data streams: the agent dials
 * `GET /v1/agent/streams/:streamId` with `Authorization: Bearer <agent token>` and
 * `Upgrade: jit-stream/1`; after `101` the socket carries the raw bytes of one client connection.
 *
 * Additive changes only: agents in customers' networks stay old for months. New behaviour waits
 * for a capability the agent advertises in `hello`; a missing capability fails closed.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { Guardrail, MaskRule } from '../config/policy.js';
import { TargetType } from './engines.js';
import { idSchema } from './ids.js';

export const AGENT_PROTOCOL_VERSION = 1;
/** Largest control message either side accepts. */
export const AGENT_MAX_CONTROL_MESSAGE = 256 * 1024;

const TargetDecl = z.object({
  name: z.string().min(1).max(128),
  type: TargetType,
});

/** SCRAM-SHA-256 verifier of the session's local secret (the agent never sees the secret). */
export const ScramVerifier = z.object({
  iterations: z.number().int().min(4096).max(1_000_000),
  salt: z.string(), // base64
  storedKey: z.string(), // base64
  serverKey: z.string(), // base64
});
export type ScramVerifier = z.infer<typeof ScramVerifier>;

/**
 * Layer 7 rules for one session (postgres), already filtered by the control plane for the
 * session's user, groups and target. Sent only to agents that advertise the `postgres.inspect`
 * capability; a session whose rules need it is refused on an agent without it (fail closed).
 */
export const InspectionRules = z.object({
  guardrails: z.array(Guardrail).default([]),
  masking: z.array(MaskRule).default([]),
  maskedComputation: z.enum(['refuse', 'allow']).default('refuse'),
  newerServer: z.enum(['refuse', 'warn']).default('refuse'),
});
export type InspectionRules = z.infer<typeof InspectionRules>;

/**
 * SSH session rules (capability `ssh`), decided by the control plane at session start: the login
 * the certificate names, and the command guardrails filtered for the session's user and target.
 */
export const SshSessionRules = z.object({
  login: z.string().min(1).max(64),
  /** Certificate principals (the login). */
  principals: z.array(z.string().min(1).max(64)).min(1).max(16),
  /** Policy allows port forwarding (ssh -L through the ProxyCommand mode). */
  allowForwarding: z.boolean().default(false),
  /** host:port patterns forwarding may reach (policy forwardTo); empty: none. */
  forwardTo: z.array(z.string().max(300)).max(256).default([]),
  guardrails: z.array(Guardrail).default([]),
  /** Record keystrokes as well as output. */
  recordInput: z.boolean().default(false),
  /** denylist: what no guardrail blocks runs; allowlist: only listed commands run, others get `unlisted`. */
  commandMode: z.enum(['denylist', 'allowlist']).default('denylist'),
  unlisted: z.enum(['block', 'require-approval']).default('block'),
});
export type SshSessionRules = z.infer<typeof SshSessionRules>;

export const SessionInfo = z.object({
  id: idSchema('session id'),
  user: z.string(),
  target: z.string(),
  database: z.string().optional(),
  /** Role(s) the session role becomes a member of (postgres), from policy. */
  grantRoles: z.array(z.string()).default([]),
  /** postgres: the session role's timeout defaults from policy, in seconds (absent: the server's). */
  roleSettings: z
    .object({
      statementTimeout: z.number().int().min(1).max(604_800).optional(),
      idleInTransactionTimeout: z.number().int().min(1).max(604_800).optional(),
    })
    .optional(),
  expiresAt: z.string(),
  localVerifier: ScramVerifier,
  /** Added in protocol 1 + capability `postgres.inspect`; absent = relay without inspection. */
  inspection: InspectionRules.optional(),
  /** ssh targets (capability `ssh`): the login and command guardrails; absent = refuse (fail closed). */
  ssh: SshSessionRules.optional(),
});
export type SessionInfo = z.infer<typeof SessionInfo>;

// ---- agent → control plane
export const AgentHello = z.object({
  type: z.literal('hello'),
  agent: z.string(),
  version: z.string(),
  protocol: z.number().int(),
  capabilities: z.array(z.string()).default([]),
  targets: z.array(TargetDecl),
});
/** Answer to stream.open once the data stream could not be dialled / the target refused. */
export const AgentStreamFailed = z.object({
  type: z.literal('stream.failed'),
  streamId: z.string(),
  code: z.string(),
  message: z.string(),
});
/** Audit events the agent reports (credential.created / credential.destroyed / …). */
export const AgentEvent = z.object({
  type: z.literal('event'),
  event: z
    .string()
    .regex(/^[a-z]+(-[a-z]+)*(\.[a-z-]+)+$/)
    .max(64),
  session: z.string().optional(),
  target: z.string().optional(),
  outcome: z.enum(['success', 'failure', 'info']).default('info'),
  data: z.record(z.string(), z.unknown()).default({}),
});
/** Agent asks which of these sessions are still live (for the reaper). */
export const AgentLiveQuery = z.object({
  type: z.literal('sessions.live?'),
  requestId: z.string(),
  sessions: z.array(z.string()).max(10_000),
});
export const AgentPong = z.object({ type: z.literal('pong'), t: z.number() });

/**
 * The digest an approval of a held statement is bound to: sha256 (hex) of the JSON array
 * `[sql, params]` (params `null` for the simple protocol). Both sides compute it; the control
 * plane refuses a request whose digest does not match, and the agent releases the statement
 * only when the decision carries the digest of the statement it holds.
 */
export function statementDigest(sql: string, params: readonly (string | null)[] | undefined): string {
  return createHash('sha256')
    .update(JSON.stringify([sql, params ?? null]))
    .digest('hex');
}

/**
 * A `require-approval` guardrail matched: the agent holds the statement and asks for a decision.
 * The control plane files it as a request of kind `statement` (approvers from the session's own
 * guardrail, not from this message) and answers with `approval.decision`.
 */
export const AgentApprovalRequest = z.object({
  type: z.literal('approval.request'),
  /** Chosen by the agent; unique per agent while the statement is held. */
  requestId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  session: idSchema('session id'),
  sql: z.string().max(64 * 1024),
  params: z
    .array(
      z
        .string()
        .max(16 * 1024)
        .nullable(),
    )
    .max(1000)
    .optional(),
  /** statementDigest(sql, params) */
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  /** The guardrail that matched (its name). */
  rule: z.string().min(1).max(200),
  /** The statement kind the classifier reported (shown to approvers). */
  kind: z.string().max(64).optional(),
  /** Literal-independent fingerprint of the statement, for `session-kind` scoped approvals. */
  fingerprint: z.string().max(128).optional(),
  /** Informational: the rule's approvers as the agent knows them (the control plane uses its own copy). */
  approvers: z
    .object({ users: z.array(z.string()).default([]), groups: z.array(z.string()).default([]), required: z.number().int().optional() })
    .optional(),
  /** How long the agent will hold the statement; the request expires no later than this. */
  timeoutSeconds: z
    .number()
    .int()
    .positive()
    .max(24 * 3600)
    .optional(),
});
export type AgentApprovalRequest = z.infer<typeof AgentApprovalRequest>;
/** The agent stopped waiting (client went away, session ended): the request is cancelled. */
export const AgentApprovalCancel = z.object({
  type: z.literal('approval.cancel'),
  requestId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
});
export type AgentApprovalCancel = z.infer<typeof AgentApprovalCancel>;

/** Largest `data` of one recording chunk (characters; JSON escaping stays under the message limit). */
export const RECORDING_CHUNK_MAX = 32 * 1024;
/**
 * A piece of a session's terminal recording (asciicast v2 lines, the header first in seq 0),
 * streamed while the session runs so that what was shown survives the agent. `final` closes it.
 */
export const AgentRecordingChunk = z.object({
  type: z.literal('recording.chunk'),
  session: idSchema('session id'),
  seq: z.number().int().min(0),
  data: z.string().max(RECORDING_CHUNK_MAX),
  final: z.boolean().default(false),
});
export type AgentRecordingChunk = z.infer<typeof AgentRecordingChunk>;

export const AgentToServer = z.discriminatedUnion('type', [
  AgentHello,
  AgentStreamFailed,
  AgentEvent,
  AgentLiveQuery,
  AgentPong,
  AgentApprovalRequest,
  AgentApprovalCancel,
  AgentRecordingChunk,
]);
export type AgentToServer = z.infer<typeof AgentToServer>;

// ---- control plane → agent
export const ServerWelcome = z.object({
  type: z.literal('welcome'),
  agent: z.string(),
  heartbeatSeconds: z.number().int().positive(),
});
/** Open a data stream for a client connection of a session. */
export const ServerStreamOpen = z.object({
  type: z.literal('stream.open'),
  streamId: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  session: SessionInfo,
});
/** The session has ended: drop its credential, close its streams. */
export const ServerSessionEnd = z.object({
  type: z.literal('session.end'),
  session: z.string(),
  target: z.string(),
  reason: z.string(),
});
export const ServerLiveAnswer = z.object({
  type: z.literal('sessions.live'),
  requestId: z.string(),
  live: z.array(z.string()),
});
export const ServerPing = z.object({ type: z.literal('ping'), t: z.number() });
/**
 * The decision on a held statement. The agent MUST check `digest` against the statement it holds
 * and release it only on `approved` with a matching digest.
 */
export const ServerApprovalDecision = z.object({
  type: z.literal('approval.decision'),
  requestId: z.string(),
  decision: z.enum(['approved', 'denied', 'expired']),
  digest: z.string(),
  /** The control plane's id of the request (jit requests / jit approve show it). */
  request: z.string().optional(),
  /** Who approved (comma-separated when several did) or denied. */
  approver: z.string().optional(),
  reason: z.string().optional(),
  /**
   * approved: `statement` = release this statement once; `session-kind` = also release statements
   * with the same fingerprint in this session until `until` (ISO time).
   */
  scope: z
    .object({ type: z.enum(['statement', 'session-kind']), until: z.string().optional(), fingerprint: z.string().optional() })
    .optional(),
});
export type ServerApprovalDecision = z.infer<typeof ServerApprovalDecision>;

export const ServerToAgent = z.discriminatedUnion('type', [
  ServerWelcome,
  ServerStreamOpen,
  ServerSessionEnd,
  ServerLiveAnswer,
  ServerPing,
  ServerApprovalDecision,
]);
export type ServerToAgent = z.infer<typeof ServerToAgent>;
