import { type Command, InvalidArgumentError } from 'commander';
import type { AccessRequest, ApprovalScope } from '#shared/contract/http.js';
import { parseDuration } from '#shared/duration.js';
import { JitError } from '#shared/errors/jit-error.js';
import { type ApiClient, checkRequestId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import { formatRequest } from '../approvals/format.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';

export interface ApproveOptions {
  comment?: string | undefined;
  /** Statement requests: how far the approval reaches. */
  scope?: 'statement' | 'session-kind' | undefined;
  /** With scope session-kind: for how long (seconds). */
  forSeconds?: number | undefined;
}

/** Approve a request (POST /v1/requests/:id/approve); returns it as it stands afterwards. */
export function runApprove(deps: { api: ApiClient }, id: string, opts: ApproveOptions): Promise<AccessRequest> {
  if (opts.forSeconds !== undefined && opts.scope !== 'session-kind') {
    throw new JitError('JIT_USAGE', {
      message: '--for goes with --scope session-kind',
      hint: 'jit approve <id> --scope session-kind --for 10m',
    });
  }
  const scope: ApprovalScope | undefined = opts.scope
    ? { type: opts.scope, ...(opts.forSeconds !== undefined ? { forSeconds: opts.forSeconds } : {}) }
    : undefined;
  return deps.api.approveRequest(checkRequestId(id), {
    ...(opts.comment ? { comment: opts.comment } : {}),
    ...(scope ? { scope } : {}),
  });
}

/** The status line after an approval. */
export function approvedLine(r: AccessRequest): string {
  if (r.state !== 'approved') {
    const more = r.approvers.required - r.approvals.length;
    return `Approved request ${r.id} (${r.approvals.length} of ${r.approvers.required}); it needs ${more} more approver${more === 1 ? '' : 's'}`;
  }
  return r.kind === 'statement'
    ? `Approved request ${r.id}: the statement runs in ${clean(r.requester.username)}'s session`
    : `Approved request ${r.id}: ${clean(r.requester.username)} may now connect to ${clean(r.target)}`;
}

function parseFor(value: string): number {
  let s: number;
  try {
    s = parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  if (s < 1 || s > 24 * 3600) throw new InvalidArgumentError('between 1s and 24h');
  return Math.round(s);
}

function parseScope(value: string): 'statement' | 'session-kind' {
  if (value !== 'statement' && value !== 'session-kind') throw new InvalidArgumentError('statement or session-kind');
  return value;
}

export function registerApprove(program: Command, env: CommandEnv): void {
  program
    .command('approve')
    .description('approve an access request or a held statement')
    .argument('<id>', 'the request id (jit requests --to-review lists them)')
    .option('-c, --comment <text>', 'a note for the requester and the audit log')
    .option('--scope <scope>', 'statement requests: statement (this one, default) or session-kind (this kind in this session)', parseScope)
    .option('--for <time>', 'with --scope session-kind: for how long, e.g. 10m', parseFor)
    .action(async (id: string, flags: { comment?: string; scope?: 'statement' | 'session-kind'; for?: number }) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const request = await runApprove(cliServices(ctx, env.globals()), id, {
        comment: flags.comment,
        scope: flags.scope,
        forSeconds: flags.for,
      });
      if (mode.json) printJson(ctx.io.stdout, { request });
      else ctx.io.stdout.write(formatRequest(request, ctx.clock.now()));
      mode.status(approvedLine(request));
    });
}
