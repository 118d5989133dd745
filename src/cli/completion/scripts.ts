/**
 * Completion scripts for bash, zsh and fish. Commands and flags are written into the script (no
 * process per keystroke); target names come from `jit __complete targets`, which answers from a
 * short cache and stays silent when offline or logged out.
 */
import type { CompletionSpec, OptionSpec } from './spec.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

const WORD = /^[A-Za-z0-9_.:=-]+$/;

interface Flat {
  /** 'cmd' or 'cmd sub' */
  key: string;
  options: OptionSpec[];
}

function flatten(spec: CompletionSpec): Flat[] {
  const out: Flat[] = [];
  for (const c of spec.commands) {
    out.push({ key: c.name, options: c.options });
    for (const s of c.subcommands) out.push({ key: `${c.name} ${s.name}`, options: s.options });
  }
  return out;
}

const words = (list: string[]) => list.filter((w) => WORD.test(w)).join(' ');
const allOptions = (spec: CompletionSpec) => [...spec.globals, ...flatten(spec).flatMap((f) => f.options)];
const valued = (spec: CompletionSpec) => [
  ...new Set(
    allOptions(spec)
      .filter((o) => o.takesValue)
      .flatMap((o) => o.flags),
  ),
];
/** Flags whose value is a file name wherever they appear (`-c` is a file for server, a comment for approve). */
const fileValued = (spec: CompletionSpec) => {
  const all = allOptions(spec);
  const flags = new Set(all.filter((o) => o.file).flatMap((o) => o.flags));
  for (const o of all) if (!o.file) for (const f of o.flags) flags.delete(f);
  return [...flags];
};
const targetCommands = (spec: CompletionSpec) => spec.commands.filter((c) => c.takesTarget).map((c) => c.name);
const withSubs = (spec: CompletionSpec) => spec.commands.filter((c) => c.subcommands.length > 0);

/** The completion script for `shell`. */
export function completionScript(shell: Shell, spec: CompletionSpec): string {
  if (shell === 'bash') return bash(spec);
  if (shell === 'zsh') return zsh(spec);
  return fish(spec);
}

function bash(spec: CompletionSpec): string {
  const subsCases = withSubs(spec)
    .map((c) => `    ${c.name}) echo "${words(c.subcommands.map((s) => s.name))}" ;;`)
    .join('\n');
  const optCases = flatten(spec)
    .map((f) => `    "${f.key}") echo "${words(f.options.flatMap((o) => o.flags))}" ;;`)
    .join('\n');
  return `# jit completion for bash. Load it with:  source <(jit completion bash)
# or install it:  jit completion bash > /etc/bash_completion.d/jit
_jit_valued=" ${words(valued(spec))} "
_jit_files=" ${words(fileValued(spec))} "
_jit_target_cmds=" ${words(targetCommands(spec))} "
_jit_globals="${words(spec.globals.flatMap((o) => o.flags))}"
_jit_cmds="${words(spec.commands.map((c) => c.name))}"

_jit_subs() {
  case "$1" in
${subsCases}
  esac
}

_jit_opts() {
  case "$1" in
${optCases}
  esac
}

_jit() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" w i cmd="" sub="" npos=0 skip=0 dd=-1 subs
  local -a prof=()
  (( COMP_CWORD > 0 )) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
  for (( i = 1; i < COMP_CWORD; i++ )); do
    w="\${COMP_WORDS[i]}"
    if (( skip )); then skip=0; continue; fi
    if [[ $w == -- ]]; then dd=$i; break; fi
    if [[ $w == --profile ]]; then prof=(--profile "\${COMP_WORDS[i+1]}"); fi
    if [[ $w == -* ]]; then
      [[ $_jit_valued == *" $w "* ]] && skip=1
      continue
    fi
    subs=" $(_jit_subs "$cmd") "
    if [[ -z $cmd ]]; then cmd=$w
    elif [[ -z $sub && $subs == *" $w "* ]]; then sub=$w
    else (( npos++ )); fi
  done
  COMPREPLY=()
  if (( dd >= 0 )); then
    if (( COMP_CWORD == dd + 1 )); then COMPREPLY=( $(compgen -c -- "$cur") ); else COMPREPLY=( $(compgen -f -- "$cur") ); fi
    return 0
  fi
  if (( skip )); then
    [[ $_jit_files == *" $prev "* ]] && COMPREPLY=( $(compgen -f -- "$cur") )
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=( $(compgen -W "$(_jit_opts "$cmd\${sub:+ $sub}") $_jit_globals" -- "$cur") )
    return 0
  fi
  if [[ -z $cmd ]]; then
    COMPREPLY=( $(compgen -W "$_jit_cmds" -- "$cur") )
    return 0
  fi
  if [[ -z $sub && $npos -eq 0 ]]; then
    subs="$(_jit_subs "$cmd")"
    if [[ -n $subs ]]; then COMPREPLY=( $(compgen -W "$subs" -- "$cur") ); return 0; fi
    if [[ $_jit_target_cmds == *" $cmd "* ]]; then
      COMPREPLY=( $(compgen -W "$(command jit "\${prof[@]}" __complete targets 2>/dev/null)" -- "$cur") )
    fi
  fi
  return 0
}
complete -F _jit jit
`;
}

