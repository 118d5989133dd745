/**
 * OpenSSH user certificates (`ssh-ed25519-cert-v01@openssh.com`, see OpenSSH's
 * PROTOCOL.certkeys). The agent signs one per session: principals = the login policy allows,
 * validity = a minute before now … the session's expiry, extensions = permit-pty only unless
 * policy allows forwarding. Pure: the caller supplies the CA signer, the nonce and the serial.
 */
import { ED25519 } from './keys.js';
import { SshFormatError, SshReader, SshWriter } from './wire.js';

export const ED25519_CERT = 'ssh-ed25519-cert-v01@openssh.com';
export const SSH_CERT_TYPE_USER = 1;
export const SSH_CERT_TYPE_HOST = 2;

export interface CertificateFields {
  /** The certified key: 32-byte Ed25519 public key. */
  publicKey: Buffer;
  /** 16+ random bytes (CA-provided nonce, against chosen-prefix attacks on the signature hash). */
  nonce: Buffer;
  serial: bigint;
  type: typeof SSH_CERT_TYPE_USER | typeof SSH_CERT_TYPE_HOST;
  keyId: string;
  principals: string[];
  /** Seconds since the epoch. */
  validAfter: bigint;
  validBefore: bigint;
  /** Critical options (e.g. force-command, source-address): name → value. */
  criticalOptions?: Record<string, string>;
  /** Extensions (flags, empty values), e.g. permit-pty. */
  extensions: string[];
}

/** Signs `data` with the CA's key; returns the SSH signature blob (string alg, string sig). */
export interface CertificateSigner {
  /** The CA's public key blob (string "ssh-ed25519", string key). */
  publicBlob: Buffer;
  sign(data: Buffer): Buffer;
}

/** Options/extensions: sorted by name; each value is a string inside a string (flags: empty). */
function encodeOptions(entries: [string, string | undefined][]): Buffer {
  const w = new SshWriter();
  for (const [name, value] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    w.string(name);
    w.string(value === undefined ? Buffer.alloc(0) : new SshWriter().string(value).toBuffer());
  }
  return w.toBuffer();
}

/** Encode and sign a certificate; returns the certificate blob. */
export function signCertificate(fields: CertificateFields, ca: CertificateSigner): Buffer {
  if (fields.publicKey.length !== 32) throw new SshFormatError('an Ed25519 public key has 32 bytes');
  if (fields.nonce.length < 16) throw new SshFormatError('the nonce needs at least 16 bytes');
  const principals = new SshWriter();
  for (const p of fields.principals) principals.string(p);
  const tbs = new SshWriter()
    .string(ED25519_CERT)
    .string(fields.nonce)
    .string(fields.publicKey)
    .uint64(fields.serial)
    .uint32(fields.type)
    .string(fields.keyId)
    .string(principals.toBuffer())
    .uint64(fields.validAfter)
    .uint64(fields.validBefore)
    .string(encodeOptions(Object.entries(fields.criticalOptions ?? {})))
    .string(encodeOptions(fields.extensions.map((e) => [e, undefined])))
    .string('') // reserved
    .string(ca.publicBlob)
    .toBuffer();
  return new SshWriter().raw(tbs).string(ca.sign(tbs)).toBuffer();
}

/** An Ed25519 signature blob as SSH carries it. */
export function ed25519SignatureBlob(signature: Buffer): Buffer {
  return new SshWriter().string(ED25519).string(signature).toBuffer();
}

export interface ParsedCertificate extends CertificateFields {
  signatureKey: Buffer;
  signature: Buffer;
  /** The signed part (everything before the signature). */
  signed: Buffer;
}

function decodeOptions(buf: Buffer): [string, Buffer][] {
  const r = new SshReader(buf);
  const out: [string, Buffer][] = [];
  while (r.remaining > 0) out.push([r.text(), r.string()]);
  return out;
}

/** Parse an Ed25519 certificate blob (tests and diagnostics; does not verify the signature). */
export function parseCertificate(blob: Buffer): ParsedCertificate {
  const r = new SshReader(blob);
  if (r.text() !== ED25519_CERT) throw new SshFormatError(`not an ${ED25519_CERT}`);
  const nonce = r.string();
  const publicKey = r.string();
  const serial = r.uint64();
  const type = r.uint32();
  if (type !== SSH_CERT_TYPE_USER && type !== SSH_CERT_TYPE_HOST) throw new SshFormatError('unknown certificate type');
  const keyId = r.text();
  const pr = new SshReader(r.string());
  const principals: string[] = [];
  while (pr.remaining > 0) principals.push(pr.text());
  const validAfter = r.uint64();
  const validBefore = r.uint64();
  const critical = decodeOptions(r.string());
  const extensions = decodeOptions(r.string()).map(([n]) => n);
  r.string(); // reserved
  const signatureKey = r.string();
  const signedEnd = r.offset;
  const signature = r.string();
  if (r.remaining !== 0) throw new SshFormatError('trailing bytes after the certificate');
  return {
    nonce,
    publicKey,
    serial,
    type,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions: Object.fromEntries(critical.map(([n, v]) => [n, v.length ? new SshReader(v).text() : ''])),
    extensions,
    signatureKey,
    signature,
    signed: blob.subarray(0, signedEnd),
  };
}
