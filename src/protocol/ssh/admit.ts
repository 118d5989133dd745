/**
 * The SSH gate: the one decision everything an SSH client asks for passes before the agent does
 * it, whichever way it arrives — a `jit ssh` request frame (exec, shell) or a channel or request
 * of the user's own OpenSSH client through ProxyCommand (exec, shell, subsystem, port forwarding,
 * X11, agent forwarding, remote forwarding). Pure: the engines (agent/engines/ssh/engine.ts for
 * frames, bridge.ts for ProxyCommand) say what was asked and carry out the answer.
 *
 * The order is fixed and written here only:
 *   1. judge    — exec and subsystem by the command guard (a subsystem's name is its command),
 *                 shell by the interactive rules, forwarding by policy (`allowForwarding`); X11,
 *                 agent and remote forwarding are never served (they would hand the host a way
 *                 back to the user's machine, outside every rule).
 *   2. policy   — `block` refuses: `command.blocked` is recorded first, then one stderr line.
 *   3. approval — `require-approval` holds until a human decides, bound to exactly the command
 *                 line (`approvalText`); anything but an approval refuses. The same for both ways in.
 *   4. audit    — nothing runs unless the recorder is connected (fail closed).
 *   5. run      — the caller records `*.started` and only then starts it.
 */
import type { SshSessionRules } from '#shared/contract/agent.js';
import { type CommandMode, type CommandVerdict, judgeCommand, judgeShell } from './guard.js';

/** What an SSH client asks for. */
export type SshAsk =
  | { kind: 'exec'; command: string }
  | { kind: 'shell' }
  | { kind: 'subsystem'; name: string }
  | { kind: 'port-forward'; host: string; port: number }
  | { kind: 'remote-forward'; request: string }
  | { kind: 'x11' }
  | { kind: 'agent-forward' };

/** What a human (or the hold's fail-closed path) decided. */
export type SshHoldDecision =
  | { approved: true; by?: string | undefined; request?: string | undefined; scope?: 'statement' | 'session-kind' | undefined }
  | { approved: false; reason: string; request?: string | undefined };

export interface SshGateHooks {
  /** Step 2's audit (and step 3's when not approved): `command.blocked`. */
  blocked(ask: SshAsk, verdict: CommandVerdict): void;
  /** Step 3: tell the user it waits, then wait for the decision on `approvalText(ask)`. */
  hold(ask: SshAsk, verdict: CommandVerdict): Promise<SshHoldDecision>;
  /** Step 4: false while audit events cannot reach the control plane. */
  recorderReady(): boolean;
}

export type SshOutcome =
  | { run: true; verdict: CommandVerdict; approved?: Extract<SshHoldDecision, { approved: true }> }
  /** `line`: the one stderr line the user gets (no newline). */
  | { run: false; verdict: CommandVerdict; line: string };

/** What the gate needs of a session's rules (the mode fields default to a denylist). */
export type AskRules = Pick<SshSessionRules, 'guardrails' | 'allowForwarding'> &
  Partial<Pick<SshSessionRules, 'commandMode' | 'unlisted' | 'forwardTo'>> & {
    /** Endpoints jit guards itself (the agent's database targets): never a forwarding destination. */
    guarded?: readonly { host: string; port: number }[];
  };

/**
 * A forwardTo pattern (`host:port`, `host:low-high`, `host:*`; `*` in the host is a wildcard)
 * against a destination. Hosts compare case-insensitively and without a trailing dot; an IPv6
 * literal is written in brackets (`[::1]:5432`).
 */
