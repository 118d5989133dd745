/**
 * The SSH command guard: judges an exec command line, or an interactive shell, against one
 * session's command guardrails (policy `guardrails` with `commands` / `interactive`).
 *
 * What a line runs comes from a real shell parser (shell.ts): every simple command in every
 * position, wrappers looked through, constant code handed to another shell parsed in turn.
 * Denylist mode (the default): each simple command is judged top-down (first matching guardrail
 * wins) — by its name, and, unless it is a program that never runs its arguments (`echo`, `grep`,
 * …), by any argument that names a listed command, since an unknown wrapper runs it. Allowlist
 * mode: a command runs only when an allow rule lists it by name; everything else is refused or
 * held. The line's verdict is the most severe of its commands.
 *
 * Conservative by design (MUST): when the line cannot be parsed, nests too deep, a command's name
 * is not known until run time (`$CMD`, a glob, a substitution in command position, a shell reading
 * a script or a pipe), or a construct decides at run time what runs (function and alias
 * definitions, traps, sourcing, code on an interpreter's command line or input — see shell.ts),
 * the verdict is `block` under the rule `jit.unparsable` — but only when the session has a command
 * guardrail that blocks or needs approval, or is in allowlist mode; with none there is nothing to
 * enforce. A denylist is a seatbelt, not a sandbox: a script or program on the host can still run
 * anything the login may run (docs/ssh.md says what it cannot promise).
 */
import type { Guardrail } from '#shared/config/policy.js';
import { analyzeCommand, type SimpleCommand, WRAPPERS } from './shell.js';

export { analyzeCommand, loadShellParser, type SimpleCommand } from './shell.js';

export type CommandAction = 'allow' | 'block' | 'require-approval';

export interface CommandVerdict {
  action: CommandAction;
  /** The guardrail that decided, or `jit.unparsable` / `jit.not-allowlisted`. */
  rule?: string;
  message?: string;
  /** The simple command that decided, as words. */
  command?: string;
  reason: string;
}

/** Rule name reported when a command line cannot be judged. */
export const UNPARSABLE_RULE = 'jit.unparsable';
/** Rule name reported in allowlist mode for a command no rule lists. */
export const NOT_ALLOWLISTED_RULE = 'jit.not-allowlisted';

/** How a session's commands are judged: denylist (what no rule matches runs) or allowlist (only listed commands run). */
export interface CommandMode {
  mode: 'denylist' | 'allowlist';
  /** allowlist: what happens to a command no rule lists */
  otherwise: 'block' | 'require-approval';
}

export const DENYLIST: CommandMode = { mode: 'denylist', otherwise: 'block' };

const SEVERITY: Record<CommandAction, number> = { allow: 0, 'require-approval': 1, block: 2 };

/**
 * Programs that never run their arguments: an argument naming a blocked command is data to them
 * (`echo reboot`, `grep shutdown /etc`). Any other program's arguments are judged as commands too,
 * since an unknown wrapper (`chrt 1 reboot`, `script -c reboot`, `tar --to-command=reboot`) runs them.
 */
