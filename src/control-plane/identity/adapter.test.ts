import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { beforeEach, describe, expect, it } from 'vitest';
import { createAdapterFactory, migrateOidcStore, type OidcSchema } from './adapter.js';

describe('oidc storage adapter (SQLite)', () => {
  let db: Kysely<OidcSchema>;
  let now: number;
  let adapter: ReturnType<typeof createAdapterFactory>;

  beforeEach(async () => {
    db = new Kysely<OidcSchema>({ dialect: new SqliteDialect({ database: new Database(':memory:') }) });
    await migrateOidcStore(db);
    await migrateOidcStore(db); // idempotent: runs at every start
    now = 1_800_000_000_000;
    adapter = createAdapterFactory(db, () => now);
  });

  it('stores, finds, expires and consumes', async () => {
    const rt = adapter('RefreshToken');
    await rt.upsert('r1', { jti: 'r1', grantId: 'g1', scope: 'openid' }, 60);
    expect(await rt.find('r1')).toEqual({ jti: 'r1', grantId: 'g1', scope: 'openid' });
    expect(await adapter('AccessToken').find('r1')).toBeUndefined(); // models are separate
    await rt.consume('r1');
    expect((await rt.find('r1'))?.consumed).toBe(now / 1000);
    now += 61_000;
    expect(await rt.find('r1')).toBeUndefined();
  });

  it('finds device codes by user code and sessions by uid', async () => {
    await adapter('DeviceCode').upsert('d1', { userCode: 'ABCDEFGH', grantId: 'g1' }, 600);
    await adapter('Session').upsert('s1', { uid: 'u1', accountId: 'alice' }, 600);
    expect(await adapter('DeviceCode').findByUserCode('ABCDEFGH')).toMatchObject({ userCode: 'ABCDEFGH' });
    expect(await adapter('DeviceCode').findByUserCode('XXXXXXXX')).toBeUndefined();
    expect(await adapter('Session').findByUid('u1')).toMatchObject({ accountId: 'alice' });
  });

  it('upsert replaces the payload and clears nothing it should keep', async () => {
    const s = adapter('Session');
    await s.upsert('s1', { uid: 'u1', n: 1 }, 600);
    await s.upsert('s1', { uid: 'u2', n: 2 }, 600);
    expect(await s.findByUid('u1')).toBeUndefined();
    expect(await s.findByUid('u2')).toMatchObject({ n: 2 });
  });

  it('revokeByGrantId removes every token of that grant and nothing else', async () => {
    await adapter('RefreshToken').upsert('r1', { grantId: 'g1' }, 600);
    await adapter('DeviceCode').upsert('d1', { grantId: 'g1', userCode: 'AAAA' }, 600);
    await adapter('RefreshToken').upsert('r2', { grantId: 'g2' }, 600);
    await adapter('Grant').upsert('g1', { accountId: 'alice' }, 600);
    await adapter('RefreshToken').revokeByGrantId('g1');
    expect(await adapter('RefreshToken').find('r1')).toBeUndefined();
    expect(await adapter('DeviceCode').findByUserCode('AAAA')).toBeUndefined();
    expect(await adapter('RefreshToken').find('r2')).toBeDefined();
    await adapter('Grant').destroy('g1');
    expect(await adapter('Grant').find('g1')).toBeUndefined();
  });

  it('keeps rows without expiry', async () => {
    await adapter('Client').upsert('c1', { client_id: 'c1' });
    now += 10 * 365 * 86400_000;
    expect(await adapter('Client').find('c1')).toEqual({ client_id: 'c1' });
  });
});
