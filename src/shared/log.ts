import { createRequire } from 'node:module';
import type { DestinationStream, Logger } from 'pino';

export type { Logger };

/**
 * Paths pino must never print. Query text, row values and keystrokes are audit data and are
 * never passed to the logger in the first place; this list is the backstop for secrets.
 */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'accessToken',
  '*.accessToken',
  'refreshToken',
  '*.refreshToken',
  'grant',
  '*.grant',
  'localSecret',
  '*.localSecret',
  'adminUrl',
  '*.adminUrl',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'cookie',
  '*.cookie',
];

export interface LogOptions {
  level?: string;
  name?: string;
  /** Where to write; defaults to stderr so data on stdout stays clean. */
  destination?: NodeJS.WritableStream;
}

type PinoModule = typeof import('pino');
let pinoModule: PinoModule | undefined;
function loadPino(): PinoModule['pino'] {
  pinoModule ??= createRequire(import.meta.url)('pino') as PinoModule;
  return pinoModule.pino;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const pino = loadPino();
  return pino(
    {
      level: opts.level ?? 'info',
      name: opts.name,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: undefined,
    },
    (opts.destination ?? process.stderr) as DestinationStream,
  );
}

/** A logger that drops everything (tests, quiet CLI). */
export function silentLogger(): Logger {
  return loadPino()({ level: 'silent' });
}
