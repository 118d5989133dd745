import { type Command, InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { type AuditEvent, AuditList } from '#shared/contract/http.js';
import { parseDuration } from '#shared/duration.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { ApiClient, checkSessionId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { formatAudit, shortTime } from '../output/format.js';
import { printJsonLines } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import { registerAuditExport } from './audit-export.js';
import { registerAuditForwarding } from './audit-forwarding.js';
import { registerAuditReport } from './audit-report.js';
import { registerAuditVerify } from './audit-verify.js';

/**
 * `jit audit verify --since 5`: commander hands an option that `audit` itself also declares to
 * `audit`, wherever it appears (the program parses options anywhere). Subcommands read it there.
 */
export function inherited(cmd: Command, name: 'since' | 'until'): string | undefined {
  const v = cmd.parent?.opts()[name] as unknown;
  return typeof v === 'string' ? v : undefined;
}

/** Filters of `jit audit` (all optional; combined with AND). */
export interface AuditFilters {
  session?: string | undefined;
  /** Exact type, or a prefix ending in `.` or `*`. */
  type?: string | undefined;
  user?: string | undefined;
  target?: string | undefined;
  outcome?: 'success' | 'failure' | 'info' | undefined;
  /** Epoch ms. */
  since?: number | undefined;
  until?: number | undefined;
  limit?: number | undefined;
}

/**
 * A point in time from the user: a duration back from now (`2h`, `30d`) or an ISO 8601 time.
 * Returns epoch ms.
 */
export function parseWhen(value: string, now: number): number {
  const v = value.trim();
  if (/^(\d+(ms|s|m|h|d))+$/.test(v)) {
    try {
      return now - parseDuration(v) * 1000;
    } catch {
      // fall through to ISO
    }
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (!Number.isNaN(t)) return t;
  }
  throw new JitError('JIT_USAGE', {
    message: `"${clean(v.slice(0, 40))}" is not a time: use a duration back from now (2h, 30d) or an ISO time (2026-05-01T10:00:00Z)`,
  });
}

/** Query string for GET /v1/audit. */
export function auditQueryString(f: AuditFilters, extra: Record<string, string | number | undefined> = {}): string {
  const p = new URLSearchParams();
  const set = (k: string, v: string | number | undefined) => {
    if (v !== undefined && v !== '') p.set(k, String(v));
  };
  set('session', f.session);
  set('type', f.type);
  set('user', f.user);
  set('target', f.target);
  set('outcome', f.outcome);
  set('since', f.since);
  set('until', f.until);
  set('limit', f.limit);
  for (const [k, v] of Object.entries(extra)) set(k, v);
  return p.size ? `?${p}` : '';
}

/** Audit events matching the filters (GET /v1/audit; administrators), oldest first. */
export async function runAudit(deps: { api: ApiClient }, f: AuditFilters): Promise<AuditEvent[]> {
  if (f.session !== undefined) checkSessionId(f.session);
  return (await deps.api.request('GET', `/audit${auditQueryString(f)}`, AuditList)).events;
}

/** One event as one line (for --follow, where a table cannot be aligned ahead of time). */
export function auditLine(e: AuditEvent): string {
  const cell = (v: string | undefined, w: number) =>
    clean(v ?? '-')
      .slice(0, w)
      .padEnd(w);
  return `${String(e.id).padStart(7)}  ${shortTime(e.time)}  ${cell(e.type, 22)} ${cell(e.actor, 16)} ${cell(e.target, 16)} ${cell(e.session, 20)} ${e.outcome}`.trimEnd();
}

export interface FollowDeps {
  ctx: Pick<Ctx, 'clock' | 'onSignal'>;
  api: ApiClient;
  /** Aborts the pending long poll (Ctrl-C). */
  abort: AbortController;
  /** Called with each batch of new events, oldest first. */
  print(events: AuditEvent[]): void;
  /** Seconds the server may hold each poll. */
  waitSeconds?: number;
}

/**
 * Tail the log: print the newest matching events, then long-poll for more until Ctrl-C (or the
 * abort controller fires). Transient server errors are retried with a short pause.
 */
export async function followAudit(deps: FollowDeps, f: AuditFilters): Promise<void> {
  const { api, abort, ctx } = deps;
  const off = ctx.onSignal(() => abort.abort());
  try {
    const first = await api.request('GET', `/audit${auditQueryString({ ...f, limit: f.limit ?? 20 })}`, AuditList);
    deps.print(first.events);
    let after = first.events.at(-1)?.id ?? first.lastId ?? 0;
    let failures = 0;
    while (!abort.signal.aborted) {
      try {
        const page = await api.request(
          'GET',
          `/audit${auditQueryString({ ...f, limit: 1000 }, { afterId: after, wait: deps.waitSeconds ?? 20 })}`,
          AuditList,
          undefined,
          ((deps.waitSeconds ?? 20) + 15) * 1000,
        );
        failures = 0;
        if (page.events.length > 0) {
          deps.print(page.events);
          after = page.events.at(-1)!.id;
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        if (err instanceof JitError && err.code !== 'JIT_SERVER_UNREACHABLE') throw err;
        if (++failures > 30) throw err;
        await new Promise<void>((r) => ctx.clock.setTimeout(r, Math.min(10_000, 500 * failures)));
      }
    }
  } finally {
    off();
  }
}

function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 10_000) throw new InvalidArgumentError('a whole number from 1 to 10000');
  return n;
}