export function destinationMatches(pattern: string, host: string, port: number): boolean {
  const at = pattern.lastIndexOf(':');
  if (at <= 0) return false;
  const hp = normalHost(pattern.slice(0, at));
  const pp = pattern.slice(at + 1);
  const h = normalHost(host);
  const re = new RegExp(`^${hp.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
  if (!re.test(h)) return false;
  if (pp === '*') return true;
  const [lo, hi] = pp.split('-').map(Number);
  return hi === undefined ? port === lo : port >= lo! && port <= hi;
}

function normalHost(h: string): string {
  return h
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
}

const LOOPBACK = /^(localhost|127(\.\d+){3}|::1|0\.0\.0\.0|::)$/;

/** The same endpoint, or both a loopback address (they may name the same server). */
function sameEndpoint(g: { host: string; port: number }, a: { host: string; port: number }): boolean {
  if (g.port !== a.port) return false;
  const gh = normalHost(g.host);
  const ah = normalHost(a.host);
  return gh === ah || (LOOPBACK.test(gh) && LOOPBACK.test(ah));
}

/** Rule names of refusals no guardrail makes. */
export const SSH_BUILTIN_RULES = {
  forwarding: 'jit.forwarding',
  forwardDestination: 'jit.forward-destination',
  guardedDestination: 'jit.guarded-destination',
  x11: 'jit.x11',
  agentForwarding: 'jit.agent-forwarding',
  remoteForwarding: 'jit.remote-forwarding',
  recorder: 'jit.recorder',
} as const;

/** Step 1: the verdict for one ask, before any approval. */
export function judgeAsk(ask: SshAsk, rules: AskRules): CommandVerdict {
  const mode: CommandMode = { mode: rules.commandMode ?? 'denylist', otherwise: rules.unlisted ?? 'block' };
  switch (ask.kind) {
    case 'exec':
      return judgeCommand(ask.command, rules.guardrails, mode);
    case 'subsystem':
      return judgeCommand(ask.name, rules.guardrails, mode);
    case 'shell':
      return judgeShell(rules.guardrails, mode);
    case 'port-forward': {
      if (!rules.allowForwarding) return builtin(SSH_BUILTIN_RULES.forwarding, 'port forwarding is not allowed on this target');
      const dest = `${ask.host}:${ask.port}`;
      if (rules.guarded?.some((g) => sameEndpoint(g, ask))) {
        return builtin(SSH_BUILTIN_RULES.guardedDestination, `${dest} is a database jit guards: reach it with jit connect, not around it`);
      }
      if (!(rules.forwardTo ?? []).some((p) => destinationMatches(p, ask.host, ask.port))) {
        return builtin(SSH_BUILTIN_RULES.forwardDestination, `forwarding to ${dest} is not among the destinations policy allows`);
      }
      return { action: 'allow', reason: `policy allows forwarding to ${dest}` };
    }
    case 'remote-forward':
      return builtin(SSH_BUILTIN_RULES.remoteForwarding, 'remote port forwarding is not served by jit');
    case 'x11':
      return builtin(SSH_BUILTIN_RULES.x11, 'X11 forwarding is not served by jit');
    case 'agent-forward':
      return builtin(SSH_BUILTIN_RULES.agentForwarding, 'agent forwarding is not served by jit (the host would get to use your keys)');
  }
}

/** Run one ask through the gate. Synchronous unless it is held. */
export function admitSsh(ask: SshAsk, rules: AskRules, hooks: SshGateHooks): SshOutcome | Promise<SshOutcome> {
  const verdict = judgeAsk(ask, rules);
  if (verdict.action === 'block') {
    hooks.blocked(ask, verdict);
    return { run: false, verdict, line: blockedLine(verdict) };
  }
  if (verdict.action === 'require-approval' && holdable(ask)) {
    return hooks.hold(ask, verdict).then((d) => {
      if (!d.approved) {
        const denied = { ...verdict, reason: d.reason };
        hooks.blocked(ask, denied);
        return { run: false, verdict: denied, line: `jit: ${subject(verdict)} needs approval (rule ${verdict.rule}) and ${d.reason}` };
      }
      return afterPolicy(verdict, hooks, d);
    });
  }
  if (verdict.action === 'require-approval') {
    hooks.blocked(ask, verdict);
    return { run: false, verdict, line: blockedLine(verdict) };
  }
  return afterPolicy(verdict, hooks);
}

/** What an approver is shown, and what the approval's digest binds: exactly what will run. */
export function approvalText(ask: SshAsk): string {
  if (ask.kind === 'exec') return ask.command;
  if (ask.kind === 'subsystem') return `<subsystem ${ask.name}>`;
  return SHELL_APPROVAL_TEXT;
}

/** What an approver is shown for an interactive shell (it has no command line). */
export const SHELL_APPROVAL_TEXT = '<interactive shell>';

/** The approval request's kind for an ask. */
export function approvalKind(ask: SshAsk): 'command' | 'shell' {
  return ask.kind === 'shell' ? 'shell' : 'command';
}

/** The one line a user waiting for approval is shown. */
export function waitingLine(ask: SshAsk, v: CommandVerdict, approvers: string[]): string {
  const shown = approvalText(ask)
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .slice(0, 200);
  return `jit: waiting for approval of: ${shown} (rule ${v.rule}${approvers.length ? `; approvers: ${approvers.join(', ')}` : ''})`;
}

/** How an ask appears in audit events (`command.blocked`, `*.started`). */
export function askData(ask: SshAsk): Record<string, unknown> {
  switch (ask.kind) {
    case 'exec':
      return { command: ask.command };
    case 'subsystem':
      return { subsystem: ask.name };
    case 'shell':
      return { interactive: true };
    case 'port-forward':
      return { forward: { host: ask.host, port: ask.port } };
    case 'remote-forward':
      return { remoteForward: ask.request };
    case 'x11':
      return { x11: true };
    case 'agent-forward':
      return { agentForwarding: true };
  }
}

/** The one line a refused ask prints on stderr. */
export function blockedLine(v: CommandVerdict): string {
  return `jit: blocked by rule ${v.rule}: ${subject(v)}`;
}

function subject(v: CommandVerdict): string {
  return v.message ?? (v.command ? `\`${v.command.slice(0, 200)}\`` : 'interactive shell');
}

function holdable(ask: SshAsk): boolean {
  return ask.kind === 'exec' || ask.kind === 'shell' || ask.kind === 'subsystem';
}

function afterPolicy(verdict: CommandVerdict, hooks: SshGateHooks, approved?: Extract<SshHoldDecision, { approved: true }>): SshOutcome {
  if (!hooks.recorderReady()) {
    return {
      run: false,
      verdict: { action: 'block', rule: SSH_BUILTIN_RULES.recorder, reason: 'recorder down' },
      line: 'jit: cannot record this session right now (the agent lost its control plane); try again in a moment',
    };
  }
  return approved ? { run: true, verdict, approved } : { run: true, verdict };
}

function builtin(rule: string, message: string): CommandVerdict {
  return { action: 'block', rule, message, reason: message };
}
