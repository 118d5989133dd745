import { readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
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

/**
 * A configuration file others can change is not trusted: refused when it, or the directory it is in,
 * is writable by its group or by everyone (a directory with the sticky bit, like /tmp, protects
 * its files from others and is accepted). On platforms without POSIX modes nothing is checked.
 */
export function checkConfigFileSafe(file: string): void {
  if (process.platform === 'win32') return;
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch {
    return; // not there: the read reports it
  }
  const dir = dirname(file);
  const dst = statSync(dir);
  const loose = (st.mode & 0o022) !== 0 ? file : (dst.mode & 0o022) !== 0 && (dst.mode & 0o1000) === 0 ? dir : undefined;
  if (loose) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${file}: ${loose === file ? 'the file' : `its directory ${dir}`} can be changed by other users, so jit does not trust it`,
      hint: `chmod go-w ${loose}`,
    });
  }
}

export function loadYamlConfigFile<S extends z.ZodType>(path: string, schema: S): z.infer<S> {
  let text: string;
  checkConfigFileSafe(path);
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
