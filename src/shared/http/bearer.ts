/**
 * The one reader of `Authorization: Bearer <token>` headers (REST API, relay upgrades, agent
 * streams). Bounded so that a huge header costs nothing: Node's own header limit is 16 KiB, and an
 * IdP access token with many groups stays well below it.
 */
export const MAX_AUTHORIZATION_HEADER = 16 * 1024;

const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]+)$/;

/** The token of a bearer Authorization header, or undefined for anything else (never throws). */
export function parseBearer(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string' || header.length > MAX_AUTHORIZATION_HEADER) return undefined;
  return BEARER.exec(header)?.[1];
}
