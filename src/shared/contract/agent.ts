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
import { z } from 'zod';
import { Guardrail, MaskRule } from '../config/policy.js';

export const AGENT_PROTOCOL_VERSION = 1;
/** Largest control message either side accepts. */
export const AGENT_MAX_CONTROL_MESSAGE = 256 * 1024;

const TargetDecl = z.object({
  name: z.string().min(1).max(128),
  type: z.enum(['postgres', 'ssh', 'tcp']),
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
});
export type InspectionRules = z.infer<typeof InspectionRules>;

export const SessionInfo = z.object({
  id: z.string().regex(/^[a-z0-9]{8,40}$/),
  user: z.string(),
  target: z.string(),
  database: z.string().optional(),
  /** Role(s) the session role becomes a member of (postgres), from policy. */
  grantRoles: z.array(z.string()).default([]),
  expiresAt: z.string(),
  localVerifier: ScramVerifier,
  /** Added in protocol 1 + capability `postgres.inspect`; absent = relay without inspection. */
  inspection: InspectionRules.optional(),
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
  event: z.string().regex(/^[a-z]+(-[a-z]+)*(\.[a-z-]+)+$/).max(64),
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

export const AgentToServer = z.discriminatedUnion('type', [
  AgentHello,
  AgentStreamFailed,
  AgentEvent,
  AgentLiveQuery,
  AgentPong,
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

export const ServerToAgent = z.discriminatedUnion('type', [
  ServerWelcome,
  ServerStreamOpen,
  ServerSessionEnd,
  ServerLiveAnswer,
  ServerPing,
]);
export type ServerToAgent = z.infer<typeof ServerToAgent>;
