import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { z } from 'zod';
import { JitError } from '../errors/index.js';

type YamlModule = typeof import('yaml');
let yamlModule: YamlModule | undefined;
/** The yaml package, loaded on first use: most CLI commands never read a YAML file. */
export function yaml(): YamlModule {
  yamlModule ??= createRequire(import.meta.url)('yaml') as YamlModule;
  return yamlModule;
}

/**
 * Parse YAML text and validate it with a zod schema. Every error names the file, the line and
 * the field, so a person can fix it without guessing.
 */
export function parseYamlConfig<S extends z.ZodType>(text: string, schema: S, source: string): z.infer<S> {
  const { isNode, LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const pos = err.pos ? lineCounter.linePos(err.pos[0]) : undefined;
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${source}${pos ? `:${pos.line}` : ''}: not valid YAML (${err.code})`,
      hint: 'fix the YAML syntax at that line',
    });
  }
  const value = doc.toJS({ maxAliasCount: 50 }) ?? {};
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.map(String);
    let line: number | undefined;
    for (let n = path.length; n >= 0 && line === undefined; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) line = lineCounter.linePos(node.range[0]).line;
    }
    const field = path.length ? path.join('.') : '(top level)';
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${source}${line ? `:${line}` : ''}: ${field}: ${issue.message}`,
      hint: 'see docs/configuration.md for the valid keys',
    });
  }
  return result.data;
}

export function loadYamlConfigFile<S extends z.ZodType>(path: string, schema: S): z.infer<S> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `cannot read ${path}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`,
      hint: 'check the path given with --config',
      cause,
    });
  }
  return parseYamlConfig(text, schema, path);
}
