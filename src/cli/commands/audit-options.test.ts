import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createSystemCtx } from '#shared/runtime/ctx.js';
import { run } from '../main.js';
import { parseWhen } from './audit.js';
import { esc, renderReportHtml } from './audit-report-html.js';

async function jit(args: string[]): Promise<{ code: number; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let err = '';
  stderr.on('data', (c) => (err += c));
  const ctx = createSystemCtx({ io: { stdin: new PassThrough(), stdout, stderr }, env: { NO_COLOR: '1', HOME: '/nonexistent' } });
  const code = await run(['node', 'jit', ...args, '--server', 'http://127.0.0.1:1'], ctx);
  return { code, stderr: err };
}

describe('jit audit options', () => {
  it('reads durations and ISO times', () => {
    expect(parseWhen('2h', 10_000_000)).toBe(10_000_000 - 7_200_000);
    expect(parseWhen('2026-05-01T10:00:00Z', 0)).toBe(Date.parse('2026-05-01T10:00:00Z'));
    expect(() => parseWhen('yesterday', 0)).toThrow(/not a time/);
  });

  it('regression: --since after a subcommand reaches the subcommand (commander gave it to `audit`)', async () => {
    for (const sub of ['verify', 'report', 'export']) {
      const r = await jit(['audit', sub, '--since', 'soon']);
      expect(r.code, sub).toBe(2);
      expect(r.stderr).toContain('"soon" is not a time');
    }
  });

  it('verify --file without --key is refused before anything is read', async () => {
    const r = await jit(['audit', 'verify', '--file', 'x.jsonl']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--file needs --key');
  });
});

describe('the HTML report', () => {
  it('escapes hostile text from the log and loads nothing', () => {
    const html = renderReportHtml({
      generatedAt: '2026-05-01T10:00:00.000Z',
      since: '2026-05-01T00:00:00.000Z',
      until: '2026-05-01T10:00:00.000Z',
      totals: { sessions: 1, users: 1, targets: 1, statements: 3, blocked: 1, masked: 0, approvals: 1, denied: 0 },
      sessions: [
        {
          id: 'abcdefghij0123456789',
          user: '<img src=x onerror=alert(1)>',
          target: 'prod"db',
          startedAt: '2026-05-01T09:00:00.000Z',
          endedAt: '2026-05-01T09:30:00.000Z',
          durationSeconds: 1800,
          endReason: 'exit',
          reason: '</td><script>alert(1)</script>',
          requestId: 'req00000000000000001',
          credentials: [
            {
              role: 'jit_abcdefghij0123456789',
              createdAt: '2026-05-01T09:00:01.000Z',
              destroyedAt: '2026-05-01T09:30:01.000Z',
              outcome: 'success',
            },
          ],
          connections: 2,
          statements: { executed: 3, failed: 0, blocked: 1, masked: 0, approvals: 1 },
        },
      ],
      denied: [],
      truncated: false,
    });
    expect(html).not.toMatch(/<script|<img/i);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('req00000000000000001');
    expect(html).toContain('Target prod&quot;db');
    expect(esc('a\u0000b<')).toBe('ab&lt;');
  });
});
