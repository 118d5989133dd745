/** Plain-text renderings of access requests (`jit requests`, `jit approve`), pinned by snapshot tests. */
import type { AccessRequest } from '#shared/contract/http.js';
import { formatDuration } from '#shared/duration.js';
import { shortTime } from '../output/format.js';
import { visible } from '../output/style.js';
import { renderTable } from '../output/table.js';
import { approversText } from './wait.js';

/** The `jit requests` table. */
export function formatRequests(requests: readonly AccessRequest[], color: boolean): string {
  return renderTable(
    [
      { header: 'ID', value: (r) => r.id },
      { header: 'KIND', value: (r) => r.kind },
      { header: 'USER', value: (r) => visible(r.requester.username, 64), maxWidth: 32 },
      { header: 'TARGET', value: (r) => visible(r.target, 64) },
      { header: 'STATE', value: (r) => (r.state === 'pending' && r.canReview ? 'pending (you may review)' : r.state) },
      { header: 'APPROVALS', value: (r) => `${r.approvals.length}/${r.approvers.required}`, align: 'right' },
      { header: 'CREATED', value: (r) => shortTime(r.createdAt) },
      { header: 'REASON', value: (r) => visible(r.reason ?? '', 200), maxWidth: 40 },
    ],
    requests,
    { color, empty: 'No requests.' },
  );
}

/** One request in detail: who, what, why, who approves, what happened (statement text for statement requests). */
export function formatRequest(r: AccessRequest, now: number): string {
  const rows: [string, string][] = [
    ['request', r.id],
    ['kind', r.kind === 'statement' ? 'statement (held in the session until decided)' : 'access'],
    ['requester', r.requester.username],
    ['target', r.target],
    ...(r.session ? ([['session', r.session]] as [string, string][]) : []),
    ['reason', r.reason ?? '-'],
    ['rule', r.rule],
    ...(r.kind === 'access' ? ([['duration', formatDuration(r.durationSeconds)]] as [string, string][]) : []),
    ['approvers', approversText(r.approvers)],
    ['state', r.state],
    ['created', shortTime(r.createdAt)],
  ];
  if (r.state === 'pending')
    rows.push(['expires', `${shortTime(r.expiresAt)} (in ${formatDuration((Date.parse(r.expiresAt) - now) / 1000)})`]);
  for (const a of r.approvals) rows.push(['approved by', `${a.approver} at ${shortTime(a.time)}${a.comment ? `: ${a.comment}` : ''}`]);
  if (r.denial) rows.push(['denied by', `${r.denial.approver} at ${shortTime(r.denial.time)}: ${r.denial.reason}`]);
  if (r.usableUntil && r.state === 'approved') rows.push(['usable until', shortTime(r.usableUntil)]);
  if (r.scope)
    rows.push([
      'scope',
      r.scope.type === 'session-kind'
        ? `this kind of statement in this session until ${r.scope.until ? shortTime(r.scope.until) : '?'}`
        : 'this statement, once',
    ]);
  const width = Math.max(...rows.map(([k]) => k.length));
  let out = rows.map(([k, v]) => `${k.padEnd(width)}  ${visible(v)}`).join('\n') + '\n';
  if (r.statement) {
    // The statement exactly as it will run; control and invisible characters are made visible, not obeyed.
    out += `\nstatement (${r.statement.kind ?? 'sql'}, digest ${r.statement.digest.slice(0, 16)}…):\n`;
    out += `${r.statement.sql
      .split('\n')
      .map((l) => `  ${visible(l, 2000)}`)
      .join('\n')}\n`;
    if (r.statement.params?.length) {
      out += `parameters:\n${r.statement.params.map((p, i) => `  $${i + 1} = ${p === null ? 'NULL' : visible(JSON.stringify(p), 1000)}`).join('\n')}\n`;
    }
  }
  return out;
}
