/**
 * What a shell command line will run, decided with a real shell parser (tree-sitter's bash grammar,
 * WebAssembly) instead of word splitting: every simple command in every position — lists,
 * pipelines, subshells, groups, if/while/for/case bodies, `$(…)`, backquotes, `<(…)`, arithmetic,
 * heredoc bodies that expand — with each word's value as the shell will see it (quotes and
 * backslashes removed, `$'\x72'` decoded) or marked dynamic when only the host knows it (variables,
 * globs, brace expansion, substitutions).
 *
 * Looked through: wrappers (`sudo`, `env`, `nohup`, `timeout`, `nice`, `xargs`, `find -exec`, …),
 * and code handed to another shell as a constant (`sh -c '…'`, `su -c`, `eval '…'`), which is parsed
 * in turn. Constructs whose effect cannot be known from the text are reported as `unknowable`, and
 * the guard refuses them whenever the session has any block or approval rule: function and alias
 * definitions, traps, `source`/`.`, `eval` of a value known only at run time, `enable`/`hash -p`
 * (they change what a name runs), `declare -f`/`export -f`, code on the standard input of a shell
 * or interpreter (a pipe, a heredoc, a here-string), and code given to an interpreter inline
 * (`python -c`, `perl -e`, `node -e`, an awk program that calls `system`, sed's `e`).
 *
 * Needs loadShellParser() once (agent start, tests); analysis is then synchronous.
 */
import { createRequire } from 'node:module';
import { Language, type Node, Parser } from 'web-tree-sitter';

export interface Word {
  text: string;
  dynamic: boolean;
}

/** One simple command: its words (name first); `opaque` when its name is unknown until run time. */
export interface SimpleCommand {
  words: string[];
  opaque: boolean;
  /** the argument words' dynamic flags, parallel to words (words[0] is the name) */
  dynamicArgs?: boolean[];
}

export type Analysis = { ok: true; commands: SimpleCommand[]; unknowable?: string } | { ok: false; error: string };

class Unparsable extends Error {}

const MAX_LINE = 64 * 1024;
const MAX_DEPTH = 6;

let parser: Parser | undefined;
let loading: Promise<void> | undefined;

/** Load the shell parser (WebAssembly). Idempotent; await once at start. */
export function loadShellParser(): Promise<void> {
  loading ??= (async () => {
    await Parser.init();
    const req = createRequire(import.meta.url);
    const lang = await Language.load(req.resolve('tree-sitter-bash/tree-sitter-bash.wasm'));
    const p = new Parser();
    p.setLanguage(lang);
    parser = p;
  })();
  return loading;
}

export const SHELLS = new Set([
  'sh',
  'bash',
  'dash',
  'zsh',
  'ksh',
  'mksh',
  'ash',
  'fish',
  'csh',
  'tcsh',
  'busybox-sh',
  'rbash',
  'yash',
  'posh',
]);

/** Interpreters: code on their command line (`-c`, `-e`, …) or their standard input cannot be judged. */
const INTERPRETERS: Record<string, string[]> = {
  python: ['-c'],
  python2: ['-c'],
  python3: ['-c'],
  perl: ['-e', '-E'],
  ruby: ['-e'],
  node: ['-e', '-p', '--eval', '--print'],
  nodejs: ['-e', '-p', '--eval', '--print'],
  deno: ['eval'],
  bun: ['-e', '--eval'],
  php: ['-r'],
  lua: ['-e'],
  luajit: ['-e'],
  tclsh: [],
  expect: ['-c'],
  Rscript: ['-e'],
  julia: ['-e'],
  pwsh: ['-c', '-Command', '-command'],
  osascript: ['-e'],
  irb: [],
  gdb: ['-ex', '--eval-command'],
  // schedulers read the commands they will run from their input
  at: [],
  batch: [],
};

