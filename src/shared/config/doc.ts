/** Renders the configuration schemas as Markdown tables, so docs/configuration.md follows the code. */
import { z } from 'zod';
import { AgentConfig } from './agent.js';
import { Policy } from './policy.js';
import { ServerConfig } from './server.js';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  additionalProperties?: JsonSchema | boolean;
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return [...new Set(alts.map(typeOf))].join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  if (Array.isArray(s.type)) return s.type.join(' \\| ');
  return s.type ?? 'any';
}

function rows(s: JsonSchema, prefix: string, out: string[]): void {
  const props = s.properties ?? {};
  for (const [key, raw] of Object.entries(props)) {
    const p = raw.anyOf?.find((a) => a.properties) ?? raw;
    const name = `${prefix}${key}`;
    const req = s.required?.includes(key) && raw.default === undefined ? 'yes' : '';
    const def = raw.default === undefined ? '' : `\`${JSON.stringify(raw.default)}\``;
    const desc = (raw.description ?? p.description ?? '').replace(/\|/g, '\\|');
    out.push(`| \`${name}\` | ${typeOf(raw)} | ${req} | ${def} | ${desc} |`);
    if (p.properties) rows(p, `${name}.`, out);
    if (p.type === 'array' && p.items?.properties) rows(p.items, `${name}[].`, out);
    if (p.additionalProperties && typeof p.additionalProperties === 'object') {
      const ap = p.additionalProperties;
      const inner = ap.anyOf ?? ap.oneOf ?? [ap];
      for (const alt of inner) if (alt.properties) rows(alt, `${name}.<name>.`, out);
    }
  }
}

function table(schema: z.ZodType): string {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out = ['| key | type | required | default | meaning |', '| --- | --- | --- | --- | --- |'];
  rows(json, '', out);
  return out.join('\n');
}

export const GENERATED_BEGIN = '<!-- generated from src/shared/config by doc.ts: do not edit below -->';

/** The generated part of docs/configuration.md. */
export function configurationReference(): string {
  return [
    GENERATED_BEGIN,
    '',
    '## Server configuration (`jit server --config server.yaml`)',
    '',
    table(ServerConfig),
    '',
    '## Policy file (`policy:` in the server configuration)',
    '',
    table(Policy),
    '',
    '## Agent configuration (`jit agent --config agent.yaml`)',
    '',
    table(AgentConfig),
    '',
  ].join('\n');
}
