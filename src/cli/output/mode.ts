/** How a command should present itself: JSON, interactive (ink), or plain lines. */
import type { Ctx } from '#shared/runtime/ctx.js';
import type { CliGlobals } from '../api/services.js';
import { wantColor } from './style.js';

export interface OutputMode {
  json: boolean;
  quiet: boolean;
  /** ink views: only when both stdout and stderr are terminals and no --json. */
  interactive: boolean;
  /** Colour for stdout data (tables). */
  color: boolean;
  /** Colour for stderr status lines. */
  statusColor: boolean;
  /** Write one status line to stderr (dropped with --quiet). */
  status(line: string): void;
}

/** Decide the output mode from the streams, NO_COLOR and the global flags. */
export function outputMode(ctx: Pick<Ctx, 'io' | 'env'>, globals: CliGlobals): OutputMode {
  const json = Boolean(globals.json);
  const quiet = Boolean(globals.quiet);
  return {
    json,
    quiet,
    interactive: !json && !quiet && Boolean(ctx.io.stdout.isTTY) && Boolean(ctx.io.stderr.isTTY),
    color: wantColor(ctx.io.stdout, ctx.env),
    statusColor: wantColor(ctx.io.stderr, ctx.env),
    status: (line) => {
      if (!quiet) ctx.io.stderr.write(`${line}\n`);
    },
  };
}
