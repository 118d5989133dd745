/**
 * One person is one identity: policy names users by their user name (access rules, approvers,
 * admins), but a user name is a claim an IdP may let people choose (`preferred_username`). The
 * first token that shows a user name pins it to its issuer + subject; a later token with the same
 * name and another subject is refused (and audited by the caller), so nobody becomes "bob" for
 * policy by renaming themselves. An operator who recreated an account deletes its row from the
 * `identities` table (docs/operations.md).
 */
import { JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { Db } from '../store/db.js';
import type { Principal, TokenVerifier } from './verifier.js';

const CACHE_MAX = 10_000;

export function pinIdentities(inner: TokenVerifier, db: Db, clock: Clock): TokenVerifier {
  const known = new Map<string, string>();
  return {
    async verify(token: string): Promise<Principal> {
      const p = await inner.verify(token);
      const key = `${p.issuer}\0${p.username}`;
      let subject = known.get(key);
      if (subject === undefined) {
        await db
          .insertInto('identities')
          .values({ issuer: p.issuer, username: p.username, subject: p.subject, first_seen: clock.now() })
          .onConflict((oc) => oc.columns(['issuer', 'username']).doNothing())
          .execute();
        const row = await db
          .selectFrom('identities')
          .select('subject')
          .where('issuer', '=', p.issuer)
          .where('username', '=', p.username)
          .executeTakeFirst();
        subject = row?.subject ?? p.subject;
        if (known.size >= CACHE_MAX) known.clear();
        known.set(key, subject);
      }
      if (subject !== p.subject) {
        throw new JitError('JIT_AUTH_INVALID_TOKEN', {
          message: `The user name ${p.username} belongs to another account of this identity provider`,
          detail: 'user name pinned to another subject',
        });
      }
      return p;
    },
  };
}
