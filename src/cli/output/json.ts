/** Machine output: one JSON document, or JSON lines, on stdout. */
import type { Writable } from 'node:stream';

/** Print one pretty JSON document and a newline. */
export function printJson(out: Writable, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Print one compact JSON object per line (for streams of events). */
export function printJsonLines(out: Writable, values: readonly unknown[]): void {
  out.write(values.map((v) => `${JSON.stringify(v)}\n`).join(''));
}
