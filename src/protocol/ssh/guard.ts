/**
 * The SSH command guard: judges an exec command line, or an interactive shell, against one
 * session's command guardrails (policy `guardrails` with `commands` / `interactive`).
 *
 * A command line is split the way a POSIX shell would (shell-quote), into simple commands at
 * `; && || | & ( ) { }` and newlines; wrappers are looked through (`sudo`, `env`, `nohup`,
 * `timeout`, `xargs`, `exec`, …), and code handed to another shell is judged too: `sh -c '…'`,
 * `bash -c`, `su -c`, `eval …`, `$(…)` and backquotes. Each simple command is judged top-down
 * (first matching guardrail wins); the line's verdict is the most severe of them.
 *
 * Conservative by design (MUST): when the line cannot be parsed, nests too deep, or a command's
 * name is not known until run time (`$CMD`, a glob, a substitution in command position, a shell
 * reading code from a pipe), the verdict is `block` under the rule `jit.unparsable` — but only
 * when the session has a command guardrail that blocks or needs approval; with none there is
 * nothing to enforce. Guardrails are a seatbelt, not a sandbox: an interpreter (`python -c`,
 * `perl -e`) or a script on the host can still run anything the login may run.
 */
import { type ParseEntry, parse } from 'shell-quote';
import type { Guardrail } from '#shared/config/policy.js';

export type CommandAction = 'allow' | 'block' | 'require-approval';

export interface CommandVerdict {
  action: CommandAction;
  /** The guardrail that decided, or `jit.unparsable`. */
  rule?: string;
  message?: string;
  /** The simple command that decided, as words. */
  command?: string;
  reason: string;
}

/** Rule name reported when a command line cannot be judged. */
export const UNPARSABLE_RULE = 'jit.unparsable';

const SEVERITY: Record<CommandAction, number> = { allow: 0, 'require-approval': 1, block: 2 };
const MAX_LINE = 64 * 1024;
const MAX_DEPTH = 6;

type Word = { text: string; dynamic: boolean };
/** One simple command: its words (name first); `opaque` when its name is unknown until run time. */
export interface SimpleCommand {
  words: string[];
  opaque: boolean;
}

export type Analysis = { ok: true; commands: SimpleCommand[] } | { ok: false; error: string };

class Unparsable extends Error {}

const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'fish', 'csh', 'tcsh', 'busybox-sh', 'rbash']);
/** Wrappers whose first non-option argument is the command they run. */
const WRAPPERS: Record<string, { optsWithArg: Set<string>; skipFirst?: number }> = {
  sudo: {
    optsWithArg: new Set([
      '-u',
      '-g',
      '-C',
      '-D',
      '-h',
      '-p',
      '-r',
      '-t',
      '-U',
      '-T',
      '-R',
      '--user',
      '--group',
      '--host',
      '--prompt',
      '--chdir',
      '--chroot',
      '--close-from',
      '--other-user',
      '--role',
      '--type',
      '--command-timeout',
    ]),
  },
  doas: { optsWithArg: new Set(['-u', '-C']) },
  env: { optsWithArg: new Set(['-u', '-C', '-S', '--unset', '--chdir', '--split-string']) },
  nohup: { optsWithArg: new Set() },
  nice: { optsWithArg: new Set(['-n', '--adjustment']) },
  ionice: { optsWithArg: new Set(['-c', '-n', '-p', '-P', '-u', '--class', '--classdata']) },
  timeout: { optsWithArg: new Set(['-s', '-k', '--signal', '--kill-after']), skipFirst: 1 },
  time: { optsWithArg: new Set(['-f', '-o', '--format', '--output']) },
  exec: { optsWithArg: new Set(['-a']) },
  command: { optsWithArg: new Set() },
  builtin: { optsWithArg: new Set() },
  stdbuf: { optsWithArg: new Set(['-i', '-o', '-e']) },
  setsid: { optsWithArg: new Set() },
  xargs: {
    optsWithArg: new Set([
      '-a',
      '-d',
      '-E',
      '-e',
      '-I',
      '-i',
      '-L',
      '-l',
      '-n',
      '-P',
      '-s',
      '--arg-file',
      '--delimiter',
      '--max-args',
      '--max-procs',
    ]),
  },
  chroot: { optsWithArg: new Set(['--userspec', '--groups']), skipFirst: 1 },
  runuser: { optsWithArg: new Set(['-u', '-g', '-G', '--user', '--group']) },
  flock: { optsWithArg: new Set(['-w', '-E', '--timeout', '--conflict-exit-code']), skipFirst: 1 },
  watch: { optsWithArg: new Set(['-n', '-d', '--interval']) },
  strace: { optsWithArg: new Set(['-e', '-o', '-p', '-s', '-u']) },
  busybox: { optsWithArg: new Set() },
  'systemd-run': { optsWithArg: new Set(['-u', '-p', '-E', '--unit', '--property', '--setenv', '--uid', '--gid']) },
};

