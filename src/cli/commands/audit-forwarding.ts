/** `jit audit forwarding`: per destination, the cursor (last acknowledged event) and backlog. */
import type { Command } from 'commander';
import { type AuditForwardingStatus, AuditForwardingStatus as Schema } from '#shared/contract/http.js';
import type { ApiClient } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { shortTime } from '../output/format.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { renderTable } from '../output/table.js';

/** GET /v1/audit/forwarding */
export function runForwarding(deps: { api: ApiClient }): Promise<AuditForwardingStatus> {
  return deps.api.request('GET', '/audit/forwarding', Schema);
}

/** The status as a table. */
export function formatForwarding(s: AuditForwardingStatus, color: boolean): string {
  return renderTable(
    [
      { header: 'DESTINATION', value: (d) => d.name },
      { header: 'TYPE', value: (d) => d.type },
      { header: 'ENDPOINT', value: (d) => d.endpoint, maxWidth: 50 },
      { header: 'CURSOR', value: (d) => String(d.cursor), align: 'right' },
      { header: 'BACKLOG', value: (d) => String(d.backlog), align: 'right' },
      { header: 'LAST OK', value: (d) => (d.lastSuccessAt ? shortTime(d.lastSuccessAt) : '-') },
      { header: 'ERROR', value: (d) => (d.lastError ? `${d.lastError} (${d.failures}×)` : ''), maxWidth: 60 },
    ],
    s.destinations,
    { color, empty: 'No forwarding destinations are configured (audit.forward in the server config).' },
  );
}

export function registerAuditForwarding(audit: Command, env: CommandEnv): void {
  audit
    .command('forwarding')
    .description('show where the audit log is forwarded, how far each destination got, and its backlog')
    .action(async () => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const s = await runForwarding(cliServices(ctx, env.globals()));
      if (mode.json) printJson(ctx.io.stdout, s);
      else ctx.io.stdout.write(formatForwarding(s, mode.color));
    });
}
