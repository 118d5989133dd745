/** Colour and terminal-safety helpers for plain output. */

export interface Styles {
  color: boolean;
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
}

/** Colour only on a TTY and only when NO_COLOR is unset (https://no-color.org). */
export function wantColor(stream: { isTTY?: boolean }, env: Readonly<Record<string, string | undefined>>): boolean {
  return Boolean(stream.isTTY) && !env['NO_COLOR'];
}

/** ANSI styles, or identity functions when colour is off. */
export function styles(color: boolean): Styles {
  const wrap = (open: number, close: number) => (s: string) => (color ? `\x1b[${open}m${s}\x1b[${close}m` : s);
  return { color, bold: wrap(1, 22), dim: wrap(2, 22), green: wrap(32, 39), red: wrap(31, 39), yellow: wrap(33, 39) };
}

/**
 * Strip control characters from text that came from a server or another user: an escape
 * sequence in a target description must not be able to rewrite the user's terminal.
 */
export function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, ' ');
}
