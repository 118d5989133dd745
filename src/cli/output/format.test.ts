import { describe, expect, it } from 'vitest';
import type { AuditEvent, Session, Target } from '#shared/contract/http.js';
import { formatAudit, formatBytes, formatSessions, formatTargets, formatWhoami } from './format.js';
import { clean, wantColor } from './style.js';
import { renderTable } from './table.js';

const targets: Target[] = [
  { name: 'prod-db', type: 'postgres', description: 'Production orders', online: true, maxDurationSeconds: 3600, database: 'orders' },
  { name: 'web-1', type: 'ssh', description: '', online: false, maxDurationSeconds: 600 },
];

const session: Session = {
  id: 'abcdefghij0123456789',
  user: 'alice',
  target: 'prod-db',
  targetType: 'postgres',
  state: 'active',
  createdAt: '2026-05-01T10:00:00.000Z',
  expiresAt: '2026-05-01T10:30:00.000Z',
  reason: 'INC-42',
  dbUser: 'jit_abcdefghij0123456789',
};

describe('plain output', () => {
  it('jit targets', () => {
    expect(formatTargets(targets, false)).toMatchInlineSnapshot(`
      "NAME     TYPE      ONLINE  DESCRIPTION
      prod-db  postgres  yes     Production orders
      web-1    ssh       no
      "
    `);
    expect(formatTargets([], false)).toMatchInlineSnapshot(`
      "No targets available to you.
      "
    `);
  });

  it('jit sessions', () => {
    const ended: Session = { ...session, id: 'zzzzzzzzzz0000000000', state: 'ended', endReason: 'heartbeat-lost', reason: undefined };
    expect(formatSessions([session, ended], Date.parse('2026-05-01T10:05:00Z'), false)).toMatchInlineSnapshot(`
      "ID                    USER   TARGET   STATE                   STARTED                  LEFT  REASON
      abcdefghij0123456789  alice  prod-db  active                  2026-05-01 10:00:00Z  25m 00s  INC-42
      zzzzzzzzzz0000000000  alice  prod-db  ended (heartbeat-lost)  2026-05-01 10:00:00Z        -
      "
    `);
  });

  it('jit audit', () => {
    const events: AuditEvent[] = [
      {
        id: 1,
        time: '2026-05-01T10:00:01.5Z',
        type: 'session.started',
        actor: 'alice',
        target: 'prod-db',
        session: session.id,
        outcome: 'success',
        data: {},
      },
      { id: 2, time: '2026-05-01T10:00:02Z', type: 'statement.blocked', actor: 'alice', outcome: 'failure', data: {} },
    ];
    expect(formatAudit(events, false)).toMatchInlineSnapshot(`
      "TIME                  TYPE               ACTOR  TARGET   SESSION               OUTCOME
      2026-05-01 10:00:01Z  session.started    alice  prod-db  abcdefghij0123456789  success
      2026-05-01 10:00:02Z  statement.blocked  alice  -        -                     failure
      "
    `);
  });

  it('jit whoami', () => {
    const w = {
      subject: 'u-1',
      username: 'alice',
      email: 'alice@example.com',
      groups: ['dba', 'oncall'],
      admin: false,
      issuer: 'http://127.0.0.1:8443/oidc',
      expiresAt: '2026-05-01T10:10:00Z',
    };
    expect(formatWhoami(w, 'http://127.0.0.1:8443', Date.parse('2026-05-01T10:05:00Z'))).toMatchInlineSnapshot(`
      "server         http://127.0.0.1:8443
      user           alice
      subject        u-1
      email          alice@example.com
      groups         dba, oncall
      admin          no
      issuer         http://127.0.0.1:8443/oidc
      token expires  2026-05-01 10:10:00Z (in 5m 00s)
      "
    `);
  });

  it('the table cuts long cells, strips terminal escapes and colours the header only when asked', () => {
    const rows = [{ a: 'x'.repeat(20), b: 'evil\x1b]0;pwned\x07name' }];
    const cols = [
      { header: 'A', value: (r: (typeof rows)[0]) => r.a, maxWidth: 8 },
      { header: 'B', value: (r: (typeof rows)[0]) => r.b },
    ];
    expect(renderTable(cols, rows)).toMatchInlineSnapshot(`
      "A         B
      xxxxxxx…  evil ]0;pwned name
      "
    `);
    expect(renderTable(cols, rows, { color: true })).toContain('\x1b[1mA');
    expect(renderTable(cols, rows)).not.toContain('\x1b');
  });

  it('colour is off without a TTY or with NO_COLOR', () => {
    expect(wantColor({ isTTY: true }, {})).toBe(true);
    expect(wantColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(wantColor({ isTTY: false }, {})).toBe(false);
    expect(clean('a\u202eb')).toBe('a b');
  });

  it('bytes', () => {
    expect([0, 1023, 1024, 1536, 5 * 1024 * 1024].map(formatBytes)).toEqual(['0 B', '1023 B', '1.0 KiB', '1.5 KiB', '5.0 MiB']);
  });
});
