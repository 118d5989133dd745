/**
 * Facts that cross a process boundary are defined once (src/shared/contract, src/shared/runtime,
 * src/protocol). This scan of every non-test source file in src/ and agent/ fails when one of them
 * is defined a second time — a copied id pattern, a hand-built role name, another Bearer parser,
 * another ErrorResponse builder, a JIT_* variable read beside the env table, another list of
 * target types or end reasons. The planted cases at the bottom prove each rule can fail.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

interface Fact {
  what: string;
  /** Where the fact lives (the one file allowed to define it). */
  home: string[];
  pattern: RegExp;
}

const FACTS: Fact[] = [
  { what: 'the session/request id pattern', home: ['src/shared/contract/ids.ts'], pattern: /\[a-z0-9\]\{20\}|\[a-z2-7\]/ },
  { what: 'the jit_ session role name', home: ['src/shared/contract/ids.ts'], pattern: /`jit_\$\{|'jit_' \+/ },
  { what: 'a Bearer header parser', home: ['src/shared/http/bearer.ts'], pattern: /\/\^?\s*Bearer(\s|\\s)|startsWith\(\s*['"`][Bb]earer / },
  {
    what: 'a PostgreSQL ErrorResponse builder',
    home: ['src/protocol/postgres/messages.ts'],
    pattern: /function \w*[eE]rrorResponse\s*\(|['"`][SV](FATAL|ERROR)\\0/,
  },
  {
    what: 'a JIT_* environment variable read',
    home: ['src/shared/runtime/env.ts'],
    pattern: /process\.env(\.JIT_|\[\s*['"`]JIT_)|\benv\s*(\.JIT_|\[\s*['"`]JIT_)/,
  },
  { what: 'the list of target types', home: ['src/shared/contract/engines.ts'], pattern: /z\.enum\(\[\s*'postgres'|'postgres' \| 'ssh'/ },
  {
    what: 'the wording of session end reasons',
    home: ['src/shared/contract/end-reasons.ts'],
    pattern: /^\s*'?(heartbeat-lost|agent-lost)'?\s*:\s*['"`]/m,
  },
];

/** Comment lines say what a fact is; they do not define it. */
function code(text: string): string {
  return text
    .split('\n')
    .map((l) => (/^\s*(\*|\/\/|\/\*)/.test(l) ? '' : l))
    .join('\n');
}

function violations(files: { path: string; text: string }[]): string[] {
  const out: string[] = [];
  for (const f of files) {
    const body = code(f.text);
    for (const fact of FACTS) {
      if (fact.home.includes(f.path)) continue;
      const m = fact.pattern.exec(body);
      if (m) {
        const line = body.slice(0, m.index).split('\n').length;
        out.push(`${f.path}:${line}: ${fact.what} is defined in ${fact.home.join(', ')}, not here (${m[0].trim()})`);
      }
    }
  }
  return out;
}

function sources(dir: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  for (const e of readdirSync(path.join(root, dir), { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith('.ts') || e.name.endsWith('.test.ts')) continue;
    const rel = path.relative(root, path.join(e.parentPath, e.name));
    out.push({ path: rel, text: readFileSync(path.join(root, rel), 'utf8') });
  }
  return out;
}

describe('cross-process facts are defined once', () => {
  it('no source file in src/ or agent/ defines one a second time', () => {
    const files = [...sources('src'), ...sources('agent')];
    expect(files.length).toBeGreaterThan(100);
    expect(violations(files)).toEqual([]);
  });

  const planted: [string, string, string][] = [
    ['agent/engines/probe.ts', 'const ok = /^[a-z0-9]{20}$/.test(id);', 'the session/request id pattern'],
    ['src/cli/commands/probe.ts', 'const user = `jit_${session.id}`;', 'the jit_ session role name'],
    ['src/control-plane/probe.ts', 'const m = /^Bearer (.+)$/.exec(h);', 'a Bearer header parser'],
    ['src/cli/relay/probe.ts', 'export function buildErrorResponse(f: Fields): Buffer {', 'a PostgreSQL ErrorResponse builder'],
    ['agent/probe.ts', "const fields = Buffer.from('SFATAL\\0VFATAL\\0');", 'a PostgreSQL ErrorResponse builder'],
    ['src/cli/auth/probe.ts', "const t = process.env['JIT_TOKEN'];", 'a JIT_* environment variable read'],
    ['src/cli/auth/probe.ts', 'const t = deps.env.JIT_TOKEN;', 'a JIT_* environment variable read'],
    ['src/shared/contract/probe.ts', "export const T = z.enum(['postgres', 'ssh']);", 'the list of target types'],
    ['src/cli/ssh/probe.ts', "const TEXT = {\n  'heartbeat-lost': 'the CLI stopped',\n};", 'the wording of session end reasons'],
  ];
  it.each(planted)('a second definition in %s is refused: %s', (file, text, what) => {
    const v = violations([{ path: file, text }]);
    expect(v).toHaveLength(1);
    expect(v[0]).toContain(`${file}:`);
    expect(v[0]).toContain(`${what} is defined in`);
  });

  it('the home of a fact may define it, and comments may name it', () => {
    expect(violations([{ path: 'src/shared/contract/ids.ts', text: 'export const ID_PATTERN = /^[a-z0-9]{20}$/;' }])).toEqual([]);
    expect(violations([{ path: 'agent/reaper.ts', text: ' * only names matching `^jit_[a-z0-9]{20}$` are looked at' }])).toEqual([]);
  });
});
