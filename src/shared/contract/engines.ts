/**
 * The engine registry: every target type jit serves, and what each one brings. A target type is
 * one protocol engine at the agent (agent/engines/registry.ts maps each type to its engine and
 * fails to compile when one is missing), one set of policy fields, and the CLI verbs that open a
 * session on it. Adding a protocol starts here; nothing else lists the types.
 *
 * There is no raw `tcp` type: every session is inspected at Layer 7, and bytes of an unknown
 * protocol cannot be judged, masked or recorded as statements. A policy that names one is
 * refused at load with a message that says so (see docs/policy.md, "Target types").
 */
import { z } from 'zod';

export interface EngineSpec {
  /** What a person calls it, with its article ("an SSH host"), in messages. */
  readonly title: string;
  /** CLI verbs that open a session on a target of this type. */
  readonly verbs: readonly ('connect' | 'exec' | 'ssh')[];
  /** Target fields in the policy file that only this type accepts. */
  readonly targetFields: readonly string[];
}

export const ENGINES = {
  postgres: {
    title: 'a PostgreSQL database',
    verbs: ['connect', 'exec'],
    targetFields: ['database', 'databases', 'statementTimeout', 'idleInTransactionTimeout'],
  },
  ssh: { title: 'an SSH host', verbs: ['ssh', 'exec'], targetFields: ['recordInput', 'commandMode', 'unlistedCommands'] },
} as const satisfies Record<string, EngineSpec>;

export type TargetTypeName = keyof typeof ENGINES;
export const TARGET_TYPES = Object.keys(ENGINES) as [TargetTypeName, ...TargetTypeName[]];

export function isTargetType(v: unknown): v is TargetTypeName {
  return typeof v === 'string' && Object.hasOwn(ENGINES, v);
}

/** Why a type is not served: one sentence for config errors. */
export function unsupportedTargetType(v: unknown): string {
  const known = TARGET_TYPES.join(', ');
  if (v === 'tcp') {
    return `type "tcp" is not supported: jit inspects every session at Layer 7 and a raw TCP target could not be judged or recorded; the types are ${known}`;
  }
  const shown = typeof v === 'string' ? `"${v.slice(0, 40)}"` : typeof v;
  return `unknown target type ${shown}: the types are ${known}`;
}

/** The target type field, wherever a type crosses a boundary (policy, agent hello, HTTP). */
export const TargetType = z.enum(TARGET_TYPES, { error: (iss) => unsupportedTargetType(iss.input) });

/** A target field set on a type that does not use it: the message, else undefined. */
export function misplacedTargetField(type: TargetTypeName, field: string): string | undefined {
  for (const [other, spec] of Object.entries(ENGINES) as [TargetTypeName, EngineSpec][]) {
    if (other !== type && spec.targetFields.includes(field) && !(ENGINES[type].targetFields as readonly string[]).includes(field)) {
      return `${field} applies to ${other} targets only, not to a ${type} target`;
    }
  }
  return undefined;
}

/** Whether `verb` opens a session on a target of `type`; the refusal text otherwise. */
export function verbRefusal(verb: EngineSpec['verbs'][number], target: string, type: TargetTypeName): string | undefined {
  if ((ENGINES[type].verbs as readonly string[]).includes(verb)) return undefined;
  const use = ENGINES[type].verbs.map((v) => `jit ${v}`).join(' or ');
  return `${target} is ${ENGINES[type].title}, which jit ${verb} does not open (use ${use})`;
}