/** The command name as policy sees it: the basename (`/sbin/reboot` → `reboot`). */
function commandName(word: string): string {
  const i = word.lastIndexOf('/');
  return i >= 0 ? word.slice(i + 1) : word;
}

/**
 * Code inside `$(…)`, `<(…)`, `>(…)` and backquotes, wherever it appears (also inside quotes:
 * being conservative costs a false positive at worst). Unbalanced → Unparsable.
 */
function substitutions(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '\\') {
      i += 2;
      continue;
    }
    if (c === '`') {
      const end = line.indexOf('`', i + 1);
      if (end < 0) throw new Unparsable('unbalanced backquote');
      out.push(line.slice(i + 1, end));
      i = end + 1;
      continue;
    }
    if ((c === '$' || c === '<' || c === '>') && line[i + 1] === '(') {
      let depth = 1;
      let j = i + 2;
      for (; j < line.length && depth > 0; j++) {
        if (line[j] === '\\') j++;
        else if (line[j] === '(') depth++;
        else if (line[j] === ')') depth--;
      }
      if (depth !== 0) throw new Unparsable('unbalanced $(');
      // $((…)) is arithmetic, not a command; its inside is still judged (harmless words).
      out.push(line.slice(i + 2, j - 1));
      i = j;
      continue;
    }
    i++;
  }
  return out;
}

const SEPARATORS = new Set(['||', '&&', ';;', '|&', '&', ';', '(', ')', '|', '<(']);
const REDIRECTS = new Set(['<', '>', '>>', '>&']);

/** Quotes must balance (shell-quote would accept an unterminated one). */
function checkQuotes(line: string): void {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
    } else if (c === '\\') {
      i++;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    }
  }
  if (quote) throw new Unparsable('unterminated quote');
}

function tokenize(line: string): (Word | { op: string })[] {
  checkQuotes(line);
  // Newlines separate commands; shell-quote would join the lines. Replacing them everywhere also
  // splits quoted newlines — more commands to judge, never fewer.
  const flat = line.replace(/\r\n|\r|\n/g, ' ; ');
  let entries: ParseEntry[];
  try {
    entries = parse(flat, (key: string) => ({ op: 'var', key }) as unknown as string) as ParseEntry[];
  } catch (err) {
    throw new Unparsable((err as Error).message);
  }
  const out: (Word | { op: string })[] = [];
  for (const e of entries) {
    if (typeof e === 'string') out.push({ text: e, dynamic: false });
    else if ('comment' in e) continue;
    else if ('op' in e && e.op === 'glob') out.push({ text: (e as { pattern: string }).pattern, dynamic: true });
    else if ('op' in e && (e.op as string) === 'var') {
      // A variable expands to something only known on the host; merge into the previous word is
      // not possible here, so it is its own dynamic word.
      out.push({ text: '$', dynamic: true });
    } else out.push({ op: (e as { op: string }).op });
  }
  return out;
}

