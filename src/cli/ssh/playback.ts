/**
 * Playing an asciicast v2 recording back: output events written with their timing (scaled by
 * speed, long pauses capped), or all at once when stdout is not a terminal. Input events are not
 * echoed (the terminal output already shows what the host echoed). The output passes a
 * TerminalFilter unless the caller gives none (`jit replay --raw`): a recorded host must not get to
 * write the viewer's clipboard, set its title or make it type answers.
 */
import type { Writable } from 'node:stream';
import type { Clock } from '#shared/runtime/ctx.js';
import type { TerminalFilter } from './terminal-filter.js';

export interface Cast {
  header: { width?: number; height?: number; timestamp?: number; title?: string; command?: string };
  /** [seconds, code, data] */
  events: [number, string, string][];
}

/** Parse a recording; malformed lines are skipped (a recording cut by a crash may end mid-line). */
export function parseCast(text: string): Cast {
  const lines = text.split('\n');
  let header: Cast['header'] = {};
  try {
    const h = JSON.parse(lines[0] ?? '');
    if (h && h.version === 2) header = h;
  } catch {
    // No header: play the events anyway.
  }
  const events: Cast['events'] = [];
  for (const l of lines.slice(1)) {
    if (!l.trim()) continue;
    try {
      const e = JSON.parse(l);
      if (Array.isArray(e) && typeof e[0] === 'number' && typeof e[1] === 'string' && typeof e[2] === 'string') {
        events.push([e[0], e[1], e[2]]);
      }
    } catch {
      // skip
    }
  }
  return { header, events };
}

/** All output as one string (what the user was shown). */
export function castOutput(cast: Cast): string {
  return cast.events
    .filter((e) => e[1] === 'o')
    .map((e) => e[2])
    .join('');
}

export interface PlayOptions {
  out: Writable & { isTTY?: boolean };
  clock: Clock;
  speed: number;
  /** Longest pause between events, in recorded seconds (idle time is compressed). */
  maxPause?: number;
  /** What may reach the terminal; absent: everything (raw). */
  filter?: TerminalFilter;
}

/** Play the output with its timing on a terminal; print it at once elsewhere. */
export async function playCast(cast: Cast, opts: PlayOptions): Promise<void> {
  const f = opts.filter;
  if (!opts.out.isTTY) {
    // Not a terminal (a file, a pipe): what was shown, without delays.
    const all = castOutput(cast);
    opts.out.write(f ? f.push(all) : all);
    f?.finish();
    return;
  }
  let last = 0;
  for (const [t, code, data] of cast.events) {
    if (code !== 'o') continue;
    const gap = Math.min(Math.max(0, t - last), opts.maxPause ?? 2) / opts.speed;
    last = t;
    if (gap > 0.001) await new Promise<void>((r) => opts.clock.setTimeout(r, gap * 1000));
    const shown = f ? f.push(data) : data;
    if (shown) opts.out.write(shown);
  }
  f?.finish();
}
