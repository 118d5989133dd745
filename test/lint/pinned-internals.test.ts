/**
 * agent/engines/ssh/upstream.ts reaches ssh2's private protocol fields (there is no public API to
 * present a certificate on an existing connection). Such a dependency is pinned to one exact
 * version, and the installed one must be it: an upgrade is a deliberate change that re-reads those
 * internals, never a silent minor bump. upstream.ts itself refuses (fails closed) when the fields
 * are missing, and test/integration/ssh-engine.test.ts exercises them against a real sshd.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
const require = createRequire(path.join(root, 'package.json'));

describe('dependencies whose internals jit uses', () => {
  it('ssh2 is pinned exactly and installed at that version', () => {
    const spec = pkg.dependencies['ssh2'];
    expect(spec).toMatch(/^\d+\.\d+\.\d+$/);
    expect((require('ssh2/package.json') as { version: string }).version).toBe(spec);
  });
});
