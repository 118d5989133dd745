/**
 * `jit audit verify`: have the control plane check its hash chain and signed checkpoints, or
 * check an exported file offline against a public key. Names the first event that was removed,
 * inserted, altered or reordered, and exits with JIT_AUDIT_TAMPERED's code.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import type { ChainedEvent, Checkpoint } from '#shared/audit/chain.js';
import { publicKeyMap } from '#shared/audit/chain.js';
import { parsePublicJwk } from '#shared/audit/public-key.js';
import { memorySource, verifyAudit } from '#shared/audit/verify.js';
import { AuditCheckpoint, AuditEvent, AuditVerifyResult } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { ApiClient } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import { inherited, parseWhen } from './audit.js';

/** Largest export file read for offline verification. */
const MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024;

/** `--since`: an event id (digits) or a time. */
export function parseSince(value: string | undefined, now: number): { sinceId?: number; sinceTime?: number } {
  if (value === undefined) return {};
  if (/^\d+$/.test(value.trim())) return { sinceId: Number(value.trim()) };
  return { sinceTime: parseWhen(value, now) };
}

/** Ask the control plane to verify its log. */
export async function runVerify(deps: { api: ApiClient }, since: { sinceId?: number; sinceTime?: number }): Promise<AuditVerifyResult> {
  const p = new URLSearchParams();
  if (since.sinceId !== undefined) p.set('since', String(since.sinceId));
  if (since.sinceTime !== undefined) p.set('sinceTime', String(since.sinceTime));
  return deps.api.request('POST', `/audit/verify${p.size ? `?${p}` : ''}`, AuditVerifyResult, {}, 300_000);
}

const ExportLine = z.union([z.object({ checkpoint: AuditCheckpoint }), z.object({ jitAuditExport: z.number() }).passthrough(), AuditEvent]);

/** Parse an export (JSON lines: a header, events, checkpoints) into the verifier's shapes. */
export function parseExport(text: string): { events: ChainedEvent[]; checkpoints: Checkpoint[] } {
  const events: ChainedEvent[] = [];
  const checkpoints: Checkpoint[] = [];
  let n = 0;
  for (const line of text.split('\n')) {
    n++;
    if (!line.trim()) continue;
    let parsed: z.infer<typeof ExportLine>;
    try {
      parsed = ExportLine.parse(JSON.parse(line));
    } catch {
      throw new JitError('JIT_USAGE', {
        message: `line ${n} of the file is not an audit event or checkpoint`,
        hint: 'export with jit audit export',
      });
    }
    if ('checkpoint' in parsed) checkpoints.push(parsed.checkpoint as Checkpoint);
    else if ('jitAuditExport' in parsed) continue;
    else {
      const e = parsed as AuditEvent;
      events.push({
        id: e.id,
        stream: e.stream ?? null,
        seq: e.seq ?? null,
        time: Date.parse(e.time),
        type: e.type,
        actor: e.actor ?? null,
        target: e.target ?? null,
        session: e.session ?? null,
        outcome: e.outcome,
        data: JSON.stringify(e.data),
        prevHash: e.prevHash ?? null,
        hash: e.hash ?? null,
      });
    }
  }
  return { events, checkpoints };
}

/** Verify an exported file offline with the given public key(s). */
export async function verifyFile(
  file: string,
  keyFile: string,
  since: { sinceId?: number; sinceTime?: number },
  now: number,
): Promise<AuditVerifyResult> {
  const read = (f: string, what: string) => {
    try {
      return readFileSync(f, 'utf8');
    } catch (cause) {
      throw new JitError('JIT_USAGE', { message: `cannot read the ${what} ${clean(f)}`, cause });
    }
  };
  const keyText = read(keyFile, 'key file');
  let keyJson: unknown;
  try {
    keyJson = JSON.parse(keyText);
  } catch {
    throw new JitError('JIT_USAGE', { message: `${clean(keyFile)} is not JSON`, hint: 'jit audit key --out pub.json writes the key' });
  }
  const jwks = Array.isArray((keyJson as { keys?: unknown }).keys) ? (keyJson as { keys: unknown[] }).keys : [keyJson];
  const keys = publicKeyMap(jwks.map(parsePublicJwk));
  const text = read(file, 'export');
  if (text.length > MAX_FILE_BYTES) throw new JitError('JIT_USAGE', { message: 'the export is too large to verify in memory' });
  const { events, checkpoints } = parseExport(text);
  if (events.length === 0) throw new JitError('JIT_USAGE', { message: `${clean(file)} holds no audit events` });
  // A partial export starts at a checkpoint (jit audit export does that): anchor there.
  let first = Number.MAX_SAFE_INTEGER;
  for (const e of events) first = Math.min(first, e.id);
  const start = since.sinceId !== undefined || since.sinceTime !== undefined ? since : { sinceId: first };
  return verifyAudit(memorySource(events, checkpoints), keys, { ...start, now });
}

/** The verdict in a few lines. */
export function formatVerify(r: AuditVerifyResult): string {
  const lines: string[] = [];
  for (const s of r.streams) {
    const range = s.firstId === null ? 'no events' : `events ${s.firstId}–${s.lastId}`;
    const from =
      s.anchor.kind === 'genesis'
        ? 'from the start'
        : s.anchor.kind === 'pruned'
          ? `from the prune point (#${s.anchor.seq})`
          : `from the checkpoint at event ${s.anchor.id}`;
    lines.push(
      `${s.ok ? '✔' : '✘'} stream ${s.stream}: ${s.checked} events checked ${from} (${range}); ${s.checkpoints.verified} signed checkpoint(s) matched${s.checkpoints.badSignatures ? `, ${s.checkpoints.badSignatures} with a bad signature` : ''}`,
    );
    if (s.ok && s.unsignedTail > 0)
      lines.push(`  ${s.unsignedTail} newest event(s) are chained but not yet covered by a signed checkpoint`);
    if (s.problem) lines.push(`  first problem: ${s.problem.message}`);
  }
  if (r.streams.length === 0) lines.push('✔ the audit log is empty');
  return `${lines.join('\n')}\n`;
}

export function registerAuditVerify(audit: Command, env: CommandEnv): void {
  audit
    .command('verify')
    .description('check the hash chain and signed checkpoints; names the first removed, inserted, altered or reordered event')
    .option('--since <id|when>', 'start at the newest checkpoint at or before this event id, duration ago (2h) or ISO time')
    .option('--file <export.jsonl>', 'verify an export (jit audit export) offline instead of asking the server')
    .option('--key <pub.json>', 'with --file: the audit public key (jit audit key --out pub.json)')
    .action(async (opts: { since?: string; file?: string; key?: string }, cmd: Command) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const since = parseSince(inherited(cmd, 'since') ?? opts.since, ctx.clock.now());
      let result: AuditVerifyResult;
      if (opts.file) {
        if (!opts.key)
          throw new JitError('JIT_USAGE', {
            message: '--file needs --key: the public key you trust',
            hint: 'jit audit key --out pub.json, kept apart from the export',
          });
        result = await verifyFile(opts.file, opts.key, since, ctx.clock.now());
      } else {
        if (opts.key) throw new JitError('JIT_USAGE', { message: '--key goes with --file' });
        result = await runVerify(cliServices(ctx, env.globals()), since);
      }
      if (mode.json) printJson(ctx.io.stdout, result);
      else ctx.io.stdout.write(formatVerify(result));
      if (!result.ok) {
        throw new JitError('JIT_AUDIT_TAMPERED', {
          message: `The audit log failed verification: ${clean(result.problem?.message ?? 'see above')}`.slice(0, 400),
        });
      }
    });
}
