import { z } from 'zod';

/**
 * Why a session ended — recorded by the control plane, sent to the CLI and the agent, shown to
 * people. The list and the words live here only: the control plane's "session has ended" error,
 * jit connect's, jit exec's and jit ssh's end lines all read END_REASON_TEXT.
 */
export const EndReason = z.enum(['exit', 'killed', 'expired', 'heartbeat-lost', 'agent-lost', 'admin', 'revoked']);
export type EndReason = z.infer<typeof EndReason>;

/** The reason in words, completing "Session X ended: …". */
export const END_REASON_TEXT: Readonly<Record<EndReason, string>> = {
  exit: 'it was disconnected',
  killed: 'it was killed',
  expired: 'its time ran out',
  'heartbeat-lost': 'the jit server stopped hearing from the client that held it',
  'agent-lost': 'the agent serving the target went away',
  admin: 'an administrator ended it',
  revoked: 'access was revoked',
};

/** Words for a reason that may be missing or (from an older server) unknown. */
export function describeEndReason(reason: string | null | undefined): string {
  const parsed = EndReason.safeParse(reason);
  return parsed.success ? END_REASON_TEXT[parsed.data] : 'the server ended it';
}