/** Split a line into simple commands, looking through wrappers and nested shells. */
function analyzeLine(line: string, depth: number, acc: SimpleCommand[]): void {
  if (depth > MAX_DEPTH) throw new Unparsable('nested too deep');
  if (line.length > MAX_LINE) throw new Unparsable('command too long');
  if (line.includes('\0')) throw new Unparsable('NUL byte');
  for (const inner of substitutions(line)) analyzeLine(inner, depth + 1, acc);
  let current: Word[] = [];
  const flush = () => {
    if (current.length) simple(current, depth, acc);
    current = [];
  };
  const tokens = tokenize(line);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if ('op' in t) {
      if (REDIRECTS.has(t.op)) {
        i++; // the redirection target is a file, not a command word
        continue;
      }
      if (SEPARATORS.has(t.op)) flush();
      continue;
    }
    if (
      current.length === 0 &&
      (t.text === '{' ||
        t.text === '}' ||
        t.text === '!' ||
        t.text === 'then' ||
        t.text === 'do' ||
        t.text === 'else' ||
        t.text === 'elif' ||
        t.text === 'if' ||
        t.text === 'while' ||
        t.text === 'until' ||
        t.text === 'fi' ||
        t.text === 'done')
    ) {
      continue;
    }
    // `2>file` / `>file` glued to the word: shell-quote splits the operator off; `2` stays a word
    // only as a redirection's fd, which the next token tells.
    current.push(t);
  }
  flush();
}

function simple(words: Word[], depth: number, acc: SimpleCommand[]): void {
  let i = 0;
  // Leading assignments: VAR=value cmd
  while (i < words.length && !words[i]!.dynamic && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]!.text)) i++;
  // An fd number before a redirection (`2>&1`) is left as a trailing word: harmless.
  for (let hops = 0; i < words.length && hops < 16; hops++) {
    const w = words[i]!;
    if (w.dynamic || w.text.includes('`') || w.text.includes('$(')) {
      acc.push({ words: words.slice(i).map((x) => x.text), opaque: true });
      return;
    }
    const name = commandName(w.text);
    const args = words.slice(i + 1);
    if (SHELLS.has(name) || (name === 'busybox' && args[0] && SHELLS.has(args[0].text))) {
      const a = name === 'busybox' ? args.slice(1) : args;
      const c = a.findIndex((x) => !x.dynamic && /^-[A-Za-z]*c[A-Za-z]*$/.test(x.text));
      if (c >= 0) {
        const code = a[c + 1];
        if (!code || code.dynamic) throw new Unparsable('shell -c with code known only at run time');
        acc.push({ words: [name, '-c'], opaque: false });
        analyzeLine(code.text, depth + 1, acc);
        return;
      }
      // A shell without -c runs a script file or reads code from stdin (`… | sh`): opaque.
      acc.push({ words: [name, ...a.map((x) => x.text)], opaque: true });
      return;
    }
    if (name === 'eval') {
      if (args.some((x) => x.dynamic)) throw new Unparsable('eval of a value known only at run time');
      acc.push({ words: ['eval'], opaque: false });
      analyzeLine(args.map((x) => x.text).join(' '), depth + 1, acc);
      return;
    }
    if (name === 'su' || name === 'runuser') {
      const c = args.findIndex((x) => x.text === '-c' || x.text === '--command');
      if (c >= 0) {
        const code = args[c + 1];
        if (!code || code.dynamic) throw new Unparsable('su -c with code known only at run time');
        acc.push({ words: [name, '-c'], opaque: false });
        analyzeLine(code.text, depth + 1, acc);
        return;
      }
      if (name === 'su') {
        acc.push({ words: [name, ...args.map((x) => x.text)], opaque: false });
        return;
      }
    }
    if (name === 'find') {
      // find … -exec cmd … ; — the command after -exec/-execdir/-ok runs.
      const x = args.findIndex((a) => ['-exec', '-execdir', '-ok', '-okdir'].includes(a.text));
      acc.push({ words: [name, ...args.map((a) => a.text)], opaque: false });
      if (x >= 0)
        simple(
          args.slice(x + 1).filter((a) => a.text !== '{}' && a.text !== ';' && a.text !== '+'),
          depth + 1,
          acc,
        );
      return;
    }
    const wrapper = WRAPPERS[name];
    if (!wrapper) {
      acc.push({ words: [name, ...args.map((x) => x.text)], opaque: false });
      return;
    }
    // Record the wrapper itself too (a rule may name `sudo`), then look through it.
    acc.push({ words: [name], opaque: false });
    let j = 0;
    let skip = wrapper.skipFirst ?? 0;
    while (j < args.length) {
      const a = args[j]!;
      if (a.dynamic) break;
      if (a.text === '--') {
        j++;
        break;
      }
      if (a.text.startsWith('-') && a.text.length > 1) {
        j += wrapper.optsWithArg.has(a.text) ? 2 : 1;
        continue;
      }
      if (name === 'env' && /^[A-Za-z_][A-Za-z0-9_]*=/.test(a.text)) {
        j++;
        continue;
      }
      if (skip > 0) {
        skip--;
        j++;
        continue;
      }
      break;
    }
    if (j >= args.length) return; // `sudo -l`, bare `env`: nothing more runs
    words = args.slice(j);
    i = 0;
  }
}

