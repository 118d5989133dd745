import { type Command, InvalidArgumentError } from 'commander';
import type { AuditEvent, Session } from '#shared/contract/http.js';
import { type ApiClient, checkSessionId } from '../api/client.js';
import { cliServices } from '../api/services.js';
import type { CommandEnv } from '../main.js';
import { printJson } from '../output/json.js';
import { outputMode } from '../output/mode.js';
import { clean } from '../output/style.js';
import { parseCast, playCast } from '../ssh/playback.js';
import { TerminalFilter } from '../ssh/terminal-filter.js';
import { fetchRecording } from '../ssh/recording-client.js';

/** A session and its events, oldest first (GET /v1/sessions/:id/events). */
export function runReplay(deps: { api: ApiClient }, id: string): Promise<{ session: Session; events: AuditEvent[] }> {
  return deps.api.sessionEvents(checkSessionId(id));
}

function offset(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  const m = Math.floor(s / 60);
  return `+${String(m).padStart(2, '0')}:${(s % 60).toFixed(3).padStart(6, '0')}`;
}

function oneLine(text: unknown, max = 160): string {
  const s = clean(String(text ?? ''))
    .replace(/\s+/g, ' ')
    .trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** What one event says, in a line. */
function describe(e: AuditEvent): string {
  const d = e.data as Record<string, unknown>;
  switch (e.type) {
    case 'statement.executed':
      return `${oneLine(d['sql'])}${Array.isArray(d['params']) && d['params'].length ? `  params=${oneLine(JSON.stringify(d['params']), 80)}` : ''}`;
    case 'statement.completed':
      return [
        d['tag'] ?? d['command'],
        d['rows'] !== undefined ? `${d['rows']} rows` : '',
        d['sqlstate'] ? `error ${d['sqlstate']}` : '',
        d['durationMs'] !== undefined ? `${d['durationMs']} ms` : '',
      ]
        .filter(Boolean)
        .join(', ');
    case 'statement.blocked':
      return `${oneLine(d['sql'])}  ← rule ${d['rule'] ?? '?'}${d['reason'] ? `: ${oneLine(d['reason'], 80)}` : ''}`;
    case 'result.masked':
      return `columns ${oneLine(JSON.stringify(d['columns']), 80)} (rule ${d['rule'] ?? '?'})`;
    case 'session.started':
      return `by ${e.actor ?? '?'}${d['reason'] ? `, reason: ${oneLine(d['reason'], 80)}` : ''}`;
    case 'session.ended':
      return `${d['reason'] ?? ''}`;
    case 'credential.created':
    case 'credential.destroyed':
      return d['kind'] === 'ssh-certificate'
        ? `ssh certificate ${d['keyId'] ?? ''} serial ${d['serial'] ?? ''}`.trim()
        : `${d['role'] ?? ''}`;
    case 'command.started':
    case 'command.executed':
      return `${oneLine(d['command'])}${d['exitStatus'] !== undefined ? `  → exit ${d['exitStatus']}` : ''}`;
    case 'command.blocked':
      return `${oneLine(d['command'] ?? (d['interactive'] ? '(interactive shell)' : d['subsystem']))}  ← rule ${d['rule'] ?? '?'}`;
    default:
      return Object.keys(d).length ? oneLine(JSON.stringify(d), 120) : '';
  }
}

/** The timeline as text: one line per event, with the time since the session started. */
export function formatTimeline(session: Session, events: AuditEvent[]): string {
  const start = Date.parse(session.createdAt);
  const head = `session ${session.id}  ${session.user} → ${session.target}  ${session.createdAt}${session.endedAt ? ` … ${session.endedAt} (${session.endReason ?? 'ended'})` : ' (active)'}\n`;
  const lines = events.map((e) => `${offset(Date.parse(e.time) - start)}  ${e.type.padEnd(22)} ${describe(e)}`.trimEnd());
  return `${head}${lines.join('\n')}\n`;
}

function parseSpeed(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0.1 || n > 100) throw new InvalidArgumentError('a number from 0.1 to 100');
  return n;
}

export function registerReplay(program: Command, env: CommandEnv): void {
  program
    .command('replay')
    .description(
      "replay a session: an SSH session's terminal as it was shown, or a session's timeline of statements, decisions and credentials (yours, or any for admins)",
    )
    .argument('<session>', 'session id')
    .option('--speed <n>', 'playback speed of a terminal recording (default 1)', parseSpeed, 1)
    .option('--events', 'show the timeline of events even when the session has a terminal recording')
    .option('--raw', 'replay the recorded output unfiltered, escape sequences that change or query your terminal included')
    .action(async (id: string, flags: { speed: number; events?: boolean; raw?: boolean }) => {
      const { ctx } = env;
      const mode = outputMode(ctx, env.globals());
      const services = cliServices(ctx, env.globals());
      const result = await runReplay(services, id);
      if (mode.json) return printJson(ctx.io.stdout, result);
      const recorded = result.events.some((e) => e.type === 'recording.started');
      if (recorded && !flags.events) {
        const text = await fetchRecording(
          { ctx, server: services.settings.server, accessToken: () => services.auth.getAccessToken() },
          result.session.id,
        );
        if (text !== undefined) {
          mode.status(
            `session ${result.session.id}  ${clean(result.session.user)} → ${clean(result.session.target)}  ${result.session.createdAt} (recording; --events for the timeline)`,
          );
          if (flags.raw) {
            ctx.io.stderr.write(
              'jit: --raw: the recording reaches your terminal unfiltered; a host can set its title, write your clipboard or make it type\n',
            );
          }
          const filter = flags.raw ? undefined : new TerminalFilter();
          await playCast(parseCast(text), { out: ctx.io.stdout, clock: ctx.clock, speed: flags.speed, ...(filter ? { filter } : {}) });
          const removed = filter?.summary();
          if (removed) mode.status(`jit: ${removed} (--raw shows them)`);
          return;
        }
      }
      ctx.io.stdout.write(formatTimeline(result.session, result.events));
    });
}
