/**
 * Identifiers every process agrees on: how they are made, what they look like, and the names built
 * from them. This is their only definition (test/lint/contract-facts.test.ts fails on a second one).
 *
 * Session and request ids are 20 characters of base32 [a-z2-7] (100 bits) made by the control
 * plane. Validation accepts [a-z0-9]{20} so that ids stay valid inside a PostgreSQL role name and
 * in URL paths without escaping; nothing else is ever accepted where an id is expected.
 */
import { z } from 'zod';

export const ID_LENGTH = 20;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** A new session or request id from `random` (bytes). */
export function newId(random: (n: number) => Buffer): string {
  const bytes = random(ID_LENGTH);
  let id = '';
  for (const b of bytes) id += BASE32[b & 31];
  return id;
}

/** Session ids and access-request ids (one format). */
export const ID_PATTERN = /^[a-z0-9]{20}$/;

export function isId(value: string): boolean {
  return ID_PATTERN.test(value);
}

/** zod schema of an id; `what` names it in validation errors ("not a session id"). */
export function idSchema(what = 'id'): z.ZodString {
  return z.string().regex(ID_PATTERN, `not a ${what}`);
}

/** The PostgreSQL role of a session: made, checked and dropped only under this name. */
export const SESSION_ROLE_PREFIX = 'jit_';
export const SESSION_ROLE_PATTERN = /^jit_[a-z0-9]{20}$/;
/** The same pattern as a PostgreSQL regular expression literal's body (for `rolname ~ '…'`). */
export const SESSION_ROLE_SQL_PATTERN = '^jit_[a-z0-9]{20}$';

export function sessionRoleName(sessionId: string): string {
  return `${SESSION_ROLE_PREFIX}${sessionId}`;
}

/** Names of targets, agents, workloads and service accounts in config and on the wire. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const NAME_RULE = 'lowercase letters, digits, . _ - (max 63)';

/** Audit stream ids (an agent's or the control plane's own audit stream). */
export const STREAM_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,31}$/;
