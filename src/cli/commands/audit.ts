import { type Command, InvalidArgumentError } from 'commander';
import type { AuditEvent } from '../../shared/contract/http.js';
import { type ApiClient, type AuditQuery, checkSessionId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { formatAudit } from '../output/format.js';
import { printJsonLines } from '../output/json.js';
import { outputMode } from '../output/mode.js';

/** Audit events matching the filters (GET /v1/audit; administrators). */
export function runAudit(deps: { api: ApiClient }, query: AuditQuery): Promise<AuditEvent[]> {
  if (query.session !== undefined) checkSessionId(query.session);
  return deps.api.audit(query);
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

export function registerAudit(program: Command, env: CommandEnv): void {
  program
    .command('audit')
    .description('show the audit log (administrators); newest events as the server orders them')
    .option('--session <id>', 'only events of this session', parseFilter)
    .option('--type <type>', 'only events of this type, e.g. session.started', parseFilter)
    .option('--user <user>', 'only events by this user', parseFilter)
    .option('--limit <n>', 'at most this many events (1-10000)', parseLimit)
    .action(async (opts: AuditQuery) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const events = await runAudit(cliServices(ctx, env.globals()), opts);
      // JSON lines: one event per line, so `jq` and log shippers can stream it.
      if (mode.json) printJsonLines(ctx.io.stdout, events);
      else ctx.io.stdout.write(formatAudit(events, mode.color));
    });
}
