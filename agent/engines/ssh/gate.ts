/**
 * The agent's side of the SSH gate (src/protocol/ssh/admit.ts) for one session: how a refusal is
 * recorded, how a hold tells the user and waits for the control plane, whether the recorder is up.
 * Both ways in (jit ssh frames in engine.ts, ProxyCommand channels in bridge.ts) use these hooks,
 * so they cannot drift.
 */
import { approvalKind, approvalText, askData, type SshAsk, type SshGateHooks, waitingLine } from '#protocol/ssh/admit.js';
import type { SessionInfo } from '#shared/contract/agent.js';
import type { SshEngineDeps } from './engine.js';

export interface SshGateIo {
  /** One line to the user (stderr), no newline. */
  tell(line: string): void;
  /** Aborted when the user goes away: a hold stops waiting (and its request is cancelled). */
  gone: AbortSignal;
  streamId: string;
}

export function sshGateHooks(
  deps: Pick<SshEngineDeps, 'emit' | 'approve' | 'recorderReady'>,
  session: SessionInfo,
  io: SshGateIo,
): SshGateHooks {
  return {
    blocked: (ask, v) =>
      deps.emit({
        event: 'command.blocked',
        session: session.id,
        target: session.target,
        outcome: 'failure',
        data: { ...askData(ask), rule: v.rule, action: v.action, reason: v.reason },
      }),
    hold: async (ask: SshAsk, v) => {
      if (!deps.approve) return { approved: false, reason: 'no approval workflow is available on this agent' };
      const rule = session.ssh?.guardrails.find((g) => g.name === v.rule);
      const approvers = [...(rule?.approvers?.users ?? []), ...(rule?.approvers?.groups ?? []).map((g) => `group ${g}`)];
      io.tell(waitingLine(ask, v, approvers));
      // The approval is bound to exactly this text (params []): an approval of X never runs Y.
      return deps.approve({
        session,
        target: session.target,
        stream: io.streamId,
        sql: approvalText(ask),
        params: [],
        rule: v.rule,
        kind: approvalKind(ask),
        signal: io.gone,
      });
    },
    recorderReady: () => deps.recorderReady?.() ?? true,
  };
}
