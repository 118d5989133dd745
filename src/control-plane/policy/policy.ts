/**
 * Access decisions from the policy file. Deny by default: a target is usable only through an
 * access rule that names the caller (by username or by a group from the token).
 */
import type { AccessRule, ApprovalRule, Guardrail, MaskRule, Policy, PolicyTarget } from '#shared/config/policy.js';
import { isCommandGuardrail } from '#shared/config/policy.js';
import type { InspectionRules } from '#shared/contract/agent.js';
import { JitError } from '#shared/errors/jit-error.js';

export interface Caller {
  username: string;
  groups: string[];
}

export interface AccessDecision {
  target: PolicyTarget;
  rule: AccessRule;
  grantRoles: string[];
  maxDurationSeconds: number;
}

function ruleMatches(rule: AccessRule, caller: Caller, target: string): boolean {
  const targetOk = rule.targets.includes('*') || rule.targets.includes(target);
  const whoOk = rule.users.includes(caller.username) || rule.groups.some((g) => caller.groups.includes(g));
  return targetOk && whoOk;
}

export class PolicyEngine {
  constructor(
    private policy: Policy,
    private readonly globalMaxSeconds: number,
  ) {}

  /** Swap in a newly loaded policy (open sessions keep the decision they were made with). */
  replace(policy: Policy): void {
    this.policy = policy;
  }

  target(name: string): PolicyTarget | undefined {
    return this.policy.targets.find((t) => t.name === name);
  }

  /** Targets the caller may use, each with its decision. */
  visibleTargets(caller: Caller): AccessDecision[] {
    const out: AccessDecision[] = [];
    for (const t of this.policy.targets) {
      const d = this.tryDecide(caller, t.name);
      if (d) out.push(d);
    }
    return out;
  }

  /**
   * The Layer 7 rules that apply to this caller on this target, in policy order. A rule with no
   * users and no groups applies to everyone.
   */
  inspectionFor(caller: Caller, targetName: string): InspectionRules {
    const applies = (r: Guardrail | MaskRule) =>
      (r.targets.includes('*') || r.targets.includes(targetName)) &&
      ((r.users.length === 0 && r.groups.length === 0) ||
        r.users.includes(caller.username) ||
        r.groups.some((g) => caller.groups.includes(g)));
    return {
      // SSH command guardrails never reach a postgres session (a rule without SQL conditions matches every statement).
      guardrails: this.policy.guardrails.filter((g) => applies(g) && !isCommandGuardrail(g)),
      masking: this.policy.masking.filter(applies),
      maskedComputation: this.policy.maskedComputation,
      newerServer: this.policy.newerServer,
    };
  }

  /**
   * The approvals rule for this caller on this target (first match; a rule with no users and no
   * groups applies to everyone), or undefined when sessions need no approval.
   */
  approvalRuleFor(caller: Caller, targetName: string): ApprovalRule | undefined {
    return this.policy.approvals.find(
      (r) =>
        (r.targets.includes('*') || r.targets.includes(targetName)) &&
        ((r.users.length === 0 && r.groups.length === 0) ||
          r.users.includes(caller.username) ||
          r.groups.some((g) => caller.groups.includes(g))),
    );
  }

  /** The longest session anyone may have (server config). */
  get maxSessionSeconds(): number {
    return this.globalMaxSeconds;
  }

  /** The SSH command guardrails (commands / interactive) for this caller on this target, in policy order. */
  commandGuardrailsFor(caller: Caller, targetName: string): Guardrail[] {
    return this.policy.guardrails.filter(
      (g) =>
        isCommandGuardrail(g) &&
        (g.targets.includes('*') || g.targets.includes(targetName)) &&
        ((g.users.length === 0 && g.groups.length === 0) ||
          g.users.includes(caller.username) ||
          g.groups.some((x) => caller.groups.includes(x))),
    );
  }

  /** Targets served by an agent (the agent may only declare these). */
  targetsOfAgent(agent: string): PolicyTarget[] {
    return this.policy.targets.filter((t) => t.agent === agent);
  }

  /**
   * Decide whether caller may open a session to target. Unknown targets and targets the caller
   * has no rule for get the same answer, so names of targets cannot be probed.
   */
  decide(caller: Caller, targetName: string): AccessDecision {
    const d = this.tryDecide(caller, targetName);
    if (!d) {
      throw new JitError('JIT_TARGET_NOT_FOUND', {
        message: `No target named "${targetName.slice(0, 128)}" that you may use`,
      });
    }
    return d;
  }

  private tryDecide(caller: Caller, targetName: string): AccessDecision | undefined {
    const target = this.target(targetName);
    if (!target) return undefined;
    // First matching rule wins, so the policy file reads top-down like a firewall.
    const rule = this.policy.access.find((r) => ruleMatches(r, caller, targetName));
    if (!rule) return undefined;
    const limits = [this.globalMaxSeconds, target.maxDuration, rule.maxDuration].filter((x): x is number => typeof x === 'number');
    return { target, rule, grantRoles: rule.grantRoles, maxDurationSeconds: Math.min(...limits) };
  }
}
