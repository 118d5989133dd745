/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, on node:crypto only.
 *
 * - `makeScramVerifier` / `scramVerifierString`: turn a secret into the verifier PostgreSQL stores
 *   (the control plane sends it to the agent; the agent uses the string form in CREATE ROLE so the
 *   plaintext never reaches the server's logs).
 * - `ScramServer`: verifies a client against a verifier (the agent's local leg).
 * - `ScramClient`: logs in to a server with a password (the agent's upstream leg).
 *
 * Channel binding: only `n` (client does not support it) and `y` (client supports it but the
 * server did not offer it) are accepted; we never advertise SCRAM-SHA-256-PLUS.
 * Pure: no sockets, no fs, no logger. Every parse of peer input fails closed with ScramError.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ScramVerifier } from '#shared/contract/agent.js';

export type { ScramVerifier };

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
const DEFAULT_ITERATIONS = 4096;
/** Upper bound on iterations a server may ask of us (a hostile server must not burn our CPU). */
const MAX_CLIENT_ITERATIONS = 1_000_000;
const MAX_SCRAM_MESSAGE = 2048;

/** A SCRAM exchange that must not continue; `message` never contains secrets. */
export class ScramError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScramError';
  }
}

/**
 * The password bytes fed to PBKDF2. PostgreSQL applies SASLprep and falls back to the raw bytes
 * when SASLprep rejects the string; for ASCII both are the identity, which covers every secret
 * jit generates. For non-ASCII we approximate SASLprep with NFKC (its mapping step).
 */
function normalizePassword(password: string): Buffer {
  if (/^[\x20-\x7e]*$/.test(password)) return Buffer.from(password, 'utf8');
  return Buffer.from(password.normalize('NFKC'), 'utf8');
}

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

