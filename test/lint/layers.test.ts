/**
 * The layer rules in biome.json are real: each planted import below is written to a file at that
 * path in a scratch tree that has the project's own biome.json, linted there, and must be refused
 * with the layer's message; the allowed ones must pass. `npm run lint` runs the same rules over the tree.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const biome = path.join(root, 'node_modules/.bin/biome');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'jit-layers-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;

function lint(file: string, source: string): { ok: boolean; output: string } {
  const dir = path.join(scratch, String(n++));
  mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
  copyFileSync(path.join(root, 'biome.json'), path.join(dir, 'biome.json'));
  writeFileSync(path.join(dir, file), source);
  const r = spawnSync(biome, ['lint', '--max-diagnostics=50', file], { cwd: dir, encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

const refused: [string, string, string][] = [
  ['src/protocol/postgres/probe.ts', "import { run } from '#cli/main.js';", 'src/protocol is pure engines over bytes'],
  ['src/protocol/postgres/probe.ts', "import { x } from '#agent/main.js';", 'src/protocol is pure engines over bytes'],
  ['src/protocol/postgres/probe.ts', "import net from 'node:net';", 'no sockets, no files'],
  ['src/protocol/ssh/probe.ts', "import { readFileSync } from 'node:fs';", 'no sockets, no files'],
  ['src/shared/contract/probe.ts', "import { judge } from '#protocol/postgres/guard.js';", 'imports nothing of ours'],
  ['src/cli/commands/probe.ts', "import { startServer } from '#control-plane/main.js';", '#dev/launch.js'],
  ['src/cli/commands/probe.ts', "const m = await import('#agent/main.js');", '#dev/launch.js'],
  ['src/control-plane/routes/probe.ts', "import { VERSION } from '#cli/main.js';", 'imports only #shared and #protocol'],
  ['agent/engines/probe.ts', "import { buildApp } from '#control-plane/app.js';", 'imports only #shared and #protocol'],
  ['agent/engines/probe.ts', "import { x } from '../../src/shared/log.js';", 'never with a relative path'],
  ['src/cli/commands/probe.ts', "import { x } from '../../shared/log.js';", 'never with a relative path'],
  ['src/cli/commands/probe.ts', "export { x } from '../../control-plane/app.js';", 'never with a relative path'],
];

const allowed: [string, string][] = [
  ['src/protocol/postgres/probe.ts', "import { JitError } from '#shared/errors/jit-error.js';"],
  ['agent/engines/probe.ts', "import { judge } from '#protocol/postgres/guard.js';"],
  ['agent/engines/ssh/probe.ts', "import { SshCa } from '../../credentials/ssh-ca.js';"],
  ['src/cli/commands/probe.ts', "const m = await import('#dev/launch.js');"],
  ['src/dev/probe.ts', "import { startAgent } from '#agent/main.js';"],
];

describe('layer rules (biome noRestrictedImports)', () => {
  it.each(refused)('%s: refuses %s', (file, line, message) => {
    const r = lint(file, `${line}\nexport const probe = 1;\n`);
    expect(r.ok).toBe(false);
    expect(r.output).toContain(message);
  });

  it.each(allowed)('%s: allows %s', (file, line) => {
    const r = lint(file, `${line}\nexport const probe = 1;\n`);
    expect(r.output).not.toContain('noRestrictedImports');
    expect(r.output).toContain('Checked 1 file');
  });
});
