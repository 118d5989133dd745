/** Plain-text renderings of API data, shared by list commands and pinned by snapshot tests. */
import type { AuditEvent, Session, Target, WhoAmI } from '#shared/contract/http.js';
import { formatDuration } from '#shared/duration.js';
import { clean, styles } from './style.js';
import { renderTable } from './table.js';

/** `2026-05-01T10:00:00.123Z` → `2026-05-01 10:00:00Z` (UTC, so output does not depend on the machine). */
export function shortTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return clean(iso);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** Bytes as B / KiB / MiB / GiB with one decimal. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** The `jit targets` table. */
export function formatTargets(targets: readonly Target[], color: boolean): string {
  const st = styles(color);
  return renderTable(
    [
      { header: 'NAME', value: (t) => t.name },
      { header: 'TYPE', value: (t) => t.type },
      { header: 'ONLINE', value: (t) => (t.online ? 'yes' : 'no') },
      { header: 'DESCRIPTION', value: (t) => t.description, maxWidth: 60 },
    ],
    targets,
    { color: st.color, empty: 'No targets available to you.' },
  );
}

/** The `jit sessions` table; `now` gives the time left of active sessions. */
export function formatSessions(sessions: readonly Session[], now: number, color: boolean): string {
  return renderTable(
    [
      { header: 'ID', value: (s) => s.id },
      { header: 'USER', value: (s) => s.user, maxWidth: 32 },
      { header: 'TARGET', value: (s) => s.target },
      { header: 'STATE', value: (s) => (s.state === 'ended' && s.endReason ? `ended (${s.endReason})` : s.state) },
      { header: 'STARTED', value: (s) => shortTime(s.createdAt) },
      {
        header: 'LEFT',
        value: (s) => (s.state === 'active' ? formatDuration((Date.parse(s.expiresAt) - now) / 1000) : '-'),
        align: 'right',
      },
      { header: 'REASON', value: (s) => s.reason ?? '', maxWidth: 40 },
    ],
    sessions,
    { color, empty: 'No sessions.' },
  );
}

/** The `jit audit` table. */
export function formatAudit(events: readonly AuditEvent[], color: boolean): string {
  return renderTable(
    [
      { header: 'TIME', value: (e) => shortTime(e.time) },
      { header: 'TYPE', value: (e) => e.type },
      { header: 'ACTOR', value: (e) => e.actor ?? '-', maxWidth: 32 },
      { header: 'TARGET', value: (e) => e.target ?? '-' },
      { header: 'SESSION', value: (e) => e.session ?? '-' },
      { header: 'OUTCOME', value: (e) => e.outcome },
    ],
    events,
    { color, empty: 'No audit events match.' },
  );
}

/** `jit whoami` as a few aligned lines. */
export function formatWhoami(w: WhoAmI, server: string, now: number): string {
  const rows: [string, string][] = [
    ['server', server],
    ['user', w.username],
    ['subject', w.subject],
    ...(w.email ? ([['email', w.email]] as [string, string][]) : []),
    ['groups', w.groups.length ? w.groups.join(', ') : '-'],
    ['admin', w.admin ? 'yes' : 'no'],
    ['issuer', w.issuer],
    ['token expires', `${shortTime(w.expiresAt)} (in ${formatDuration((Date.parse(w.expiresAt) - now) / 1000)})`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${clean(v)}`).join('\n') + '\n';
}
