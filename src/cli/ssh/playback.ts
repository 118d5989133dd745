/**
 * Playing an asciicast v2 recording back: output events written with their timing (scaled by
 * speed, long pauses capped), or all at once when stdout is not a terminal. Input events are not
 * echoed (the terminal output already shows what the host echoed). Like any terminal replay, the
 * host's escape sequences reach the terminal: replay recordings of hosts you would log in to.
 */
import type { Writable } from 'node:stream';
import type { Clock } from '#shared/runtime/ctx.js';

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
}

/** Play the output with its timing on a terminal; print it at once elsewhere. */
export async function playCast(cast: Cast, opts: PlayOptions): Promise<void> {
  if (!opts.out.isTTY) {
    // Not a terminal (a file, a pipe): exactly what was shown, without delays.
    opts.out.write(castOutput(cast));
    return;
  }
  let last = 0;
  for (const [t, code, data] of cast.events) {
    if (code !== 'o') continue;
    const gap = Math.min(Math.max(0, t - last), opts.maxPause ?? 2) / opts.speed;
    last = t;
    if (gap > 0.001) await new Promise<void>((r) => opts.clock.setTimeout(r, gap * 1000));
    opts.out.write(data);
  }
}
