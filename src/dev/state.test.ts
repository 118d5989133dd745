import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDevFolder, removeDevFolder, typablePassword } from './state.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'jit-dev-state-'));

describe('the jit dev folder', () => {
  it('creates secrets once, 0600 in a 0700 folder, and keeps them across runs', () => {
    const dir = path.join(tmp(), '.jit-dev');
    const first = openDevFolder(dir, (n) => Buffer.alloc(n, 7));
    expect(first.created).toBe(true);
    expect(first.users.map((u) => [u.username, u.groups])).toEqual([
      ['alice', ['engineers']],
      ['bob', ['engineers', 'jit-admins']],
    ]);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of ['state.json', 'dev-users.json']) expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    const again = openDevFolder(dir, () => {
      throw new Error('no new secrets on the second run');
    });
    expect(again.created).toBe(false);
    expect(again.users).toEqual(first.users);
    expect(again.state.pgSuperPassword).toBe(first.state.pgSuperPassword);
  });

  it('makes typable passwords without look-alike characters', () => {
    let i = 0;
    const pw = typablePassword((n) => Buffer.from(Array.from({ length: n }, () => i++ % 256)));
    expect(pw).toMatch(/^[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}-[a-hjkmnp-z2-9]{4}$/);
  });

  it('refuses to use or delete a folder that is not a jit dev folder', () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'precious.txt'), 'keep me');
    expect(() => openDevFolder(dir, (n) => Buffer.alloc(n))).toThrow(/not a jit dev folder/);
    expect(() => removeDevFolder(dir)).toThrow(/not a jit dev folder/);
    expect(readFileSync(path.join(dir, 'precious.txt'), 'utf8')).toBe('keep me');
  });

  it('says which file is broken instead of starting with half a state', () => {
    const dir = tmp();
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'state.json'), '{"version":1}');
    writeFileSync(path.join(dir, 'dev-users.json'), '[]');
    expect(() => openDevFolder(dir, (n) => Buffer.alloc(n))).toThrow(/state\.json: pgSuperPassword/);
  });
});
