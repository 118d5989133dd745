import { describe, expect, it } from 'vitest';
import { PG_BUILTIN_MAJOR } from '#protocol/postgres/pg-builtins.js';
import { serverVersionRefusal } from './postgres.js';

const v = (value: string) => serverVersionRefusal([{ name: 'server_version', value }]);

describe('the parser matches the server', () => {
  it('lets in the versions the parser knows', () => {
    expect(v(`${PG_BUILTIN_MAJOR}.4`)).toBeUndefined();
    expect(v('16.9 (Debian 16.9-1.pgdg120+1)')).toBeUndefined();
    expect(v('15.18')).toBeUndefined();
  });

  it('refuses a newer server, a pre-release of one, and a version it cannot read', () => {
    expect(v(`${PG_BUILTIN_MAJOR + 1}.0`)).toMatchObject({
      reason: 'server-version',
      fatal: { code: '0A000', message: expect.stringMatching(new RegExp(`PostgreSQL ${PG_BUILTIN_MAJOR + 1}, newer than`)) },
    });
    expect(v(`${PG_BUILTIN_MAJOR + 1}beta1`)?.fatal.message).toMatch(/newer than the SQL parser/);
    expect(v('')?.fatal.message).toMatch(/did not report a PostgreSQL version/);
    expect(serverVersionRefusal([])).toBeDefined();
  });
});