/** Split a command line into the simple commands it runs (exported for tests and audit). */
export function analyzeCommand(line: string): Analysis {
  const acc: SimpleCommand[] = [];
  try {
    analyzeLine(line, 0, acc);
  } catch (err) {
    if (err instanceof Unparsable) return { ok: false, error: err.message };
    throw err;
  }
  return { ok: true, commands: acc };
}

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

/** Verdict for an exec command line. `rules`: the session's command guardrails, in policy order. */
export function judgeCommand(line: string, rules: readonly Guardrail[]): CommandVerdict {
  const commandRules = rules.filter((g) => (g.match.commands?.length ?? 0) > 0);
  if (commandRules.length === 0) return { action: 'allow', reason: 'no command guardrails' };
  const a = analyzeCommand(line);
  const strict = enforcing(commandRules, 'commands');
  if (!a.ok) {
    return strict
      ? { action: 'block', rule: UNPARSABLE_RULE, message: 'the command cannot be judged safely', reason: `cannot parse: ${a.error}` }
      : { action: 'allow', reason: 'no enforcing command guardrails' };
  }
  let worst: CommandVerdict = { action: 'allow', reason: 'no guardrail matched' };
  for (const c of a.commands) {
    let v: CommandVerdict | undefined;
    if (c.opaque) {
      if (strict) {
        v = {
          action: 'block',
          rule: UNPARSABLE_RULE,
          message: 'the command runs code jit cannot see (a variable, glob or shell reading a pipe)',
          command: c.words.join(' '),
          reason: 'opaque command',
        };
      }
    } else {
      for (const g of commandRules) {
        if (!(g.match.commands ?? []).some((p) => commandMatches(p, c))) continue;
        v = { action: g.action, rule: g.name, command: c.words.join(' '), reason: `matches guardrail ${g.name}` };
        if (g.message !== undefined) v.message = g.message;
        break;
      }
    }
    if (v && SEVERITY[v.action] > SEVERITY[worst.action]) worst = v;
    if (worst.action === 'block') break;
  }
  return worst;
}

/** Verdict for an interactive shell (the first `interactive: true` guardrail decides). */
export function judgeShell(rules: readonly Guardrail[]): CommandVerdict {
  for (const g of rules) {
    if (!g.match.interactive) continue;
    const v: CommandVerdict = { action: g.action, rule: g.name, reason: `matches guardrail ${g.name}` };
    if (g.message !== undefined) v.message = g.message;
    return v;
  }
  return { action: 'allow', reason: 'no guardrail matched' };
}
