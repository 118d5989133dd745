/**
 * asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then one
 * JSON array per event: `[seconds, "o" | "i" | "r" | "m", data]`. Output is decoded as UTF-8 per
 * direction with a streaming decoder, so a character split across two chunks stays whole.
 * Pure: the caller supplies the time.
 */
import { StringDecoder } from 'node:string_decoder';

export interface CastHeader {
  width: number;
  height: number;
  /** Start, seconds since the epoch. */
  timestamp: number;
  title?: string;
  command?: string;
  env?: Record<string, string>;
}

/** The header line (with its newline). */
export function castHeaderLine(h: CastHeader): string {
  return `${JSON.stringify({ version: 2, ...h })}\n`;
}

/** Turns terminal traffic into asciicast event lines. */
export class CastEncoder {
  private readonly out = new StringDecoder('utf8');
  private readonly in = new StringDecoder('utf8');

  /** @param startMs the recording's start (ms since the epoch); event times are relative to it. */
  constructor(private readonly startMs: number) {}

  private line(nowMs: number, code: string, data: string): string {
    const t = Math.max(0, nowMs - this.startMs) / 1000;
    return `${JSON.stringify([Number(t.toFixed(6)), code, data])}\n`;
  }

  /** Terminal output ("o"); '' while a character is incomplete. */
  output(nowMs: number, chunk: Buffer): string {
    const s = this.out.write(chunk);
    return s ? this.line(nowMs, 'o', s) : '';
  }

  /** Keystrokes ("i"). */
  input(nowMs: number, chunk: Buffer): string {
    const s = this.in.write(chunk);
    return s ? this.line(nowMs, 'i', s) : '';
  }

  /** Terminal resized ("r", `COLSxROWS`). */
  resize(nowMs: number, cols: number, rows: number): string {
    return this.line(nowMs, 'r', `${cols}x${rows}`);
  }

  /** A marker ("m"), e.g. where the recording was interrupted. */
  marker(nowMs: number, label: string): string {
    return this.line(nowMs, 'm', label);
  }
}
