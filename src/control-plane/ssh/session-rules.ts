/**
 * SSH sessions' rules, decided once at session start like postgres inspection rules: the login
 * (certificate principal) and the command guardrails for this user on this target. Stored in the
 * session row's `inspection` column as `{ "ssh": … }` and sent to the agent as SessionInfo.ssh.
 */
import type { Guardrail } from '#shared/config/policy.js';
import { type SessionInfo, SshSessionRules } from '#shared/contract/agent.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { AccessDecision, Caller, PolicyEngine } from '../policy/policy.js';

/**
 * The login and rules of a new SSH session. The login is the one asked for, or the first the
 * access rule allows; a login the rule does not list is refused (JIT_ACCESS_DENIED).
 */
export function sshSessionRules(
  policy: Pick<PolicyEngine, 'commandGuardrailsFor'>,
  who: Caller,
  decision: AccessDecision,
  requestedLogin: string | undefined,
): SshSessionRules {
  const logins = decision.rule.logins ?? [];
  const target = decision.target.name;
  if (logins.length === 0) {
    throw new JitError('JIT_ACCESS_DENIED', {
      message: `Access rule ${decision.rule.name} names no login for ${target}`,
      hint: 'an administrator lists the accounts under logins: in the access rule',
    });
  }
  const login = requestedLogin ?? logins[0]!;
  if (!logins.includes(login)) {
    throw new JitError('JIT_ACCESS_DENIED', {
      message: `You may not log in to ${target} as ${login}; policy allows ${logins.join(', ')}`,
      hint: `jit ssh ${target} --login ${logins[0]}`,
    });
  }
  const guardrails: Guardrail[] = policy.commandGuardrailsFor(who, target);
  return {
    login,
    principals: [login],
    allowForwarding: decision.rule.allowForwarding ?? false,
    forwardTo: decision.rule.forwardTo ?? [],
    guardrails,
    recordInput: decision.target.recordInput ?? false,
    commandMode: decision.target.commandMode ?? 'denylist',
    unlisted: decision.target.unlistedCommands ?? 'block',
  };
}

/** SessionInfo's rule field for a stored `inspection` column: `ssh` for ssh targets. */
export function sessionRulesField(targetType: string, stored: string): Pick<SessionInfo, 'inspection' | 'ssh'> {
  const parsed = JSON.parse(stored) as Record<string, unknown>;
  if (targetType === 'ssh') {
    const rules = SshSessionRules.safeParse(parsed['ssh']);
    // A row without valid rules gives the agent nothing to go on: it refuses (fail closed).
    return rules.success ? { ssh: rules.data } : {};
  }
  return { inspection: parsed as SessionInfo['inspection'] };
}
