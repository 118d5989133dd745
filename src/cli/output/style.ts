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

/**
 * Untrusted text shown to someone who must decide on it (an approver): control characters,
 * bidi overrides and isolates, zero-width and other invisible format characters are shown as
 * `⟨U+202E⟩` instead of being obeyed or hidden, and a very long value is folded with how much was
 * left out, so the text cannot pretend to be something else. Tabs stay (as a space).
 */
export function visible(text: string, max = 400): string {
  const shown = text
    .replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\p{Cf}\u2028\u2029\u180e\u115f\u1160\u3164\uffa0]/gu, (c) =>
      c === '\n' ? '⟨LF⟩' : `⟨U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}⟩`,
    )
    .replace(/\t/g, ' ');
  if (shown.length <= max) return shown;
  const head = shown.slice(0, max - 60);
  const tail = shown.slice(-40);
  return `${head} …⟨${shown.length - head.length - tail.length} more characters⟩… ${tail}`;
}