/** Constructs that change what later words run, in ways the text does not show. */
const UNKNOWABLE_BUILTINS: Record<string, string> = {
  alias: 'an alias definition',
  trap: 'a trap',
  source: 'sourcing a file',
  '.': 'sourcing a file',
  enable: 'enabling or loading builtins',
  coproc: 'a coprocess',
};

/** Wrappers whose first non-option argument is the command they run. */
export const WRAPPERS: Record<string, { optsWithArg: Set<string>; skipFirst?: number }> = {
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
  env: { optsWithArg: new Set(['-u', '-C', '--unset', '--chdir']) },
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
  ltrace: { optsWithArg: new Set(['-e', '-o', '-p', '-s', '-u']) },
  busybox: { optsWithArg: new Set() },
  'systemd-run': { optsWithArg: new Set(['-u', '-p', '-E', '--unit', '--property', '--setenv', '--uid', '--gid']) },
  chrt: { optsWithArg: new Set(['-p']), skipFirst: 1 },
  taskset: { optsWithArg: new Set(['-p']), skipFirst: 1 },
  unshare: { optsWithArg: new Set(['--map-user', '--map-group', '--setuid', '--setgid', '-S', '-G', '-R', '-w']) },
  nsenter: { optsWithArg: new Set(['-t', '--target', '-S', '-G', '--setuid', '--setgid', '-r', '-w']) },
  setpriv: { optsWithArg: new Set(['--reuid', '--regid', '--groups', '--inh-caps', '--ambient-caps', '--bounding-set']) },
  prlimit: { optsWithArg: new Set(['-p', '--pid']) },
  capsh: { optsWithArg: new Set() },
  faketime: { optsWithArg: new Set(['-f']), skipFirst: 1 },
  firejail: { optsWithArg: new Set() },
  bwrap: { optsWithArg: new Set(['--bind', '--ro-bind', '--dev', '--proc', '--tmpfs', '--chdir', '--setenv']) },
  'start-stop-daemon': { optsWithArg: new Set(['-x', '--exec', '-u', '--user', '-n', '--name']) },
};

/** The command name as policy sees it: the basename (`/sbin/reboot` → `reboot`). */
export function commandName(word: string): string {
  const i = word.lastIndexOf('/');
  return i >= 0 ? word.slice(i + 1) : word;
}

// ---------------------------------------------------------------------------------------------
// words

const GLOB = /[*?[]/;
const BRACE = /\{[^}]*(,|\.\.)[^}]*\}/;

/** The value a word node has once the shell has expanded it, or dynamic. Nested code is walked. */
function wordOf(n: Node, w: Walker): Word {
  switch (n.type) {
    case 'word':
    case 'number': {
      const raw = n.text;
      return { text: unescapeWord(raw), dynamic: n.type === 'word' && (GLOB.test(stripEscaped(raw)) || BRACE.test(raw)) };
    }
    case 'raw_string':
      return { text: n.text.slice(1, -1), dynamic: false };
    case 'ansi_c_string': {
      const v = decodeAnsiC(n.text.slice(2, -1));
      return v === undefined ? { text: n.text, dynamic: true } : { text: v, dynamic: false };
    }
    case 'string': {
      let text = '';
      let dynamic = false;
      for (const c of n.namedChildren) {
        if (!c) continue;
        if (c.type === 'string_content') text += unescapeDouble(c.text);
        else {
          w.visit(c);
          dynamic = true;
        }
      }
      return { text, dynamic };
    }
    case 'translated_string':
      return { text: n.text, dynamic: true };
    case 'concatenation': {
      let text = '';
      let dynamic = false;
      for (const c of n.namedChildren) {
        if (!c) continue;
        const x = wordOf(c, w);
        text += x.text;
        dynamic ||= x.dynamic;
      }
      // `{a,b}` is split by the grammar into words: a brace expansion is dynamic
      if (BRACE.test(n.text)) dynamic = true;
      return { text, dynamic };
    }
    default:
      // $x, ${x}, $(…), `…`, <(…), $((…)), …: walk what runs, the value is the host's
      w.visit(n);
      return { text: n.text, dynamic: true };
  }
}