function zsh(spec: CompletionSpec): string {
  const subsCases = withSubs(spec)
    .map((c) => `    ${c.name}) print -r -- "${words(c.subcommands.map((s) => s.name))}" ;;`)
    .join('\n');
  const optCases = flatten(spec)
    .map((f) => `    "${f.key}") print -r -- "${words(f.options.flatMap((o) => o.flags))}" ;;`)
    .join('\n');
  return `#compdef jit
# jit completion for zsh. Load it with:  source <(jit completion zsh)
# or install it as _jit in a directory on $fpath (before compinit runs).
_jit_subs() {
  case "$1" in
${subsCases}
  esac
}

_jit_opts() {
  case "$1" in
${optCases}
  esac
}

_jit() {
  local valued=" ${words(valued(spec))} "
  local files=" ${words(fileValued(spec))} "
  local targetcmds=" ${words(targetCommands(spec))} "
  local globals="${words(spec.globals.flatMap((o) => o.flags))}"
  local cmds="${words(spec.commands.map((c) => c.name))}"
  local cur="\${words[CURRENT]}" prev="\${words[CURRENT-1]}" w cmd="" sub="" subs
  local -i i npos=0 skip=0 dd=0
  local -a prof
  for (( i = 2; i < CURRENT; i++ )); do
    w="\${words[i]}"
    if (( skip )); then skip=0; continue; fi
    if [[ $w == -- ]]; then dd=$i; break; fi
    if [[ $w == --profile ]]; then prof=(--profile "\${words[i+1]}"); fi
    if [[ $w == -* ]]; then
      [[ $valued == *" $w "* ]] && skip=1
      continue
    fi
    subs=" $(_jit_subs "$cmd") "
    if [[ -z $cmd ]]; then cmd=$w
    elif [[ -z $sub && $subs == *" $w "* ]]; then sub=$w
    else (( npos++ )); fi
  done
  if (( dd )); then
    if (( CURRENT == dd + 1 )); then _command_names -e; else _files; fi
    return
  fi
  if (( skip )); then
    [[ $files == *" $prev "* ]] && _files
    return
  fi
  if [[ $cur == -* ]]; then
    compadd -- \${=$(_jit_opts "$cmd\${sub:+ $sub}")} \${=globals}
    return
  fi
  if [[ -z $cmd ]]; then
    compadd -- \${=cmds}
    return
  fi
  if [[ -z $sub && $npos -eq 0 ]]; then
    subs="$(_jit_subs "$cmd")"
    if [[ -n $subs ]]; then compadd -- \${=subs}; return; fi
    if [[ $targetcmds == *" $cmd "* ]]; then
      compadd -- \${(f)"$(command jit $prof __complete targets 2>/dev/null)"}
    fi
  fi
}

if [[ "\${funcstack[1]}" == _jit ]]; then
  _jit "$@"
else
  compdef _jit jit
fi
`;
}

const fishQuote = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

