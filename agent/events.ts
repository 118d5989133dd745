/**
 * Audit events the agent reports to the control plane. Never put secrets, passwords, tokens or
 * query text in `data`: it ends up in the audit log as is.
 */
export interface AgentEventInput {
  /** `noun.past-verb`, e.g. `credential.created` (must match the contract's event pattern). */
  event: string;
  session?: string;
  target?: string;
  outcome: 'success' | 'failure' | 'info';
  data?: Record<string, unknown>;
}

/** Where events go (the control channel queues them while disconnected). */
export type EmitEvent = (e: AgentEventInput) => void;
