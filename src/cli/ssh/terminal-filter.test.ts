import { describe, expect, it } from 'vitest';
import { TerminalFilter } from './terminal-filter.js';

const run = (...chunks: string[]) => {
  const f = new TerminalFilter();
  const out = chunks.map((c) => f.push(c)).join('');
  f.finish();
  return { out, summary: f.summary() };
};

describe('replay cannot attack the viewer', () => {
  it.each([
    ['OSC 52 clipboard write (BEL)', '\x1b]52;c;cm0gLXJmIH4=\x07', 'OSC 52 (clipboard write)'],
    ['OSC 52 clipboard write (ST)', '\x1b]52;c;cm0gLXJmIH4=\x1b\\', 'OSC 52 (clipboard write)'],
    ['title change', '\x1b]0;owned\x07', 'OSC title change'],
    ['palette change', '\x1b]4;1;rgb:00/00/00\x07', 'OSC 4'],
    ['hyperlink', '\x1b]8;;file:///etc/passwd\x1b\\x\x1b]8;;\x1b\\', 'OSC 8'],
    ['DCS (terminfo/sixel/tmux passthrough)', '\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\', 'DCS'],
    ['APC', '\x1b_Gf=100;AAAA\x1b\\', 'APC'],
    ['PM', '\x1b^privacy\x1b\\', 'PM'],
    ['SOS', '\x1bXstring\x1b\\', 'SOS'],
    ['8-bit OSC', '\u009d52;c;eA==\u0007', 'OSC'],
    ['8-bit CSI report request', '\u009b6n', 'terminal report request'],
    ['cursor position report request', '\x1b[6n', 'terminal report request'],
    ['device attributes request', '\x1b[c', 'terminal report request'],
    ['window title report', '\x1b[21t', 'window operation'],
    ['window resize', '\x1b[8;100;100t', 'window operation'],
    ['mouse reporting', '\x1b[?1000h', 'mouse reporting'],
    ['focus reporting', '\x1b[?1004h', 'terminal mode change'],
    ['DECRQM', '\x1b[?2026$p', 'control sequence'],
    ['full reset', '\x1bc', 'terminal reset'],
  ])('removes %s', (_what, seq, kind) => {
    const { out, summary } = run(`before ${seq} after`);
    expect(out.replace(/x/g, '')).toBe('before  after');
    expect(summary).toContain(kind);
  });

  it('keeps colours, cursor movement, erasing and the alternate screen', () => {
    const keep = '\x1b[1;31mred\x1b[0m\x1b[2J\x1b[H\x1b[10;5H\x1b[K\x1b[?25l\x1b[?1049h\x1b[?1049l\x1b[?25h\x1b(0q\x1b(B\r\n\tok\x08!';
    expect(run(keep)).toEqual({ out: keep, summary: undefined });
  });

  it('handles a sequence split across writes, and an ESC that breaks out of a string', () => {
    expect(run('a\x1b]5', '2;c;', 'eA==\x07b').out).toBe('ab');
    expect(run('\x1b]0;title\x1b[31mred').out).toBe('\x1b[31mred');
    expect(run('text \x1b]52;c;unterminated').out).toBe('text ');
  });
});
