import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadYamlConfigFile } from './load.js';

const schema = z.object({ a: z.number() });

function file(dirMode: number, fileMode: number): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-cfg-'));
  const f = path.join(dir, 'config.yaml');
  writeFileSync(f, 'a: 1\n');
  chmodSync(f, fileMode);
  chmodSync(dir, dirMode);
  return f;
}

describe('config files are trusted only when others cannot change them', () => {
  it('reads a file only its owner can write', () => {
    expect(loadYamlConfigFile(file(0o755, 0o644), schema)).toEqual({ a: 1 });
    expect(loadYamlConfigFile(file(0o700, 0o600), schema)).toEqual({ a: 1 });
  });

  it('refuses a group- or world-writable file, and a file in such a directory', () => {
    expect(() => loadYamlConfigFile(file(0o755, 0o666), schema)).toThrow(/the file can be changed by other users/);
    const f = file(0o755, 0o664);
    expect(() => loadYamlConfigFile(f, schema)).toThrow(expect.objectContaining({ code: 'JIT_CONFIG_INVALID', hint: `chmod go-w ${f}` }));
    expect(() => loadYamlConfigFile(file(0o777, 0o644), schema)).toThrow(/its directory .* can be changed by other users/);
  });

  it('accepts a world-writable directory with the sticky bit (like /tmp): others cannot replace the file', () => {
    expect(loadYamlConfigFile(file(0o1777, 0o644), schema)).toEqual({ a: 1 });
  });
});
