/**
 * What the completion scripts know, read from the commander program itself so they never drift
 * from the real commands and flags.
 */
import type { Command, Option } from 'commander';

export interface OptionSpec {
  /** e.g. ['-r', '--reason'] */
  flags: string[];
  long?: string;
  short?: string;
  takesValue: boolean;
  /** Its value is a file name. */
  file: boolean;
  description: string;
}

export interface CommandSpec {
  name: string;
  description: string;
  options: OptionSpec[];
  subcommands: CommandSpec[];
  /** Its first argument is a target name (completed from the control plane). */
  takesTarget: boolean;
}

export interface CompletionSpec {
  globals: OptionSpec[];
  commands: CommandSpec[];
}

const FILE_VALUE = /file|path|dir|\.json|\.jsonl|\.ya?ml|\.pem/i;

function optionSpec(o: Option): OptionSpec {
  const flags = [o.short, o.long].filter((f): f is string => Boolean(f));
  const valueName = /[<[]([^>\]]+)[>\]]/.exec(o.flags)?.[1] ?? '';
  return {
    flags,
    ...(o.long ? { long: o.long } : {}),
    ...(o.short ? { short: o.short } : {}),
    takesValue: o.required || o.optional,
    file: (o.required || o.optional) && (FILE_VALUE.test(valueName) || /^--(config|file|out|key|cert)$/.test(o.long ?? '')),
    description: o.description,
  };
}

function isHidden(c: Command): boolean {
  return Boolean((c as unknown as { _hidden?: boolean })._hidden) || c.name() === 'help';
}

function commandSpec(c: Command): CommandSpec {
  return {
    name: c.name(),
    description: c.description(),
    options: c.options.filter((o) => !o.hidden).map(optionSpec),
    subcommands: c.commands.filter((s) => !isHidden(s)).map(commandSpec),
    takesTarget: c.registeredArguments[0]?.name() === 'target',
  };
}

/** The completion spec of a program: global options and visible commands. */
export function completionSpec(program: Command): CompletionSpec {
  const help = { flags: ['-h', '--help'], long: '--help', short: '-h', takesValue: false, file: false, description: 'display help' };
  return {
    globals: [...program.options.filter((o) => !o.hidden).map(optionSpec), help],
    commands: program.commands.filter((c) => !isHidden(c)).map(commandSpec),
  };
}
