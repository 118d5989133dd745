/** Parsers for flag values shared by several commands: a bad value is a usage error naming what is expected. */
import { InvalidArgumentError } from 'commander';
import { parseDuration } from '#shared/duration.js';

/** A duration flag (`30m`, `2h`) within [minSeconds, maxSeconds]; returns whole seconds. */
export function durationFlag(minSeconds: number, maxSeconds: number, range: string) {
  return (value: string): number => {
    let seconds: number;
    try {
      seconds = parseDuration(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
    if (seconds < minSeconds || seconds > maxSeconds) throw new InvalidArgumentError(`between ${range}`);
    return Math.round(seconds);
  };
}

/** `--duration` of a session: 1 minute to 7 days. */
export const sessionDurationFlag = durationFlag(60, 7 * 24 * 3600, '1m and 7d');

/** Free text of 1 to max characters (reasons, comments). */
export function textFlag(max: number) {
  return (value: string): string => {
    if (value.length === 0 || value.length > max) throw new InvalidArgumentError(`1 to ${max} characters`);
    return value;
  };
}

/** A TCP port; `allowZero` accepts 0 for "any free port". */
export function portFlag(allowZero = false) {
  return (value: string): number => {
    const n = Number(value);
    const min = allowZero ? 0 : 1;
    if (!/^\d+$/.test(value) || n < min || n > 65535) {
      throw new InvalidArgumentError(allowZero ? 'a port number from 0 to 65535 (0: any free port)' : 'a port number from 1 to 65535');
    }
    return n;
  };
}
