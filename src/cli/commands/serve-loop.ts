import type { Ctx } from '#shared/runtime/ctx.js';

/** Resolve on the first SIGINT/SIGTERM/SIGHUP; a second one exits hard (a stuck shutdown must not trap the user). */
export function untilSignal(ctx: Ctx): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const off = ctx.onSignal((sig) => {
      if (seen) {
        off();
        ctx.io.stderr.write('second signal: exiting now\n');
        // The one sanctioned hard exit: the user asked twice.
        process.exit(130);
      }
      seen = true;
      ctx.io.stderr.write(`${sig}: shutting down…\n`);
      resolve(sig);
    });
  });
}
