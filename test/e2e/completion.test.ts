/**
 * Shell completion from the built binary, loaded into real bash, zsh and fish: commands, flags,
 * subcommands and the target names the logged-in user may use (from the control plane, cached),
 * and silence when the server is unreachable.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USERS, startControlPlane, type ServerFixture } from '../helpers/control-plane.js';
import { cliLogin } from '../helpers/e2e-stack.js';
import { JIT_BIN, runJit } from '../helpers/jit-cli.js';
import { freePort } from '../helpers/postgres.js';

const run = promisify(execFile);
let cp: ServerFixture;
let home: string;
let binDir: string;

function shellEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: `${binDir}:${process.env['PATH']}`,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    JIT_KEYRING: 'file',
    NO_COLOR: '1',
    LANG: 'C.UTF-8',
    ...extra,
  };
}

async function sh(shell: string, args: string[], env: NodeJS.ProcessEnv = shellEnv()): Promise<string> {
  const r = await run(shell, args, { env, timeout: 20_000 });
  return r.stdout;
}

/** What bash completes for the words (the last one is being completed). */
async function bash(line: string[], env?: NodeJS.ProcessEnv): Promise<string[]> {
  const words = line.map((w) => `'${w}'`).join(' ');
  const out = await sh(
    'bash',
    ['-c', `source <(jit completion bash); COMP_WORDS=(${words}); COMP_CWORD=${line.length - 1}; _jit; printf '%s\\n' "\${COMPREPLY[@]}"`],
    env,
  );
  return out.split('\n').filter(Boolean).sort();
}

/** What zsh's function offers, with compadd/compdef shims printing what would be offered. */
async function zsh(line: string[]): Promise<string[]> {
  const words = line.map((w) => `'${w}'`).join(' ');
  const script = [
    'compdef() { :; }',
    'compadd() { while [[ $# -gt 0 && $1 != -- ]]; do shift; done; shift; print -l -- "$@"; }',
    'source <(jit completion zsh)',
    `words=(${words}); CURRENT=${line.length}`,
    '_jit',
  ].join('\n');
  const out = await sh('zsh', ['-f', '-c', script]);
  return out.split('\n').filter(Boolean).sort();
}

/** What fish completes for the command line (candidates only, without descriptions). */
async function fish(commandLine: string): Promise<string[]> {
  const out = await sh('fish', ['--no-config', '-c', `jit completion fish | source; complete -C '${commandLine}'`]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t')[0]!)
    .sort();
}

beforeAll(async () => {
  cp = await startControlPlane({
    policy: {
      targets: [
        { name: 'comp-db', type: 'postgres', agent: 'local', database: 'postgres' },
        { name: 'comp-web', type: 'ssh', agent: 'local' },
        { name: 'hidden-db', type: 'postgres', agent: 'local', database: 'postgres' },
      ],
      access: [{ name: 'eng', targets: ['comp-db', 'comp-web'], groups: ['engineers'], logins: ['deploy'] }],
    },
  });
  home = await cliLogin(cp.url, 'alice', USERS.find((u) => u.username === 'alice')!.password);
  binDir = mkdtempSync(path.join(os.tmpdir(), 'jit-bin-'));
  writeFileSync(path.join(binDir, 'jit'), `#!/bin/sh\nexec '${process.execPath}' '${JIT_BIN}' "$@"\n`);
  chmodSync(path.join(binDir, 'jit'), 0o755);
}, 120_000);

afterAll(async () => {
  await cp?.stop();
});

describe('bash', () => {
  it('completes commands, subcommands and flags', async () => {
    expect(await bash(['jit', 'con'])).toEqual(['connect']);
    expect(await bash(['jit', 'co'])).toEqual(['completion', 'connect']);
    expect(await bash(['jit', 'audit', 've'])).toEqual(['verify']);
    expect(await bash(['jit', 'exec', '--env'])).toEqual(['--env-prefix']);
    expect(await bash(['jit', 'connect', '--rea'])).toEqual(['--reason']);
    // Global flags everywhere.
    expect(await bash(['jit', 'targets', '--js'])).toEqual(['--json']);
  });

  it('completes the target names the user may use, from the control plane', async () => {
    expect(await bash(['jit', 'connect', ''])).toEqual(['comp-db', 'comp-web']);
    expect(await bash(['jit', 'exec', 'comp-d'])).toEqual(['comp-db']);
    expect(await bash(['jit', '--profile', 'default', 'ssh', 'comp-'])).toEqual(['comp-db', 'comp-web']);
    // Only the first argument is a target; a flag's value is not one.
    expect(await bash(['jit', 'connect', 'comp-db', ''])).toEqual([]);
    expect(await bash(['jit', 'connect', '--reason', ''])).toEqual([]);
  });

  it('caches the names for 60 s in $XDG_CACHE_HOME/jit/targets-<profile>.json', async () => {
    await bash(['jit', 'connect', '']);
    const file = path.join(home, '.cache', 'jit', 'targets-default.json');
    const cache = JSON.parse(readFileSync(file, 'utf8')) as { server: string; fetchedAt: number; targets: string[] };
    expect(cache).toMatchObject({ server: cp.url, targets: ['comp-db', 'comp-web'] });
    writeFileSync(file, JSON.stringify({ ...cache, targets: ['from-cache'] }));
    expect(await bash(['jit', 'connect', ''])).toEqual(['from-cache']);
    writeFileSync(file, JSON.stringify({ ...cache, fetchedAt: Date.now() - 61_000, targets: ['stale'] }));
    expect(await bash(['jit', 'connect', ''])).toEqual(['comp-db', 'comp-web']);
  });

  it('is silent and quick when the server cannot be reached', async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    expect(await bash(['jit', 'connect', ''], shellEnv({ JIT_SERVER: down }))).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5000);
    const r = await runJit(['__complete', 'targets'], { home, env: { JIT_SERVER: down, XDG_CACHE_HOME: path.join(home, 'other-cache') } });
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(existsSync(path.join(home, 'other-cache', 'jit', 'targets-default.json'))).toBe(false);
  });

  it('is silent when logged out', async () => {
    const r = await runJit(['__complete', 'targets'], { env: { JIT_SERVER: cp.url } });
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });
});

describe('zsh', () => {
  it('completes commands, flags and target names', async () => {
    expect(await zsh(['jit', 'con'])).toEqual(expect.arrayContaining(['connect']));
    expect(await zsh(['jit', 'audit', ''])).toEqual(['export', 'forwarding', 'key', 'report', 'verify']);
    expect(await zsh(['jit', 'exec', '--'])).toEqual(expect.arrayContaining(['--env-prefix', '--reason', '--json']));
    expect(await zsh(['jit', 'connect', ''])).toEqual(['comp-db', 'comp-web']);
    expect(await zsh(['jit', 'connect', 'comp-db', ''])).toEqual([]);
  });
});

describe('fish', () => {
  it('completes commands, flags and target names', async () => {
    expect(await fish('jit con')).toEqual(['connect']);
    expect(await fish('jit audit ve')).toEqual(['verify']);
    expect(await fish('jit exec --env')).toEqual(['--env-prefix']);
    expect(await fish('jit connect ')).toEqual(['comp-db', 'comp-web']);
    expect(await fish('jit --profile default exec comp-w')).toEqual(['comp-web']);
  });
});
