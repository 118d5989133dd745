import { mkdtempSync, writeFileSync, utimesSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSystemCtx } from '#shared/runtime/ctx.js';
import { Auth, type Refresher } from './auth.js';
import { createTokenStore, type StoredTokens, tokenPaths, ensurePrivateDir } from './token-store.js';
import { withFileLock } from './lock.js';

const SERVER = 'http://127.0.0.1:8443';
const ctx = createSystemCtx();

function tokens(accessToken: string, expiresAt: number, refreshToken = 'rt-0'): StoredTokens {
  return { accessToken, refreshToken, expiresAt, issuer: `${SERVER}/oidc`, clientId: 'jit-cli', audience: SERVER };
}

function setup() {
  const configDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'jit-auth-')), 'jit');
  const store = () => createTokenStore({ env: { JIT_KEYRING: 'file' }, configDir, profile: 'default', server: SERVER, warn: () => {} });
  const auth = (refresh: Refresher) => new Auth({ ctx, store: store(), configDir, profile: 'default', server: SERVER, refresh });
  return { configDir, store, auth };
}

describe('Auth.getAccessToken', () => {
  it('returns the cached token without refreshing while more than 60 s remain', async () => {
    const t = setup();
    await t.store().set(tokens('at-cached', ctx.clock.now() + 120_000));
    let calls = 0;
    const token = await t
      .auth(async (x) => {
        calls++;
        return x;
      })
      .getAccessToken();
    expect([token, calls]).toEqual(['at-cached', 0]);
  });

  it('no tokens → JIT_AUTH_REQUIRED; expired without refresh token → JIT_AUTH_EXPIRED', async () => {
    const t = setup();
    await expect(t.auth(async (x) => x).getAccessToken()).rejects.toMatchObject({ code: 'JIT_AUTH_REQUIRED' });
    const { refreshToken: _, ...noRefresh } = tokens('at-old', 0);
    await t.store().set(noRefresh);
    await expect(t.auth(async (x) => x).getAccessToken()).rejects.toMatchObject({ code: 'JIT_AUTH_EXPIRED' });
  });

  it('two concurrent refreshers (separate Auth instances: only the lock file is shared, as between processes) → one refresh, rotated token stored', async () => {
    const t = setup();
    await t.store().set(tokens('at-old', ctx.clock.now() + 10_000));
    const used: string[] = [];
    const refresher: Refresher = async (old) => {
      used.push(old.refreshToken!);
      await new Promise((r) => setTimeout(r, 150));
      return tokens(`at-new-${used.length}`, ctx.clock.now() + 300_000, `rt-${used.length}`);
    };
    const results = await Promise.all([t.auth(refresher).getAccessToken(), t.auth(refresher).getAccessToken()]);
    expect(results).toEqual(['at-new-1', 'at-new-1']);
    expect(used).toEqual(['rt-0']);
    expect((await t.store().get())?.refreshToken).toBe('rt-1');
  });

  it('a server-rejected token is refreshed even if it looks valid, but only once', async () => {
    const t = setup();
    await t.store().set(tokens('at-revoked', ctx.clock.now() + 600_000));
    let calls = 0;
    const auth = t.auth(async (old) => {
      calls++;
      return { ...old, accessToken: 'at-fresh' };
    });
    expect(await auth.getAccessToken({ rejected: 'at-revoked' })).toBe('at-fresh');
    expect(await auth.getAccessToken({ rejected: 'at-revoked' })).toBe('at-fresh');
    expect(calls).toBe(1);
  });
});

describe('withFileLock', () => {
  it('breaks a lock left behind by a crashed process once it is stale', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-lock-'));
    const lock = path.join(dir, 'x.lock');
    writeFileSync(lock, 'crashed');
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    expect(await withFileLock(lock, async () => 'ran', { clock: ctx.clock, staleMs: 30_000 })).toBe('ran');
    expect(existsSync(lock)).toBe(false);
  });

  it('waits for a fresh lock and times out with a clear error', async () => {
    const { paths } = { paths: tokenPaths(mkdtempSync(path.join(os.tmpdir(), 'jit-lock-')), 'p', SERVER) };
    ensurePrivateDir(paths.dir);
    writeFileSync(paths.lock, 'held');
    await expect(withFileLock(paths.lock, async () => 1, { clock: ctx.clock, staleMs: 30_000, timeoutMs: 200 })).rejects.toThrow(
      /timed out waiting for lock/,
    );
  });
});
