/**
 * The hold point for `require-approval` guardrails. The engine calls awaitApproval() before
 * forwarding a statement that needs approval and forwards it only on `approved: true`; the
 * approvals issue replaces the body with a real wait (bound to the exact statement text and
 * parameters). Until then every such statement is refused.
 */
import type { SessionInfo } from '../../../src/shared/contract/agent.js';

export interface ApprovalRequest {
  session: SessionInfo;
  target: string;
  stream: string;
  /** The statement text as the server would receive it. */
  sql: string;
  /** Bind parameters as recorded (masked), extended protocol only. */
  params?: string[];
  rule?: string;
  kind?: string;
}

export type ApprovalDecision = { approved: true; by?: string } | { approved: false; reason: string };

export type AwaitApproval = (req: ApprovalRequest) => Promise<ApprovalDecision>;

/** Wait for a decision on a statement that needs approval; today: refused (no workflow yet). */
export async function awaitApproval(_req: ApprovalRequest): Promise<ApprovalDecision> {
  return { approved: false, reason: 'approval workflow not available' };
}