function fishOption(condition: string, o: OptionSpec): string {
  const parts = ['complete -c jit', '-n', fishQuote(condition)];
  if (o.long && WORD.test(o.long)) parts.push('-l', o.long.replace(/^--/, ''));
  if (o.short && WORD.test(o.short)) parts.push('-s', o.short.replace(/^-/, ''));
  if (o.takesValue) parts.push(o.file ? '-r -F' : '-x');
  parts.push('-d', fishQuote(o.description.slice(0, 80)));
  return parts.join(' ');
}

function fish(spec: CompletionSpec): string {
  const lines: string[] = [];
  for (const c of spec.commands) {
    if (!WORD.test(c.name)) continue;
    lines.push(`complete -c jit -n '__jit_need_cmd' -a ${c.name} -d ${fishQuote(c.description.slice(0, 80))}`);
    for (const s of c.subcommands) {
      if (WORD.test(s.name))
        lines.push(`complete -c jit -n '__jit_need_sub ${c.name}' -a ${s.name} -d ${fishQuote(s.description.slice(0, 80))}`);
    }
    for (const o of c.options) lines.push(fishOption(`__jit_at ${c.name}`, o));
    for (const s of c.subcommands) for (const o of s.options) lines.push(fishOption(`__jit_at ${c.name} ${s.name}`, o));
  }
  for (const o of spec.globals) lines.push(fishOption('not __jit_after_dashdash', o));
  const subsCases = withSubs(spec)
    .map((c) => `        case ${c.name}\n            echo ${words(c.subcommands.map((s) => s.name))}`)
    .join('\n');
  return `# jit completion for fish. Load it with:  jit completion fish | source
# or install it:  jit completion fish > ~/.config/fish/completions/jit.fish
set -g __jit_valued ${words(valued(spec))}

function __jit_subs
    switch $argv[1]
${subsCases}
    end
end

# Prints "cmd|sub|positionals|after--|--profile value" for the words before the cursor.
function __jit_state
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l cmd ''
    set -l sub ''
    set -l npos 0
    set -l skip 0
    set -l dd 0
    set -l prof ''
    set -l next_is_prof 0
    for t in $tokens
        if test $skip -eq 1
            set skip 0
            test $next_is_prof -eq 1; and set prof $t
            set next_is_prof 0
            continue
        end
        if test "$t" = '--'
            set dd 1
            break
        end
        if string match -q -- '-*' $t
            if contains -- $t $__jit_valued
                set skip 1
                test "$t" = '--profile'; and set next_is_prof 1
            end
            continue
        end
        if test -z "$cmd"
            set cmd $t
        else if test -z "$sub"; and contains -- $t (string split ' ' -- (__jit_subs $cmd))
            set sub $t
        else
            set npos (math $npos + 1)
        end
    end
    echo "$cmd|$sub|$npos|$dd|$prof"
end

function __jit_need_cmd
    set -l s (string split '|' -- (__jit_state))
    test -z "$s[1]"
end

function __jit_need_sub
    set -l s (string split '|' -- (__jit_state))
    test "$s[1]" = "$argv[1]"; and test -z "$s[2]"; and test "$s[3]" = 0; and test "$s[4]" = 0
end

function __jit_at
    set -l s (string split '|' -- (__jit_state))
    set -l want_sub ''
    set -q argv[2]; and set want_sub $argv[2]
    test "$s[1]" = "$argv[1]"; and test "$s[2]" = "$want_sub"; and test "$s[4]" = 0
end

function __jit_after_dashdash
    set -l s (string split '|' -- (__jit_state))
    test "$s[4]" = 1
end

function __jit_need_target
    set -l s (string split '|' -- (__jit_state))
    contains -- "$s[1]" ${words(targetCommands(spec))}; and test -z "$s[2]"; and test "$s[3]" = 0; and test "$s[4]" = 0
end

function __jit_targets
    set -l s (string split '|' -- (__jit_state))
    if test -n "$s[5]"
        command jit --profile $s[5] __complete targets 2>/dev/null
    else
        command jit __complete targets 2>/dev/null
    end
end

complete -c jit -f
complete -c jit -n '__jit_need_target' -a '(__jit_targets)' -d 'target'
complete -c jit -n '__jit_after_dashdash' -F
${lines.join('\n')}
`;
}