const DATA_ONLY = new Set([
  'echo',
  'printf',
  'grep',
  'egrep',
  'fgrep',
  'rg',
  'cat',
  'ls',
  'head',
  'tail',
  'wc',
  'man',
  'which',
  'whereis',
  'type',
  'test',
  '[',
  'stat',
  'file',
  'du',
  'df',
  'sort',
  'uniq',
  'cut',
  'tr',
  'journalctl',
  'true',
  'false',
  'id',
  'whoami',
  'hostname',
  'uname',
  'date',
  'uptime',
]);

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/** `/`, `//`, `/./` are the same directory to rm: compare paths in a canonical spelling. */
function canonicalPath(s: string): string {
  if (!s.startsWith('/')) return s;
  let p = s.replace(/\/+/g, '/').replace(/(\/\.)+(\/|$)/g, '/');
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

/** Short option letters present anywhere in the arguments (`-rf`, `-r -f` → r, f). */
function shortFlags(args: string[]): Set<string> {
  const s = new Set<string>();
  for (const a of args) if (/^-[A-Za-z]+$/.test(a)) for (const ch of a.slice(1)) s.add(ch);
  return s;
}

/** Long options some rules are written with short letters for. */
const LONG_TO_SHORT: Record<string, string> = { '--recursive': 'r', '--force': 'f', '--no-preserve-root': '' };

/**
 * Does a pattern (`name arg…`) match a simple command? The name matches the command's basename
 * (`*` is a wildcard there); every further pattern word must appear among the arguments, in any
 * order: a short-option cluster (`-rf`) needs each letter somewhere among the options, other
 * words match an argument literally (paths compared canonically: `//` is `/`; `/*` is the glob).
 */
export function commandMatches(pattern: string, cmd: SimpleCommand): boolean {
  const pw = pattern.trim().split(/\s+/).filter(Boolean);
  if (pw.length === 0 || cmd.words.length === 0) return false;
  if (!globToRegExp(pw[0]!).test(cmd.words[0]!)) return false;
  const args = cmd.words.slice(1);
  const flags = shortFlags(args);
  for (const a of args) {
    const short = LONG_TO_SHORT[a];
    if (short) flags.add(short);
  }
  for (const p of pw.slice(1)) {
    if (/^-[A-Za-z]+$/.test(p)) {
      if (![...p.slice(1)].every((ch) => flags.has(ch))) return false;
      continue;
    }
    const want = canonicalPath(p);
    if (!args.some((a) => canonicalPath(a) === want)) return false;
  }
  return true;
}

function enforcing(rules: readonly Guardrail[], kind: 'commands' | 'interactive'): boolean {
  return rules.some((g) => g.action !== 'allow' && (kind === 'commands' ? (g.match.commands?.length ?? 0) > 0 : g.match.interactive));
}

/** Argument tokens that could name a command an unknown program runs: split at separators and path slashes. */
function argumentTokens(cmd: SimpleCommand): { at: number; token: string }[] {
  const out: { at: number; token: string }[] = [];
  for (let i = 1; i < cmd.words.length; i++) {
    for (const t of cmd.words[i]!.split(/[\s=,;:|&!'"`()<>/\\]+/)) if (t) out.push({ at: i, token: t });
  }
  return out;
}

/** Does a rule pattern match this command — as its name, or (for programs that may run their arguments) as an argument? */
function ruleMatches(g: Guardrail, c: SimpleCommand, inArguments: boolean): boolean {
  for (const p of g.match.commands ?? []) {
    if (commandMatches(p, c)) return true;
    if (!inArguments) continue;
    const name = p.trim().split(/\s+/)[0] ?? '';
    for (const { at, token } of argumentTokens(c)) {
      if (!globToRegExp(name).test(token)) continue;
      const rest = [token, ...c.words.slice(at + 1)];
      if (commandMatches(p, { words: rest, opaque: false })) return true;
    }
  }
  return false;
}

/**
 * Verdict for an exec command line. `rules`: the session's command guardrails, in policy order.
 * Denylist: per simple command the first matching guardrail decides (its name, or an argument
 * naming a listed command for programs that may run their arguments); allowlist: a command must
 * match an allow rule by its name, else `mode.otherwise`. The line's verdict is the most severe.
 */
export function judgeCommand(line: string, rules: readonly Guardrail[], mode: CommandMode = DENYLIST): CommandVerdict {
  const commandRules = rules.filter((g) => (g.match.commands?.length ?? 0) > 0);
  const allowlist = mode.mode === 'allowlist';
  if (commandRules.length === 0 && !allowlist) return { action: 'allow', reason: 'no command guardrails' };
  const a = analyzeCommand(line);
  const strict = allowlist || enforcing(commandRules, 'commands');
  if (!a.ok) {
    return strict
      ? { action: 'block', rule: UNPARSABLE_RULE, message: 'the command cannot be judged safely', reason: `cannot parse: ${a.error}` }
      : { action: 'allow', reason: 'no enforcing command guardrails' };
  }
  if (a.unknowable && strict) {
    return {
      action: 'block',
      rule: UNPARSABLE_RULE,
      message: `the command cannot be judged: ${a.unknowable} decides at run time what runs`,
      reason: `unknowable: ${a.unknowable}`,
    };
  }
  let worst: CommandVerdict = { action: 'allow', reason: 'no guardrail matched' };
  for (const c of a.commands) {
    let v: CommandVerdict | undefined;
    if (c.opaque) {
      if (strict) {
        v = {
          action: 'block',
          rule: UNPARSABLE_RULE,
          message: 'the command runs code jit cannot see (a variable, glob or shell reading a pipe or a script)',
          command: c.words.join(' '),
          reason: 'opaque command',
        };
      }
    } else {
      const scanArgs = !allowlist && !DATA_ONLY.has(c.words[0]!) && !WRAPPERS[c.words[0]!];
      for (const g of commandRules) {
        if (!ruleMatches(g, c, scanArgs && g.action !== 'allow')) continue;
        v = { action: g.action, rule: g.name, command: c.words.join(' '), reason: `matches guardrail ${g.name}` };
        if (g.message !== undefined) v.message = g.message;
        break;
      }
      if (!v && allowlist) {
        v = {
          action: mode.otherwise,
          rule: NOT_ALLOWLISTED_RULE,
          message: `${c.words[0]} is not on this target's list of allowed commands`,
          command: c.words.join(' '),
          reason: 'not allowlisted',
        };
      }
    }
    if (v && SEVERITY[v.action] > SEVERITY[worst.action]) worst = v;
    if (worst.action === 'block') break;
  }
  return worst;
}

/** Verdict for an interactive shell (the first `interactive: true` guardrail decides). */
export function judgeShell(rules: readonly Guardrail[], mode: CommandMode = DENYLIST): CommandVerdict {
  for (const g of rules) {
    if (!g.match.interactive) continue;
    const v: CommandVerdict = { action: g.action, rule: g.name, reason: `matches guardrail ${g.name}` };
    if (g.message !== undefined) v.message = g.message;
    return v;
  }
  if (mode.mode === 'allowlist') {
    // an interactive shell runs whatever is typed: only an explicit interactive allow rule lets it in
    return {
      action: mode.otherwise,
      rule: NOT_ALLOWLISTED_RULE,
      message: "an interactive shell is not on this target's list of allowed commands",
      reason: 'allowlist mode: interactive shell not listed',
    };
  }
  return { action: 'allow', reason: 'no guardrail matched' };
}
