/**
 * SSH binary encoding (RFC 4251 §5): uint32, uint64, string, name-list. Pure; no I/O.
 */

/** Concatenates SSH fields into one buffer. */
export class SshWriter {
  private readonly parts: Buffer[] = [];

  uint32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    this.parts.push(b);
    return this;
  }

  uint64(n: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt.asUintN(64, n));
    this.parts.push(b);
    return this;
  }

  byte(n: number): this {
    this.parts.push(Buffer.from([n & 0xff]));
    return this;
  }

  /** A length-prefixed string (bytes or UTF-8 text). */
  string(s: Buffer | string): this {
    const data = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    this.uint32(data.length);
    this.parts.push(data);
    return this;
  }

  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Thrown on truncated or malformed SSH data. */
export class SshFormatError extends Error {}

/** Reads SSH fields; every read checks bounds. */
export class SshReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.buf.length) throw new SshFormatError('truncated SSH data');
  }

  uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  string(): Buffer {
    const n = this.uint32();
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  text(): string {
    return this.string().toString('utf8');
  }
}