function parseFilter(value: string): string {
  if (value.length === 0 || value.length > 200) throw new InvalidArgumentError('1 to 200 characters');
  return value;
}

const OutcomeOption = z.enum(['success', 'failure', 'info']);
/** `--decision` speaks policy: allowed/denied map onto outcomes. */
function parseOutcome(value: string): 'success' | 'failure' | 'info' {
  const v = value.toLowerCase();
  const mapped = v === 'allowed' || v === 'allow' ? 'success' : v === 'denied' || v === 'deny' || v === 'blocked' ? 'failure' : v;
  const r = OutcomeOption.safeParse(mapped);
  if (!r.success) throw new InvalidArgumentError('success, failure or info (or allowed / denied)');
  return r.data;
}

interface AuditOpts {
  session?: string;
  type?: string;
  user?: string;
  target?: string;
  outcome?: 'success' | 'failure' | 'info';
  decision?: 'success' | 'failure' | 'info';
  since?: string;
  until?: string;
  limit?: number;
  follow?: boolean;
}

export function registerAudit(program: Command, env: CommandEnv): void {
  const audit = program
    .command('audit')
    .description('show, follow, verify and report on the audit log (administrators)')
    .option('--session <id>', 'only events of this session', parseFilter)
    .option('--type <type>', 'only events of this type; a trailing . or * matches a prefix (statement.)', parseFilter)
    .option('--user <user>', 'only events by this user', parseFilter)
    .option('--target <target>', 'only events on this target', parseFilter)
    .option('--outcome <outcome>', 'only success, failure or info events', parseOutcome)
    .option('--decision <decision>', 'same as --outcome; allowed = success, denied = failure', parseOutcome)
    .option('--since <when>', 'only events since a duration ago (2h, 30d) or an ISO time')
    .option('--until <when>', 'only events before a duration ago or an ISO time')
    .option('--limit <n>', 'at most this many events, the newest (1-10000)', parseLimit)
    .option('-f, --follow', 'keep printing new events as they arrive (Ctrl-C stops)')
    .action(async (opts: AuditOpts) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const now = ctx.clock.now();
      const filters: AuditFilters = {
        session: opts.session,
        type: opts.type,
        user: opts.user,
        target: opts.target,
        outcome: opts.outcome ?? opts.decision,
        since: opts.since ? parseWhen(opts.since, now) : undefined,
        until: opts.until ? parseWhen(opts.until, now) : undefined,
        limit: opts.limit,
      };
      if (filters.session !== undefined) checkSessionId(filters.session);
      const services = cliServices(ctx, env.globals());
      if (opts.follow) {
        if (filters.until !== undefined) throw new JitError('JIT_USAGE', { message: '--follow and --until do not go together' });
        const abort = new AbortController();
        // The long poll must end at once on Ctrl-C: a client whose fetch follows our signal.
        const api = new ApiClient({
          ctx: {
            clock: ctx.clock,
            fetch: (input, init) =>
              ctx.fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, abort.signal]) : abort.signal }),
          },
          server: services.settings.server,
          auth: services.auth,
        });
        mode.status('following the audit log; Ctrl-C stops');
        await followAudit(
          {
            ctx,
            api,
            abort,
            print: (events) => {
              if (mode.json) printJsonLines(ctx.io.stdout, events);
              else if (events.length) ctx.io.stdout.write(`${events.map(auditLine).join('\n')}\n`);
            },
          },
          filters,
        );
        return;
      }
      const events = await runAudit(services, filters);
      // JSON lines: one event per line, so `jq` and log shippers can stream it.
      if (mode.json) printJsonLines(ctx.io.stdout, events);
      else ctx.io.stdout.write(formatAudit(events, mode.color));
    });
  registerAuditVerify(audit, env);
  registerAuditReport(audit, env);
  registerAuditExport(audit, env);
  registerAuditForwarding(audit, env);
}
