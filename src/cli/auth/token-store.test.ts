import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createTokenStore, type KeyringEntry, type StoredTokens, tokenPaths } from './token-store.js';

const TOKENS: StoredTokens = {
  accessToken: 'at-secret',
  refreshToken: 'rt-secret',
  expiresAt: 1_900_000_000_000,
  issuer: 'http://127.0.0.1:8443/oidc',
  clientId: 'jit-cli',
  audience: 'http://127.0.0.1:8443',
  claims: { sub: 'u1', username: 'alice' },
};

function setup(env: Record<string, string>, openEntry?: () => Promise<KeyringEntry>, profile = 'default') {
  const configDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'jit-tokens-')), 'jit');
  const warnings: string[] = [];
  const make = () =>
    createTokenStore({
      env,
      configDir,
      profile,
      server: 'http://127.0.0.1:8443',
      warn: (l) => warnings.push(l),
      ...(openEntry ? { openEntry } : {}),
    });
  return { configDir, warnings, make, paths: tokenPaths(configDir, profile, 'http://127.0.0.1:8443') };
}

const brokenKeychain = async (): Promise<KeyringEntry> => {
  throw new Error("Couldn't access platform storage: AccessDenied");
};

function memoryKeychain() {
  const data = new Map<string, string>();
  return {
    data,
    open: async (): Promise<KeyringEntry> => ({
      getPassword: () => data.get('k') ?? null,
      setPassword: (p) => void data.set('k', p),
      deletePassword: () => data.delete('k'),
    }),
  };
}

