// The status lines `jit connect` prints for statements its session holds for approval.
import { renderToString } from 'ink';
import { createElement } from 'react';
import { describe, expect, it } from 'vitest';
import type { AccessRequest } from '#shared/contract/http.js';
import { ConnectView } from '../ui/connect-view.js';
import { heldStatementUpdates, statementGist } from './connect.js';

const base: AccessRequest = {
  id: 'req00000000000000001',
  kind: 'statement',
  requester: { subject: 's', issuer: 'i', username: 'alice' },
  target: 'prod-db',
  durationSeconds: 0,
  rule: 'bulk-deletes',
  approvers: { users: ['bob'], groups: ['dba'], required: 1 },
  state: 'pending',
  approvals: [],
  createdAt: '2026-01-01T10:00:00Z',
  expiresAt: '2026-01-01T10:30:00Z',
  session: 'abcdefghij0123456789',
  statement: { sql: 'DELETE FROM customers\n  -- all of them\n', digest: 'f'.repeat(64), kind: 'delete' },
  canReview: false,
};

describe('held statements in jit connect', () => {
  it('prints one line when a statement starts waiting and one when it is decided', () => {
    const seen = new Map<string, string>();
    expect(heldStatementUpdates(seen, [base]).lines).toMatchInlineSnapshot(`
      [
        "waiting for approval of: DELETE FROM customers -- all of them (request req00000000000000001; approvers: bob, group dba)",
      ]
    `);
    // Still pending: nothing new.
    expect(heldStatementUpdates(seen, [base])).toMatchObject({ lines: [], waiting: [{ id: base.id }] });
    const denied: AccessRequest = {
      ...base,
      state: 'denied',
      denial: { approver: 'bob', reason: 'not\u001b[2J now', time: '2026-01-01T10:01:00Z' },
    };
    expect(heldStatementUpdates(seen, [denied])).toEqual({
      lines: ['request req00000000000000001 denied by bob: not [2J now'],
      waiting: [],
    });
    // Told once.
    expect(heldStatementUpdates(seen, [denied]).lines).toEqual([]);
    const second = { ...base, id: 'req00000000000000002', createdAt: '2026-01-01T10:02:00Z' };
    const approved = { ...second, state: 'approved' as const, approvals: [{ approver: 'bob', time: '2026-01-01T10:03:00Z' }] };
    heldStatementUpdates(seen, [second, denied]);
    expect(heldStatementUpdates(seen, [approved, denied]).lines).toEqual([
      'request req00000000000000002 approved by bob; the statement runs',
    ]);
  });

  it('a request decided before anyone saw it pending prints nothing', () => {
    expect(heldStatementUpdates(new Map(), [{ ...base, state: 'expired' }]).lines).toEqual([]);
  });

  it('cuts long statements to one line', () => {
    expect(statementGist(`UPDATE t SET x = 1 ${'-- padding '.repeat(20)}`, 30)).toBe('UPDATE t SET x = 1 -- padding…');
  });

  it('the live view lists what waits', () => {
    const out = renderToString(
      createElement(ConnectView, {
        target: 'prod-db',
        sessionId: 'abcdefghij0123456789',
        address: '127.0.0.1:5433',
        active: 1,
        total: 1,
        bytesIn: 0,
        bytesOut: 0,
        secondsLeft: 60,
        waiting: ['waiting for approval of: DELETE FROM customers (request req00000000000000001)'],
        color: false,
      }),
      { columns: 120 },
    );
    expect(out).toMatchInlineSnapshot(`
      "● prod-db on 127.0.0.1:5433 (session abcdefghij0123456789)
        connections 1 open, 1 total · in 0 B · out 0 B · 1m 00s left
        ⏳ waiting for approval of: DELETE FROM customers (request req00000000000000001)
        Ctrl-C ends the session and removes its credential"
    `);
  });
});
