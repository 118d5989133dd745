/**
 * `jit audit export` writes the log (from a checkpoint on) with its signed checkpoints as JSON
 * lines, for archiving or for `jit audit verify --file`; `jit audit key` writes the public key
 * that checkpoints are signed with, to keep apart from the exports.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { AuditCheckpoint, AuditKeys, AuditList } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { ApiClient } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import { inherited } from './audit.js';
import { parseSince } from './audit-verify.js';

const PAGE = 10_000;

/** Fetch the export: header, events from the anchor checkpoint on, then checkpoints. */
export async function runExport(
  deps: { api: ApiClient },
  since: { sinceId?: number; sinceTime?: number },
  now: number,
  write: (line: string) => void,
): Promise<{ events: number; checkpoints: number; firstId: number | null; lastId: number | null }> {
  const { api } = deps;
  const { checkpoints } = await api.request('GET', '/audit/checkpoints', z.object({ checkpoints: z.array(AuditCheckpoint) }));
  let sinceId = since.sinceId;
  if (sinceId === undefined && since.sinceTime !== undefined) {
    const first = await api.request('GET', `/audit?since=${since.sinceTime}&afterId=0&limit=1`, AuditList);
    sinceId = first.events[0]?.id ?? Number.MAX_SAFE_INTEGER;
  }
  // Start AT a checkpoint's event, so the file verifies on its own from there.
  let after = 0;
  if (sinceId !== undefined) {
    const anchor = checkpoints
      .filter((c) => c.lastId <= sinceId!)
      .sort((a, b) => a.lastId - b.lastId)
      .at(-1);
    after = anchor ? anchor.lastId - 1 : 0;
  }
  const startAfter = after;
  write(JSON.stringify({ jitAuditExport: 1, exportedAt: new Date(now).toISOString(), server: api.server }));
  let events = 0;
  let firstId: number | null = null;
  let lastId: number | null = null;
  for (;;) {
    const page = await api.request('GET', `/audit?afterId=${after}&limit=${PAGE}`, AuditList, undefined, 120_000);
    for (const e of page.events) write(JSON.stringify(e));
    events += page.events.length;
    if (page.events.length > 0) {
      firstId ??= page.events[0]!.id;
      lastId = page.events.at(-1)!.id;
      after = lastId;
    }
    if (page.events.length < PAGE) break;
  }
  const kept = checkpoints.filter((c) => c.lastId > startAfter || c.prunedThroughId !== null);
  for (const c of kept) write(JSON.stringify({ checkpoint: c }));
  return { events, checkpoints: kept.length, firstId, lastId };
}

export function registerAuditExport(audit: Command, env: CommandEnv): void {
  audit
    .command('export')
    .description('write the audit log and its signed checkpoints as JSON lines (for archives and jit audit verify --file)')
    .option('--since <id|when>', 'start at the newest checkpoint at or before this event id, duration ago or ISO time')
    .option('--out <file>', 'write to this file (created 0600) instead of stdout')
    .action(async (opts: { since?: string; out?: string }, cmd: Command) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const lines: string[] = [];
      const write = opts.out ? (l: string) => lines.push(l) : (l: string) => ctx.io.stdout.write(`${l}\n`);
      const r = await runExport(
        cliServices(ctx, env.globals()),
        parseSince(inherited(cmd, 'since') ?? opts.since, ctx.clock.now()),
        ctx.clock.now(),
        write,
      );
      if (opts.out) {
        try {
          writeFileSync(opts.out, `${lines.join('\n')}\n`, { mode: 0o600 });
        } catch (cause) {
          throw new JitError('JIT_USAGE', { message: `cannot write ${clean(opts.out)}`, cause });
        }
      }
      mode.status(
        `exported ${r.events} events${r.firstId !== null ? ` (${r.firstId}–${r.lastId})` : ''} and ${r.checkpoints} checkpoint(s)`,
      );
    });

  audit
    .command('key')
    .description('print the public key that signs audit checkpoints (keep it apart from exports)')
    .option('--out <file>', 'write it to this file')
    .action(async (opts: { out?: string }) => {
      const { ctx } = env;
      const keys = await cliServices(ctx, env.globals()).api.request('GET', '/audit/key', AuditKeys);
      if (opts.out) {
        try {
          writeFileSync(opts.out, `${JSON.stringify(keys, null, 2)}\n`);
        } catch (cause) {
          throw new JitError('JIT_USAGE', { message: `cannot write ${clean(opts.out)}`, cause });
        }
      } else {
        printJson(ctx.io.stdout, keys);
      }
    });
}
