/**
 * What a recorded terminal may do to the terminal that replays it: text, colours, cursor movement
 * and screen editing — nothing that writes the clipboard (OSC 52), changes the title or colour
 * palette (other OSC), sends device or window strings (DCS, APC, PM, SOS), makes the terminal
 * answer (status and attribute reports, window queries) or report the mouse, or resets it. The
 * recording came from a host; a host that was compromised must not get to type into the shell of
 * the auditor who replays it.
 *
 * Streaming: a sequence split across writes is handled; removed sequences are counted by kind so
 * the caller can say what was dropped. `jit replay --raw` bypasses this filter (with a warning).
 */

/** CSI final bytes that only draw: SGR, cursor movement, erase, insert/delete, scroll. */
const CSI_DRAW = new Set('mABCDEFGHJKSTfdsuLMP@Xr`abe'.split(''));
/** DEC private modes that only change drawing (cursor visibility, wrap, alternate screen) or how a paste arrives (2004, which shells set at every prompt). */
const SAFE_PRIVATE_MODES = new Set(['25', '7', '12', '47', '1047', '1048', '1049', '2004']);
const MAX_SEQUENCE = 256;

type State = 'text' | 'esc' | 'esc-intermediate' | 'csi' | 'string' | 'string-esc';

export class TerminalFilter {
  private state: State = 'text';
  private seq = '';
  private stringKind = '';
  /** Removed sequences by kind (e.g. `OSC 52 (clipboard)`). */
  readonly removed = new Map<string, number>();

  /** Filter one chunk of output; returns what may be written. */
  push(chunk: string): string {
    let out = '';
    for (const ch of chunk) {
      const c = ch.codePointAt(0)!;
      switch (this.state) {
        case 'text':
          if (c === 0x1b) {
            this.state = 'esc';
            this.seq = ch;
          } else if (c === 0x9b) {
            // 8-bit CSI: judged like ESC [
            this.state = 'csi';
            this.seq = '\x1b[';
          } else if (c >= 0x80 && c <= 0x9f) {
            // 8-bit C1 controls (CSI, OSC, DCS… in one byte): never passed
            this.count(c === 0x9d ? 'OSC' : c === 0x90 ? 'DCS' : 'C1 control');
            if (c === 0x9d || c === 0x90 || c === 0x98 || c === 0x9e || c === 0x9f) this.startString(c === 0x9d ? 'OSC' : 'DCS/APC/PM');
          } else if (c < 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09 && c !== 0x08 && c !== 0x07) {
            this.count('control character');
          } else out += ch;
          break;
        case 'esc':
          if (ch === '\x1b') {
            this.count('escape sequence');
            this.seq = ch;
            break;
          }
          this.seq += ch;
          if (ch === '[') this.state = 'csi';
          else if (ch === ']') this.startString('OSC');
          else if (ch === 'P') this.startString('DCS');
          else if (ch === '_') this.startString('APC');
          else if (ch === '^') this.startString('PM');
          else if (ch === 'X') this.startString('SOS');
          else if (ch === '(' || ch === ')' || ch === '*' || ch === '+' || ch === '#') this.state = 'esc-intermediate';
          else {
            // ESC 7 / ESC 8 (save/restore cursor), ESC = / ESC > (keypad), ESC M (reverse index)
            if ('78=>MDE'.includes(ch)) out += this.seq;
            else this.count(ch === 'c' ? 'terminal reset' : 'escape sequence');
            this.state = 'text';
          }
          break;
        case 'esc-intermediate':
          this.seq += ch;
          out += this.seq; // character set selection (line drawing)
          this.state = 'text';
          break;
        case 'csi':
          this.seq += ch;
          if (c >= 0x40 && c <= 0x7e) {
            out += this.csi(this.seq);
            this.state = 'text';
          } else if (this.seq.length > MAX_SEQUENCE || c < 0x20) {
            this.count('malformed sequence');
            this.state = 'text';
          }
          break;
        case 'string':
          if (c === 0x07 || c === 0x9c) this.endString();
          else if (c === 0x1b) this.state = 'string-esc';
          else if (this.stringKind === 'OSC' && this.seq.length < 16) this.seq += ch;
          break;
        case 'string-esc':
          // ESC \ ends the string; any other ESC ends it too and starts a new sequence
          this.endString();
          if (ch !== '\\') {
            this.state = 'esc';
            this.seq = '\x1b';
            out += this.push(ch);
          }
          break;
      }
    }
    return out;
  }

  /** The recording ended: a sequence left open is dropped (and counted). */
  finish(): void {
    if (this.state === 'string' || this.state === 'string-esc') this.endString();
    else if (this.state !== 'text') this.count('unfinished sequence');
    this.state = 'text';
  }

  /** A one-line account of what was removed, or undefined when nothing was. */
  summary(): string | undefined {
    if (this.removed.size === 0) return undefined;
    const parts = [...this.removed].map(([k, n]) => `${n} × ${k}`);
    return `removed terminal sequences that could change or query your terminal: ${parts.join(', ')}`;
  }

  private csi(seq: string): string {
    const body = seq.slice(2, -1);
    const final = seq[seq.length - 1]!;
    if (final === 'h' || final === 'l') {
      const m = /^\?([\d;]+)$/.exec(body);
      if (m && m[1]!.split(';').every((x) => SAFE_PRIVATE_MODES.has(x))) return seq;
      this.count(/^\?(9|100[0-3]|100[5-6]|101[5-6])\b/.test(body) ? 'mouse reporting' : 'terminal mode change');
      return '';
    }
    // intermediates ($, ", ', space, …) make it another command (DECRQM, DECSCA…): not drawing
    if (CSI_DRAW.has(final) && /^[\d;:?]*$/.test(body) && !(final === 'm' && body.startsWith('?'))) return seq;
    this.count(final === 'n' || final === 'c' ? 'terminal report request' : final === 't' ? 'window operation' : 'control sequence');
    return '';
  }

  private startString(kind: string): void {
    this.state = 'string';
    this.stringKind = kind;
    this.seq = '';
  }

  private endString(): void {
    const kind = this.stringKind;
    if (kind === 'OSC') {
      const num = /^(\d+)/.exec(this.seq)?.[1];
      this.count(
        num === '52'
          ? 'OSC 52 (clipboard write)'
          : num === '0' || num === '1' || num === '2'
            ? 'OSC title change'
            : `OSC ${num ?? ''}`.trim(),
      );
    } else this.count(kind);
    this.state = 'text';
    this.seq = '';
  }

  private count(kind: string): void {
    this.removed.set(kind, (this.removed.get(kind) ?? 0) + 1);
  }
}