describe('token store, file backend', () => {
  it('JIT_KEYRING=file: round trip in a 0600 file inside a 0700 directory, then delete', async () => {
    const t = setup({ JIT_KEYRING: 'file' }, brokenKeychain);
    const store = t.make();
    expect(await store.get()).toBeNull();
    await store.set(TOKENS);
    expect(store.backend).toBe('file');
    expect(await t.make().get()).toEqual(TOKENS);
    expect(statSync(t.paths.file).mode & 0o777).toBe(0o600);
    expect(statSync(t.paths.dir).mode & 0o777).toBe(0o700);
    // No temp files left behind next to the token file.
    expect(readdirSync(t.paths.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(await store.delete()).toBe(true);
    expect(await store.get()).toBeNull();
    expect(await store.delete()).toBe(false);
    // Forced file mode is the user's choice: no warning.
    expect(t.warnings).toEqual([]);
  });

  it('falls back to the file when the keychain throws, and warns once across processes', async () => {
    const t = setup({}, brokenKeychain);
    await t.make().set(TOKENS);
    expect(await t.make().get()).toEqual(TOKENS);
    await t.make().delete();
    await t.make().set(TOKENS);
    expect(t.warnings).toHaveLength(1);
    expect(t.warnings[0]).toMatch(
      /^! No OS keychain is available here; jit keeps its tokens in .*tokens \(files readable only by you\)\.$/,
    );
    expect(statSync(t.paths.file).mode & 0o777).toBe(0o600);
  });

  it('a corrupt token file reads as "not logged in"', async () => {
    const t = setup({ JIT_KEYRING: 'file' });
    await t.make().set(TOKENS);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(t.paths.file, '{"accessToken":');
    expect(await t.make().get()).toBeNull();
  });
});

describe('token store, keychain backend', () => {
  it('stores the JSON blob in the keychain and never in a file', async () => {
    const kc = memoryKeychain();
    const t = setup({}, kc.open);
    const store = t.make();
    await store.set(TOKENS);
    expect(store.backend).toBe('keychain');
    expect(JSON.parse(kc.data.get('k')!)).toEqual(TOKENS);
    expect(() => readFileSync(t.paths.file)).toThrow(/ENOENT/);
    expect(await store.get()).toEqual(TOKENS);
    expect(await store.delete()).toBe(true);
    expect(kc.data.size).toBe(0);
    expect(t.warnings).toEqual([]);
  });

  it('JIT_KEYRING=keychain fails instead of falling back', async () => {
    const t = setup({ JIT_KEYRING: 'keychain' }, brokenKeychain);
    await expect(t.make().set(TOKENS)).rejects.toMatchObject({ code: 'JIT_KEYCHAIN_UNAVAILABLE' });
    expect(t.warnings).toEqual([]);
  });

  it('rejects an unknown JIT_KEYRING value', () => {
    const t = setup({ JIT_KEYRING: 'plaintext' });
    expect(() => t.make()).toThrow(/JIT_KEYRING: "plaintext" is not one of auto, keychain, file/);
  });
});

/** Whether this process can reach a real OS keychain (run under `keyctl session - …` on headless Linux). */
async function realKeychainWorks(): Promise<boolean> {
  try {
    const { Entry } = await import('@napi-rs/keyring');
    const probe = new Entry('jit-test-probe', `probe-${process.pid}`);
    probe.setPassword('x');
    probe.deletePassword();
    return true;
  } catch {
    return false;
  }
}
const hasKeychain = await realKeychainWorks();

describe.skipIf(!hasKeychain)('token store, real OS keychain (keyctl session - npx vitest run …)', () => {
  it('JIT_KEYRING=keychain keeps the tokens in the keychain only, across store instances', async () => {
    // A throwaway profile: a developer's real jit login in the same keychain stays untouched.
    const t = setup({ JIT_KEYRING: 'keychain' }, undefined, `test-${process.pid}-${Date.now()}`);
    const store = t.make();
    await store.delete();
    await store.set(TOKENS);
    expect(store.backend).toBe('keychain');
    expect(await t.make().get()).toEqual(TOKENS);
    expect(() => readFileSync(t.paths.file)).toThrow(/ENOENT/);
    expect(await t.make().delete()).toBe(true);
    expect(await t.make().get()).toBeNull();
    expect(t.warnings).toEqual([]);
  });
});

describe('token store: trusted only by the one who logged in', () => {
  /** A keychain shared by every HOME of one OS user, keyed by account as the real one is. */
  function sharedKeychain() {
    const data = new Map<string, string>();
    return {
      data,
      open: async (_service: string, account: string): Promise<KeyringEntry> => ({
        getPassword: () => data.get(account) ?? null,
        setPassword: (p) => void data.set(account, p),
        deletePassword: () => data.delete(account),
      }),
    };
  }

  it('two HOMEs of one OS user with the same profile and server never read each other’s tokens', async () => {
    const k = sharedKeychain();
    const mk = (configDir: string) =>
      createTokenStore({ env: {}, configDir, profile: 'default', server: 'http://127.0.0.1:8443', warn: () => {}, openEntry: k.open });
    const a = mk(path.join(mkdtempSync(path.join(os.tmpdir(), 'jit-home-a-')), 'jit'));
    const b = mk(path.join(mkdtempSync(path.join(os.tmpdir(), 'jit-home-b-')), 'jit'));
    await a.set(TOKENS);
    expect(await b.get()).toBeNull();
    expect(k.data.size).toBe(1);
    await b.set({ ...TOKENS, accessToken: 'b-token' });
    expect((await a.get())?.accessToken).toBe('at-secret');
  });

  it('a file copy a keychain-less process relies on is kept current, not deleted, when another process refreshes', async () => {
    const k = sharedKeychain();
    const t = setup({}, () => Promise.reject(new Error('no keychain here')));
    // a process without a keychain logged in: the tokens are in the file
    await t.make().set(TOKENS);
    expect(readdirSync(t.paths.dir)).toContain(path.basename(t.paths.file));
    // a process with the keychain refreshes them
    const withKeychain = createTokenStore({
      env: {},
      configDir: t.configDir,
      profile: 'default',
      server: 'http://127.0.0.1:8443',
      warn: () => {},
      openEntry: k.open,
    });
    await withKeychain.set({ ...TOKENS, accessToken: 'refreshed' });
    // the keychain-less process still finds its login, refreshed
    expect((await t.make().get())?.accessToken).toBe('refreshed');
    // and logout removes both
    expect(await withKeychain.delete()).toBe(true);
    expect(await t.make().get()).toBeNull();
  });
});