interface DerivedKeys {
  clientKey: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

function deriveKeys(password: string, salt: Buffer, iterations: number): DerivedKeys {
  const salted = pbkdf2Sync(normalizePassword(password), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** Compute the SCRAM-SHA-256 verifier of a password (random 16-byte salt, 4096 iterations by default). */
export function makeScramVerifier(password: string, opts: { iterations?: number; salt?: Buffer } = {}): ScramVerifier {
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  const salt = opts.salt ?? randomBytes(16);
  const k = deriveKeys(password, salt, iterations);
  return {
    iterations,
    salt: salt.toString('base64'),
    storedKey: k.storedKey.toString('base64'),
    serverKey: k.serverKey.toString('base64'),
  };
}

/** PostgreSQL's pg_authid form: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`. */
export function scramVerifierString(v: ScramVerifier): string {
  return `${SCRAM_MECHANISM}$${v.iterations}:${v.salt}$${v.storedKey}:${v.serverKey}`;
}

/** A nonce of printable characters without ',' (base64 of random bytes satisfies that). */
function makeNonce(): string {
  return randomBytes(18).toString('base64');
}

/** Split `a=1,b=2` into ordered attribute pairs; each attribute is one letter. */
function parseAttributes(text: string): [string, string][] {
  if (text.length > MAX_SCRAM_MESSAGE) throw new ScramError('SCRAM message too long');
  const out: [string, string][] = [];
  for (const part of text.split(',')) {
    if (part.length < 2 || part[1] !== '=' || !/^[A-Za-z]$/.test(part[0]!)) {
      throw new ScramError('malformed SCRAM message');
    }
    out.push([part[0]!, part.slice(2)]);
  }
  return out;
}

const PRINTABLE_NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(text: string, what: string): Buffer {
  if (!BASE64.test(text) || text.length % 4 !== 0) throw new ScramError(`malformed ${what}`);
  return Buffer.from(text, 'base64');
}

/**
 * Server side of one SCRAM-SHA-256 exchange against a stored verifier.
 * Use: `serverFirst(clientFirst)` → send; `serverFinal(clientFinal)` → send (throws on a wrong proof).
 */
export class ScramServer {
  private state: 'start' | 'first-sent' | 'done' = 'start';
  private readonly storedKey: Buffer;
  private readonly serverKey: Buffer;
  private readonly salt: string;
  private readonly iterations: number;
  private gs2Header = '';
  private clientFirstBare = '';
  private serverFirstMessage = '';
  private nonce = '';

  constructor(
    verifier: ScramVerifier,
    private readonly serverNonce: string = makeNonce(),
  ) {
    this.storedKey = decodeBase64(verifier.storedKey, 'verifier');
    this.serverKey = decodeBase64(verifier.serverKey, 'verifier');
    this.salt = verifier.salt;
    this.iterations = verifier.iterations;
    if (this.storedKey.length !== 32 || this.serverKey.length !== 32) throw new ScramError('malformed verifier');
  }

  /** Handle client-first-message; returns server-first-message. */
  serverFirst(clientFirst: string): string {
    if (this.state !== 'start') throw new ScramError('unexpected SCRAM message');
    if (clientFirst.length > MAX_SCRAM_MESSAGE) throw new ScramError('SCRAM message too long');
    // gs2-header: cbind-flag "," [authzid] ","
    const m = /^([ny]|p=[^,]*),([^,]*),(.*)$/s.exec(clientFirst);
    if (!m) throw new ScramError('malformed SCRAM client-first-message');
    if (m[1]!.startsWith('p')) throw new ScramError('channel binding is not supported');
    if (m[2] !== '') throw new ScramError('SCRAM authorization identity is not supported');
    this.gs2Header = `${m[1]},,`;
    this.clientFirstBare = m[3]!;
    const attrs = parseAttributes(this.clientFirstBare);
    // n= (user name; PostgreSQL ignores it, the startup packet names the user), then r=; no extensions.
    if (attrs.length !== 2 || attrs[0]![0] !== 'n' || attrs[1]![0] !== 'r') {
      throw new ScramError('malformed SCRAM client-first-message');
    }
    const clientNonce = attrs[1]![1];
    if (!PRINTABLE_NONCE.test(clientNonce)) throw new ScramError('malformed SCRAM nonce');
    this.nonce = clientNonce + this.serverNonce;
    this.serverFirstMessage = `r=${this.nonce},s=${this.salt},i=${this.iterations}`;
    this.state = 'first-sent';
    return this.serverFirstMessage;
  }

  /** Handle client-final-message; returns server-final-message, or throws when the proof is wrong. */
  serverFinal(clientFinal: string): string {
    if (this.state !== 'first-sent') throw new ScramError('unexpected SCRAM message');
    this.state = 'done';
    const attrs = parseAttributes(clientFinal);
    if (attrs.length !== 3 || attrs[0]![0] !== 'c' || attrs[1]![0] !== 'r' || attrs[2]![0] !== 'p') {
      throw new ScramError('malformed SCRAM client-final-message');
    }
    const cbind = decodeBase64(attrs[0]![1], 'channel binding');
    if (cbind.toString('latin1') !== this.gs2Header) throw new ScramError('SCRAM channel binding does not match');
    if (attrs[1]![1] !== this.nonce) throw new ScramError('SCRAM nonce does not match');
    const proof = decodeBase64(attrs[2]![1], 'proof');
    if (proof.length !== 32) throw new ScramError('malformed SCRAM proof');
    const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
    const authMessage = `${this.clientFirstBare},${this.serverFirstMessage},${withoutProof}`;
    const clientSignature = hmac(this.storedKey, authMessage);
    const clientKey = xor(proof, clientSignature);
    if (!timingSafeEqual(sha256(clientKey), this.storedKey)) throw new ScramError('SCRAM proof is wrong');
    return `v=${hmac(this.serverKey, authMessage).toString('base64')}`;
  }
}

/**
 * Client side of one SCRAM-SHA-256 exchange with a password.
 * Use: `clientFirst()` → send; `clientFinal(serverFirst)` → send; `verifyServerFinal(serverFinal)`.
 */
export class ScramClient {
  private state: 'start' | 'first-sent' | 'final-sent' | 'done' = 'start';
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | undefined;

  private readonly clientNonce: string;
  private readonly user: string;

  /** `user` defaults to empty, as libpq sends it (PostgreSQL takes the user from the startup packet). */
  constructor(
    private readonly password: string,
    opts: { nonce?: string; user?: string } = {},
  ) {
    this.clientNonce = opts.nonce ?? makeNonce();
    this.user = (opts.user ?? '').replaceAll('=', '=3D').replaceAll(',', '=2C');
  }

  /** client-first-message (no channel binding). */
  clientFirst(): string {
    if (this.state !== 'start') throw new ScramError('unexpected SCRAM step');
    this.state = 'first-sent';
    this.clientFirstBare = `n=${this.user},r=${this.clientNonce}`;
    return `n,,${this.clientFirstBare}`;
  }

  /** Handle server-first-message; returns client-final-message. */
  clientFinal(serverFirst: string): string {
    if (this.state !== 'first-sent') throw new ScramError('unexpected SCRAM step');
    this.state = 'final-sent';
    const attrs = parseAttributes(serverFirst);
    if (attrs.length < 3 || attrs[0]![0] !== 'r' || attrs[1]![0] !== 's' || attrs[2]![0] !== 'i') {
      throw new ScramError('malformed SCRAM server-first-message');
    }
    const nonce = attrs[0]![1];
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length || !PRINTABLE_NONCE.test(nonce)) {
      throw new ScramError('SCRAM server nonce is invalid');
    }
    const salt = decodeBase64(attrs[1]![1], 'salt');
    if (!/^[1-9][0-9]{0,9}$/.test(attrs[2]![1])) throw new ScramError('malformed SCRAM iteration count');
    const iterations = Number(attrs[2]![1]);
    if (iterations > MAX_CLIENT_ITERATIONS) throw new ScramError('SCRAM iteration count is too high');
    const keys = deriveKeys(this.password, salt, iterations);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(keys.clientKey, hmac(keys.storedKey, authMessage));
    this.expectedServerSignature = hmac(keys.serverKey, authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Check server-final-message; throws unless the server proved it knows the verifier. */
  verifyServerFinal(serverFinal: string): void {
    if (this.state !== 'final-sent' || !this.expectedServerSignature) throw new ScramError('unexpected SCRAM step');
    this.state = 'done';
    const attrs = parseAttributes(serverFinal);
    if (attrs[0]?.[0] === 'e') throw new ScramError('the server refused the SCRAM exchange');
    if (attrs[0]?.[0] !== 'v') throw new ScramError('malformed SCRAM server-final-message');
    const sig = decodeBase64(attrs[0][1], 'server signature');
    if (sig.length !== 32 || !timingSafeEqual(sig, this.expectedServerSignature)) {
      throw new ScramError('the server signature is wrong');
    }
  }
}
