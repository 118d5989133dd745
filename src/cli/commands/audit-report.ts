/**
 * `jit audit report`: the evidence an auditor asks for, for a time window. The control plane
 * builds the data (GET /v1/audit/report); this command renders it as a self-contained HTML page
 * or prints the JSON.
 */
import { writeFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { AuditReport } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { ApiClient } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import { inherited, parseWhen } from './audit.js';
import { renderReportHtml } from './audit-report-html.js';

/** GET /v1/audit/report?since=&until= */
export function runReport(deps: { api: ApiClient }, w: { since: number; until?: number | undefined }): Promise<AuditReport> {
  const q = new URLSearchParams({ since: String(w.since) });
  if (w.until !== undefined) q.set('until', String(w.until));
  return deps.api.request('GET', `/audit/report?${q}`, AuditReport, undefined, 300_000);
}

function parseFormat(v: string): 'html' | 'json' {
  if (v !== 'html' && v !== 'json') throw new InvalidArgumentError('html or json');
  return v;
}

export function registerAuditReport(audit: Command, env: CommandEnv): void {
  audit
    .command('report')
    .description('evidence report: who accessed which targets, when, for how long, under which approval, what ran')
    .option('--since <when>', 'start of the window: a duration ago (30d) or an ISO time', '30d')
    .option('--until <when>', 'end of the window (default now)')
    .option('--format <html|json>', 'html (a self-contained page) or json (default: json with --json, else html)', parseFormat)
    .option('--out <file>', 'write the report to this file instead of stdout')
    .action(async (opts: { since: string; until?: string; format?: 'html' | 'json'; out?: string }, cmd: Command) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const now = ctx.clock.now();
      const since = parseWhen(inherited(cmd, 'since') ?? opts.since, now);
      const untilText = inherited(cmd, 'until') ?? opts.until;
      const until = untilText ? parseWhen(untilText, now) : undefined;
      if (until !== undefined && until <= since) throw new JitError('JIT_USAGE', { message: '--until must be after --since' });
      const services = cliServices(ctx, env.globals());
      const report = await runReport(services, { since, until });
      const format = opts.format ?? (mode.json ? 'json' : 'html');
      const text =
        format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderReportHtml(report, { server: services.settings.server });
      if (opts.out) {
        try {
          writeFileSync(opts.out, text, { mode: 0o600 });
        } catch (cause) {
          throw new JitError('JIT_USAGE', { message: `cannot write ${clean(opts.out)}`, cause });
        }
        mode.status(`wrote ${format.toUpperCase()} report of ${report.totals.sessions} session(s) to ${clean(opts.out)}`);
      } else if (format === 'json') {
        printJson(ctx.io.stdout, report);
      } else {
        ctx.io.stdout.write(text);
      }
    });
}
