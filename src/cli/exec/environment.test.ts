import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { Session } from '#shared/contract/http.js';
import { pgpassLine, sessionEnvironment, sshEnvironment, withoutCiSecrets } from './environment.js';

const session = { id: 'abcdefghij0123456789', target: 'prod-db', targetType: 'postgres' } as Session;
const url = 'postgresql://jit_abcdefghij0123456789:s%2Fcr%40t@127.0.0.1:5555/app?sslmode=disable';

describe('the child environment', () => {
  it('sets libpq variables and DATABASE_URL, dropping inherited PG* that could redirect the connection', () => {
    const env = sessionEnvironment({ PATH: '/bin', PGHOSTADDR: '10.0.0.1', PGSERVICE: 'x' }, session, url, 5555);
    expect(env).toEqual({
      PATH: '/bin',
      JIT_SESSION_ID: session.id,
      JIT_TARGET: 'prod-db',
      PGHOST: '127.0.0.1',
      PGPORT: '5555',
      PGUSER: 'jit_abcdefghij0123456789',
      PGPASSWORD: 's/cr@t',
      PGDATABASE: 'app',
      PGSSLMODE: 'disable',
      DATABASE_URL: url,
    });
  });

  it('by default the secret is only in the pgpass file: no PGPASSWORD, DATABASE_URL without a password but with passfile=', () => {
    const env = sessionEnvironment({ PATH: '/bin' }, session, url, 5555, '', { passfile: '/tmp/jit-exec-x/pgpass' });
    expect(env['PGPASSWORD']).toBeUndefined();
    expect(env['PGPASSFILE']).toBe('/tmp/jit-exec-x/pgpass');
    expect(JSON.stringify(env)).not.toContain('s%2Fcr%40t');
    expect(JSON.stringify(env)).not.toContain('s/cr@t');
    const u = new URL(env['DATABASE_URL']!);
    expect(u.password).toBe('');
    expect(u.username).toBe('jit_abcdefghij0123456789');
    expect(u.searchParams.get('passfile')).toBe('/tmp/jit-exec-x/pgpass');
    expect(u.searchParams.get('sslmode')).toBe('disable');
  });

  it('writes the pgpass line with its fields escaped', () => {
    expect(pgpassLine('postgresql://jit_a:p%3Aw%5Cd@127.0.0.1:5555/my%3Adb', 5555)).toBe('127.0.0.1:5555:my\\:db:jit_a:p\\:w\\\\d\n');
  });

  it('with a prefix, prefixes the names and leaves the inherited ones alone', () => {
    const env = sessionEnvironment({ PGHOST: 'elsewhere' }, session, url, 5555, 'SRC_');
    expect(env['PGHOST']).toBe('elsewhere');
    expect(env['SRC_PGHOST']).toBe('127.0.0.1');
    expect(env['SRC_DATABASE_URL']).toBe(url);
  });

  it("keeps jit's CI secrets from the child", () => {
    expect(withoutCiSecrets({ JIT_TOKEN: 'a', JIT_ID_TOKEN: 'b', JIT_CLIENT_SECRET: 'c', JIT_CLIENT_ID: 'd', HOME: '/h' })).toEqual({
      JIT_CLIENT_ID: 'd',
      HOME: '/h',
    });
  });

  it('builds an ssh command line whose ProxyCommand survives spaces and quotes in paths (parsed by a real sh)', () => {
    const env = sshEnvironment(
      {},
      'web-1',
      { node: '/opt/my node/node', script: "/it's/jit.js", server: 'https://jit.example', profile: 'default' },
      undefined,
    );
    const words = (line: string) =>
      execFileSync('sh', ['-c', `set -- ${line}; for a; do printf '%s\\0' "$a"; done`], { encoding: 'utf8' })
        .split('\0')
        .slice(0, -1);
    const argv = words(env['JIT_SSH_COMMAND']!);
    expect(argv.slice(0, 2)).toEqual(['ssh', '-o']);
    expect(argv[2]).toMatch(/^ProxyCommand=/);
    expect(argv.slice(3)).toEqual(['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR']);
    // ssh hands the ProxyCommand to a shell too (after expanding %r).
    expect(words(argv[2]!.slice('ProxyCommand='.length).replace('%r', 'deploy'))).toEqual([
      '/opt/my node/node',
      "/it's/jit.js",
      'ssh',
      '--stdio',
      '--login',
      'deploy',
      'web-1',
    ]);
    expect(env).toMatchObject({ JIT_SSH_TARGET: 'web-1', JIT_SERVER: 'https://jit.example' });
  });
});
