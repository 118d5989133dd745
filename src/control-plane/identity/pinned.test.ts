import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { systemClock } from '#shared/runtime/ctx.js';
import { openSqliteStore } from '../store/db.js';
import { pinIdentities } from './pinned.js';
import type { Principal, TokenVerifier } from './verifier.js';

const principal = (subject: string, username: string): Principal => ({
  subject,
  username,
  groups: [],
  issuer: 'https://idp.example',
  expiresAt: Date.now() + 60_000,
});

/** Each "token" is the JSON of the principal the IdP would have signed. */
const idp: TokenVerifier = { verify: async (t) => JSON.parse(t) as Principal };

describe('one person is one identity', () => {
  it('pins a user name to the first subject that shows it; another subject claiming it is refused, also after a restart', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-pin-'));
    const db = await openSqliteStore(dir, {});
    const v = pinIdentities(idp, db, systemClock);
    await expect(v.verify(JSON.stringify(principal('sub-bob', 'bob')))).resolves.toMatchObject({ username: 'bob' });
    await expect(v.verify(JSON.stringify(principal('sub-mallory', 'bob')))).rejects.toMatchObject({
      code: 'JIT_AUTH_INVALID_TOKEN',
      message: expect.stringMatching(/belongs to another account/),
    });
    await expect(v.verify(JSON.stringify(principal('sub-bob', 'bob')))).resolves.toBeDefined();
    // a fresh process (empty cache) reads the pin from the store
    const again = pinIdentities(idp, db, systemClock);
    await expect(again.verify(JSON.stringify(principal('sub-mallory', 'bob')))).rejects.toMatchObject({ code: 'JIT_AUTH_INVALID_TOKEN' });
    await expect(again.verify(JSON.stringify(principal('sub-mallory', 'mallory')))).resolves.toMatchObject({ username: 'mallory' });
    await db.destroy();
  });
});
