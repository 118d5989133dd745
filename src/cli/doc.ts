/** Renders the CLI reference from the commander program itself, so docs/cli/reference.md follows the code. */
import type { Command } from 'commander';
import { createSystemCtx } from '#shared/runtime/ctx.js';
import { JIT_ENV, type JitEnvName } from '#shared/runtime/env.js';
import { buildProgram } from './main.js';

export const CLI_GENERATED_BEGIN = '<!-- generated from the commander program by src/cli/doc.ts: do not edit below -->';

/** Commands a user sees in --help: not `help`, not hidden helpers such as `__complete`. */
function visible(c: Command): boolean {
  return c.name() !== 'help' && !(c as unknown as { _hidden?: boolean })._hidden;
}

function fullName(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

function usage(cmd: Command): string {
  const args = cmd.registeredArguments.map((a) =>
    a.required ? `<${a.name()}${a.variadic ? '…' : ''}>` : `[${a.name()}${a.variadic ? '…' : ''}]`,
  );
  return ['jit', fullName(cmd), cmd.options.length ? '[options]' : '', ...args].filter(Boolean).join(' ');
}

function section(cmd: Command, out: string[]): void {
  out.push('', `## jit ${fullName(cmd)}`, '', cmd.description(), '', '```', usage(cmd), '```');
  if (cmd.registeredArguments.length) {
    out.push('', '| argument | meaning |', '| --- | --- |');
    for (const a of cmd.registeredArguments) out.push(`| \`${a.name()}\` | ${a.description || ''} |`);
  }
  if (cmd.options.length) {
    out.push('', '| option | meaning | default |', '| --- | --- | --- |');
    for (const o of cmd.options) {
      const def = o.defaultValue === undefined ? '' : `\`${JSON.stringify(o.defaultValue)}\``;
      out.push(`| \`${o.flags}\` | ${o.description.replace(/\|/g, '\\|')} | ${def} |`);
    }
  }
  for (const sub of cmd.commands.filter(visible)) section(sub, out);
}

/** The generated part of docs/cli/reference.md. */
export function cliReference(): string {
  const program = buildProgram({ ctx: createSystemCtx(), globals: () => ({}) });
  const out: string[] = [CLI_GENERATED_BEGIN, '', '## Global options', '', '| option | meaning |', '| --- | --- |'];
  for (const o of program.options) out.push(`| \`${o.flags}\` | ${o.description} |`);
  out.push(
    '',
    '## Environment',
    '',
    'Every `JIT_*` variable jit reads (src/shared/runtime/env.ts). A flag wins over its variable. Variables marked secret are never logged and never passed to the command `jit exec` runs.',
    '',
    '| variable | meaning |',
    '| --- | --- |',
  );
  for (const name of Object.keys(JIT_ENV) as JitEnvName[]) {
    const v: { doc: string; secret?: true } = JIT_ENV[name];
    out.push(`| \`${name}\` | ${v.doc}${v.secret ? ' (secret)' : ''} |`);
  }
  for (const cmd of program.commands.filter(visible)) section(cmd, out);
  out.push('');
  return out.join('\n');
}