function stripEscaped(s: string): string {
  return s.replace(/\\./g, '');
}

function unescapeWord(s: string): string {
  return s.replace(/\\(\n|.)/g, (_, c: string) => (c === '\n' ? '' : c));
}

function unescapeDouble(s: string): string {
  return s.replace(/\\([$`"\\\n])/g, (_, c: string) => (c === '\n' ? '' : c));
}

function decodeAnsiC(s: string): string | undefined {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const d = s[++i];
    if (d === undefined) return undefined;
    const simple: Record<string, string> = {
      n: '\n',
      t: '\t',
      r: '\r',
      a: '\x07',
      b: '\b',
      e: '\x1b',
      E: '\x1b',
      f: '\f',
      v: '\v',
      '\\': '\\',
      "'": "'",
      '"': '"',
      '?': '?',
    };
    if (simple[d] !== undefined) out += simple[d];
    else if (d === 'x') {
      const m = /^[0-9a-fA-F]{1,2}/.exec(s.slice(i + 1));
      if (!m) return undefined;
      out += String.fromCharCode(Number.parseInt(m[0], 16));
      i += m[0].length;
    } else if (d === 'u' || d === 'U') {
      const m = new RegExp(`^[0-9a-fA-F]{1,${d === 'u' ? 4 : 8}}`).exec(s.slice(i + 1));
      if (!m) return undefined;
      out += String.fromCodePoint(Number.parseInt(m[0], 16));
      i += m[0].length;
    } else if (/[0-7]/.test(d)) {
      const m = /^[0-7]{1,3}/.exec(s.slice(i));
      out += String.fromCharCode(Number.parseInt(m![0], 8));
      i += m![0].length - 1;
    } else return undefined;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the walk

class Walker {
  readonly commands: SimpleCommand[] = [];
  unknowable: string | undefined;

  constructor(readonly depth: number) {}

  cannotKnow(why: string): void {
    this.unknowable ??= why;
  }

  /** Walk any node: commands found anywhere below are collected. */
  visit(n: Node, stdin: Stdin = 'terminal'): void {
    switch (n.type) {
      case 'comment':
        return;
      case 'command':
        this.command(n, stdin);
        return;
      case 'function_definition':
        this.cannotKnow('a function definition');
        return;
      case 'declaration_command': {
        const words = n.namedChildren.filter((c): c is Node => c !== null);
        if (words.some((c) => c.type === 'word' && /^-[a-zA-Z]*f/.test(c.text))) this.cannotKnow('a function exported or declared');
        for (const c of words) this.visit(c);
        return;
      }
      case 'pipeline': {
        const parts = n.namedChildren.filter((c): c is Node => c !== null);
        for (let i = 0; i < parts.length; i++) this.visit(parts[i]!, i === 0 ? stdin : 'piped');
        return;
      }
      case 'redirected_statement': {
        const redirects = n.childrenForFieldName('redirect').filter((c): c is Node => c !== null);
        let input = stdin;
        for (const r of redirects) {
          if (r.type === 'heredoc_redirect' || r.type === 'herestring_redirect') input = 'text';
          this.visit(r);
        }
        const body = n.childForFieldName('body');
        if (body) this.visit(body, input);
        return;
      }
      case 'heredoc_redirect':
      case 'herestring_redirect':
      case 'file_redirect':
        // a redirection's target is a file, not a command; what it expands still runs
        for (const c of n.namedChildren)
          if (c && c.type !== 'word' && c.type !== 'heredoc_start' && c.type !== 'heredoc_end') this.visit(c);
        return;
      default:
        for (const c of n.namedChildren) if (c) this.visit(c, stdin);
    }
  }

  private command(n: Node, stdin: Stdin): void {
    const words: Word[] = [];
    let input = stdin;
    for (const c of n.namedChildren) {
      if (!c) continue;
      if (c.type === 'variable_assignment') {
        const v = c.childForFieldName('value');
        if (v) wordOf(v, this);
      } else if (c.type === 'command_name') {
        const inner = c.namedChildren[0];
        if (inner) words.push(wordOf(inner, this));
      } else if (c.type === 'heredoc_redirect' || c.type === 'herestring_redirect' || c.type === 'file_redirect') {
        if (c.type !== 'file_redirect') input = 'text';
        this.visit(c);
      } else words.push(wordOf(c, this));
    }
    if (words.length === 0) return; // assignments / redirections only
    simple(words, input, this);
  }
}

type Stdin = 'terminal' | 'piped' | 'text';

function simple(words: Word[], stdin: Stdin, w: Walker): void {
  for (let hops = 0; words.length > 0 && hops < 16; hops++) {
    const first = words[0]!;
    if (first.dynamic) {
      w.commands.push({ words: words.map((x) => x.text), opaque: true });
      return;
    }
    const name = commandName(first.text);
    const args = words.slice(1);
    const push = (ws: string[]) => w.commands.push({ words: ws, opaque: false, dynamicArgs: [false, ...args.map((a) => a.dynamic)] });
    if (UNKNOWABLE_BUILTINS[name]) {
      w.cannotKnow(UNKNOWABLE_BUILTINS[name]!);
      push([name, ...args.map((a) => a.text)]);
      return;
    }
    if (name === 'hash' && args.some((a) => a.text === '-p')) w.cannotKnow('hash -p changes what a name runs');
    if (name === 'crontab' && !args.every((a) => a.text === '-l' || a.text === '-u' || /^[a-z_][a-z0-9_-]*$/.test(a.text))) {
      w.cannotKnow('a crontab installs commands that run later');
    }
    if (SHELLS.has(name) || (name === 'busybox' && args[0] && SHELLS.has(args[0].text))) {
      const a = name === 'busybox' ? args.slice(1) : args;
      const c = a.findIndex((x) => !x.dynamic && /^-[A-Za-z]*c[A-Za-z]*$/.test(x.text));
      if (c >= 0) {
        const code = a[c + 1];
        if (!code || code.dynamic) throw new Unparsable('shell -c with code known only at run time');
        push([name, '-c']);
        nested(code.text, w);
        return;
      }
      if (stdin !== 'terminal') w.cannotKnow(`code on the standard input of ${name}`);
      // a shell without -c runs a script file or reads code from its input: opaque
      w.commands.push({ words: [name, ...a.map((x) => x.text)], opaque: true });
      return;
    }
    const interp = INTERPRETERS[name] ?? (/^python3\.\d+$/.test(name) ? ['-c'] : undefined);
    if (interp) {
      const inline = args.some((a) => interp.includes(a.text) || interp.some((f) => f.startsWith('--') && a.text.startsWith(`${f}=`)));
      // at/batch take a time, not a script: their commands come from their input unless -f names a file
      const script = name === 'at' || name === 'batch' ? args.some((a) => a.text === '-f') : args.some((a) => !a.text.startsWith('-'));
      if (inline) w.cannotKnow(`code given to ${name} on its command line`);
      // without a script it reads code from its input: a pipe, a heredoc, or the client's own stdin
      else if (!script) w.cannotKnow(`code on the standard input of ${name}`);
      push([name, ...args.map((a) => a.text)]);
      return;
    }
    if (/^[gmn]?awk$/.test(name)) {
      const program = args.find((a) => !a.text.startsWith('-'));
      if (program && (program.dynamic || /\bsystem\s*\(|\|\s*getline|\|&|print[^;]*\|/.test(program.text)))
        w.cannotKnow(`an ${name} program that runs commands`);
    }
    if (name === 'sed' && args.some((a) => /\/[a-zA-Z0-9]*e[a-zA-Z0-9]*\s*($|;|\})|(^|[;\n{]\s*)e(\s|$)/.test(a.text))) {
      w.cannotKnow("sed's e command runs its text");
    }
    if (name === 'eval') {
      if (args.some((x) => x.dynamic)) throw new Unparsable('eval of a value known only at run time');
      push(['eval']);
      nested(args.map((x) => x.text).join(' '), w);
      return;
    }
    if (name === 'su' || name === 'runuser') {
      const c = args.findIndex((x) => x.text === '-c' || x.text === '--command');
      if (c >= 0) {
        const code = args[c + 1];
        if (!code || code.dynamic) throw new Unparsable('su -c with code known only at run time');
        push([name, '-c']);
        nested(code.text, w);
        return;
      }
      if (name === 'su') {
        push([name, ...args.map((x) => x.text)]);
        return;
      }
    }
    if (name === 'env') {
      // env -S 'cmd args' splits its argument into the command line it runs
      const s = args.findIndex(
        (x) => x.text === '-S' || x.text === '--split-string' || x.text.startsWith('--split-string=') || /^-[a-zA-Z]*S/.test(x.text),
      );
      if (s >= 0) {
        const a = args[s]!;
        const inline = a.text.startsWith('--split-string=')
          ? a.text.slice(15)
          : /^-[a-zA-Z]*S./.test(a.text)
            ? a.text.slice(a.text.indexOf('S') + 1)
            : undefined;
        const code = inline !== undefined ? { text: inline, dynamic: a.dynamic } : args[s + 1];
        if (!code || code.dynamic) throw new Unparsable('env -S with a value known only at run time');
        push(['env', '-S']);
        nested([code.text, ...args.slice(s + 2).map((x) => x.text)].join(' '), w);
        return;
      }
    }
    if (name === 'find') {
      const x = args.findIndex((a) => ['-exec', '-execdir', '-ok', '-okdir'].includes(a.text));
      push([name, ...args.map((a) => a.text)]);
      if (x >= 0)
        simple(
          args.slice(x + 1).filter((a) => a.text !== '{}' && a.text !== ';' && a.text !== '+'),
          'terminal',
          w,
        );
      return;
    }
    const wrapper = WRAPPERS[name];
    if (!wrapper) {
      push([name, ...args.map((x) => x.text)]);
      return;
    }
    // Record the wrapper itself too (a rule may name `sudo`), then look through it.
    push([name]);
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
  }
}

function nested(code: string, parent: Walker): void {
  const inner = analyzeAt(code, parent.depth + 1);
  parent.commands.push(...inner.commands);
  if (inner.unknowable) parent.cannotKnow(inner.unknowable);
}

function analyzeAt(line: string, depth: number): Walker {
  if (depth > MAX_DEPTH) throw new Unparsable('nested too deep');
  if (line.length > MAX_LINE) throw new Unparsable('command too long');
  if (line.includes('\0')) throw new Unparsable('NUL byte');
  if (!parser) throw new Unparsable('the shell parser is not loaded');
  const tree = parser.parse(line);
  if (!tree) throw new Unparsable('the shell parser gave no result');
  try {
    if (tree.rootNode.hasError) throw new Unparsable(syntaxError(tree.rootNode));
    const w = new Walker(depth);
    w.visit(tree.rootNode);
    return w;
  } finally {
    tree.delete();
  }
}

function syntaxError(root: Node): string {
  const bad = root.descendantsOfType(['ERROR'])[0];
  if (bad) return `syntax error near "${bad.text.slice(0, 20)}" (column ${bad.startPosition.column + 1})`;
  return 'syntax error (incomplete command)';
}

/** Split a command line into the simple commands it runs (exported for tests and audit). */
export function analyzeCommand(line: string): Analysis {
  try {
    const w = analyzeAt(line, 0);
    return w.unknowable ? { ok: true, commands: w.commands, unknowable: w.unknowable } : { ok: true, commands: w.commands };
  } catch (err) {
    if (err instanceof Unparsable) return { ok: false, error: err.message };
    if (err instanceof RangeError) return { ok: false, error: 'nested too deep' };
    throw err;
  }
}
