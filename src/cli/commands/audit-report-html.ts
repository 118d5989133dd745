/**
 * The evidence report as one self-contained HTML page: inline CSS and SVG, no scripts, no
 * network, no external assets (a Content-Security-Policy says so to the browser). Every value
 * from the log is escaped: user names, reasons and target names are attacker-influenced text.
 */
import type { AuditReport } from '#shared/contract/http.js';
import { formatDuration } from '#shared/duration.js';

type ReportSession = AuditReport['sessions'][number];

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** Escape text for HTML/SVG content and attribute values. */
export function esc(v: unknown): string {
  return String(v ?? '')
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '')
    .replace(/[&<>"']/g, (c) => ESC[c]!);
}

/** `2026-05-01T10:00:00.000Z` → `2026-05-01 10:00:00Z`. */
function when(iso: string | undefined): string {
  if (!iso) return '—';
  return `${iso.slice(0, 19).replace('T', ' ')}Z`;
}

function anchorId(name: string): string {
  return `target-${name.replace(/[^a-zA-Z0-9_-]/g, '_')}`;
}

const CSS = `
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#ffffff; --soft:#f4f6f9; --ok:#2f7d4f; --warn:#b26a00; --bad:#b3261e; --bar:#3b6fd8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); margin: 0; padding: 24px 32px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.meta { color: var(--muted); margin: 0; }
.totals { display: flex; flex-wrap: wrap; gap: 12px; margin: 20px 0 8px; padding: 0; list-style: none; }
.totals li { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.totals b { display: block; font-size: 20px; }
.totals span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 0; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); }
.ok { color: var(--ok); }
.muted { color: var(--muted); }
svg.timeline { display: block; max-width: 100%; height: auto; margin: 8px 0; background: var(--soft); border: 1px solid var(--line); border-radius: 6px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--fg); }
svg .axis text { fill: var(--muted); }
svg .grid { stroke: var(--line); }
svg rect.s-ended { fill: var(--bar); }
svg rect.s-abnormal { fill: var(--warn); }
svg rect.s-active { fill: var(--ok); }
svg rect.s-blocked { stroke: var(--bad); stroke-width: 2; }
nav a { margin-right: 12px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
@media print { body { padding: 0; } h2 { break-after: avoid; } table, svg { break-inside: avoid; } }
`;

const NORMAL_END = new Set(['exit', 'expired', undefined]);
const MAX_ROWS_IN_CHART = 200;

/** The timeline of one target's sessions: one bar per session over the report window. */
export function timelineSvg(target: string, sessions: readonly ReportSession[], since: number, until: number): string {
  const rows = sessions.slice(0, MAX_ROWS_IN_CHART);
  const W = 1000;
  const left = 150;
  const right = 20;
  const top = 28;
  const rowH = 20;
  const H = top + Math.max(1, rows.length) * rowH + 10;
  const span = Math.max(1, until - since);
  const x = (t: number) => left + ((Math.min(Math.max(t, since), until) - since) / span) * (W - left - right);
  const ticks: string[] = [];
  const n = 6;
  for (let i = 0; i <= n; i++) {
    const t = since + (span * i) / n;
    const tx = x(t).toFixed(1);
    const label = new Date(t)
      .toISOString()
      .slice(span > 3 * 86_400_000 ? 5 : 5, span > 3 * 86_400_000 ? 10 : 16)
      .replace('T', ' ');
    ticks.push(
      `<line class="grid" x1="${tx}" y1="${top - 6}" x2="${tx}" y2="${H - 6}"/><text x="${tx}" y="14" text-anchor="middle">${esc(label)}</text>`,
    );
  }
  const bars = rows.map((s, i) => {
    const start = s.startedAt ? Date.parse(s.startedAt) : since;
    const end = s.endedAt ? Date.parse(s.endedAt) : s.durationSeconds !== undefined ? start + s.durationSeconds * 1000 : until;
    const x0 = x(start);
    const w = Math.max(3, x(end) - x0);
    const y = top + i * rowH;
    const state = !s.endedAt ? 's-active' : NORMAL_END.has(s.endReason) ? 's-ended' : 's-abnormal';
    const blocked = s.statements.blocked > 0 ? ' s-blocked' : '';
    const tip = `${s.user} · ${when(s.startedAt)} → ${s.endedAt ? when(s.endedAt) : 'still open'} · ${s.durationSeconds !== undefined ? formatDuration(s.durationSeconds) : '?'} · ${s.statements.executed} statements, ${s.statements.blocked} blocked${s.requestId ? ` · request ${s.requestId}` : ''}`;
    return (
      `<g data-session="${esc(s.id)}"><text x="${left - 8}" y="${y + 13}" text-anchor="end">${esc(s.user.slice(0, 22))}</text>` +
      `<rect class="${state}${blocked}" x="${x0.toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" rx="3"><title>${esc(tip)}</title></rect></g>`
    );
  });
  const more =
    sessions.length > rows.length
      ? `<text x="${left}" y="${H - 2}">… ${sessions.length - rows.length} more sessions in the table below</text>`
      : '';
  return (
    `<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="Timeline of sessions on ${esc(target)}">` +
    `<g class="axis">${ticks.join('')}</g>${bars.join('')}${more}</svg>`
  );
}

function credentialCell(s: ReportSession): string {
  if (s.credentials.length === 0) return '<span class="muted">none recorded</span>';
  return s.credentials
    .map((c) => {
      const state =
        c.outcome === 'failure'
          ? '<span class="bad">failed</span>'
          : c.destroyedAt
            ? `destroyed ${esc(when(c.destroyedAt))}`
            : '<span class="warn">not destroyed in window</span>';
      return `<code>${esc(c.role ?? '?')}</code><br>created ${esc(when(c.createdAt))}<br>${state}`;
    })
    .join('<hr>');
}

function sessionRow(s: ReportSession): string {
  const st = s.statements;
  const end = s.endedAt
    ? `${esc(when(s.endedAt))}<br><span class="${NORMAL_END.has(s.endReason) ? 'muted' : 'warn'}">${esc(s.endReason ?? '')}</span>`
    : '<span class="ok">open</span>';
  return (
    `<tr data-session="${esc(s.id)}"><td>${esc(s.user)}</td><td><code>${esc(s.id)}</code></td><td>${esc(when(s.startedAt))}</td><td>${end}</td>` +
    `<td class="num">${s.durationSeconds !== undefined ? esc(formatDuration(s.durationSeconds)) : '—'}</td>` +
    `<td>${s.requestId ? `<code>${esc(s.requestId)}</code>` : '<span class="muted">—</span>'}${s.rule ? `<br><span class="muted">rule ${esc(s.rule)}</span>` : ''}${s.reason ? `<br>“${esc(s.reason)}”` : ''}</td>` +
    `<td>${credentialCell(s)}</td>` +
    `<td class="num">${s.connections}</td><td class="num">${st.executed}</td><td class="num">${st.failed}</td>` +
    `<td class="num${st.blocked ? ' bad' : ''}">${st.blocked}</td><td class="num">${st.masked}</td><td class="num">${st.approvals}</td></tr>`
  );
}

/** Render the report data as a complete HTML document. */
export function renderReportHtml(r: AuditReport, opts: { server?: string } = {}): string {
  const since = Date.parse(r.since);
  const until = Date.parse(r.until);
  const byTarget = new Map<string, ReportSession[]>();
  for (const s of r.sessions) {
    const list = byTarget.get(s.target) ?? [];
    list.push(s);
    byTarget.set(s.target, list);
  }
  const targets = [...byTarget.keys()].sort();
  const byUser = new Map<string, { targets: Set<string>; sessions: number; seconds: number; blocked: number }>();
  for (const s of r.sessions) {
    const u = byUser.get(s.user) ?? { targets: new Set<string>(), sessions: 0, seconds: 0, blocked: 0 };
    u.targets.add(s.target);
    u.sessions++;
    u.seconds += s.durationSeconds ?? 0;
    u.blocked += s.statements.blocked;
    byUser.set(s.user, u);
  }
  const t = r.totals;
  const card = (n: number, label: string, cls = '') => `<li><b class="${cls}">${n}</b><span>${esc(label)}</span></li>`;
  const parts: string[] = [];
  parts.push(
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>jit access evidence ${esc(when(r.since))} – ${esc(when(r.until))}</title>`,
    `<style>${CSS}</style></head><body>`,
    '<header><h1>Access evidence report</h1>',
    `<p class="meta">Window <b>${esc(when(r.since))}</b> to <b>${esc(when(r.until))}</b> · generated ${esc(when(r.generatedAt))}${opts.server ? ` · control plane ${esc(opts.server)}` : ''}</p></header>`,
    `<ul class="totals">${card(t.sessions, 'sessions')}${card(t.users, 'users')}${card(t.targets, 'targets')}${card(t.statements, 'statements')}${card(t.blocked, 'blocked', t.blocked ? 'bad' : '')}${card(t.masked, 'results masked')}${card(t.approvals, 'approvals')}${card(t.denied, 'refused', t.denied ? 'warn' : '')}</ul>`,
  );
  if (r.truncated)
    parts.push(
      '<p class="warn">This report was cut short: the window holds more sessions or refusals than one report lists. Use a shorter window.</p>',
    );
  if (targets.length) parts.push(`<nav>Targets: ${targets.map((n) => `<a href="#${esc(anchorId(n))}">${esc(n)}</a>`).join('')}</nav>`);

  parts.push('<h2>Who accessed what</h2>');
  if (byUser.size === 0) parts.push('<p class="muted">No sessions in this window.</p>');
  else {
    parts.push(
      '<table class="users"><thead><tr><th>User</th><th>Targets</th><th class="num">Sessions</th><th class="num">Time connected</th><th class="num">Blocked statements</th></tr></thead><tbody>',
    );
    for (const [user, u] of [...byUser.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      parts.push(
        `<tr><td>${esc(user)}</td><td>${[...u.targets].sort().map(esc).join(', ')}</td><td class="num">${u.sessions}</td><td class="num">${esc(formatDuration(u.seconds))}</td><td class="num${u.blocked ? ' bad' : ''}">${u.blocked}</td></tr>`,
      );
    }
    parts.push('</tbody></table>');
  }

  for (const name of targets) {
    const list = byTarget.get(name)!;
    parts.push(`<section id="${esc(anchorId(name))}" class="target"><h2>Target ${esc(name)}</h2>`);
    parts.push(
      `<p class="muted">${list.length} session(s). Bars: blue ended normally, amber ended otherwise (heartbeat lost, ended by an admin…), green still open; a red outline marks sessions with blocked statements.</p>`,
    );
    parts.push(timelineSvg(name, list, since, until));
    parts.push(
      '<table class="sessions"><thead><tr><th>User</th><th>Session</th><th>Started</th><th>Ended</th><th class="num">Duration</th><th>Approval / rule / reason</th><th>Credential</th><th class="num">Connections</th><th class="num">Statements</th><th class="num">Failed</th><th class="num">Blocked</th><th class="num">Masked</th><th class="num">Approved stmts</th></tr></thead><tbody>',
    );
    for (const s of list) parts.push(sessionRow(s));
    parts.push('</tbody></table></section>');
  }

  parts.push('<h2>Refused access</h2>');
  if (r.denied.length === 0) parts.push('<p class="muted">No refusals in this window.</p>');
  else {
    parts.push(
      '<table class="denied"><thead><tr><th>Time</th><th>Event</th><th>User</th><th>Target</th><th>Reason</th></tr></thead><tbody>',
    );
    for (const d of r.denied) {
      parts.push(
        `<tr><td>${esc(when(d.time))}</td><td><code>${esc(d.type)}</code></td><td>${esc(d.user ?? '—')}</td><td>${esc(d.target ?? '—')}</td><td>${esc(d.reason ?? '')}</td></tr>`,
      );
    }
    parts.push('</tbody></table>');
  }
  parts.push(
    "<footer>Built from the control plane's hash-chained audit log. Check that the log is intact with <code>jit audit verify</code>; ",
    'counts cover events inside the window only.</footer></body></html>\n',
  );
  return parts.join('\n');
}
