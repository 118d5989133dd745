// Output approvers and requesters read, pinned; also the request view (a .ts file so vitest picks it up).
import { renderToString } from 'ink';
import { createElement } from 'react';
import { describe, expect, it } from 'vitest';
import type { AccessRequest } from '#shared/contract/http.js';
import { RequestView } from '../ui/request-view.js';
import { formatRequest, formatRequests } from './format.js';
import { approversText, notApprovedError } from './wait.js';

const base: AccessRequest = {
  id: 'abcdefghij0123456789',
  kind: 'access',
  requester: { subject: 'alice', issuer: 'http://x/oidc', username: 'alice' },
  target: 'prod-db',
  reason: 'INC-42',
  durationSeconds: 1800,
  rule: 'prod-change',
  approvers: { users: ['bob'], groups: ['dba'], required: 2 },
  state: 'pending',
  approvals: [{ approver: 'bob', time: '2026-05-01T10:01:00Z', comment: 'ok' }],
  createdAt: '2026-05-01T10:00:00Z',
  expiresAt: '2026-05-01T10:30:00Z',
  canReview: true,
};

describe('requests output', () => {
  it('jit requests', () => {
    expect(
      formatRequests([base, { ...base, id: 'zzzzzzzzzz0000000000', state: 'denied', canReview: false, reason: undefined }], false),
    ).toMatchInlineSnapshot(`
        "ID                    KIND    USER   TARGET   STATE                     APPROVALS  CREATED               REASON
        abcdefghij0123456789  access  alice  prod-db  pending (you may review)        1/2  2026-05-01 10:00:00Z  INC-42
        zzzzzzzzzz0000000000  access  alice  prod-db  denied                          1/2  2026-05-01 10:00:00Z
        "
      `);
  });

  it('jit requests <id> for a held statement shows the statement and its parameters, escapes neutralised', () => {
    const r: AccessRequest = {
      ...base,
      kind: 'statement',
      session: 'sessionid0123456789a',
      durationSeconds: 0,
      statement: { sql: 'delete from orders\nwhere id = $1 -- \x1b[2J', params: ['42', null], digest: 'f'.repeat(64), kind: 'delete' },
    };
    expect(formatRequest(r, Date.parse('2026-05-01T10:05:00Z'))).toMatchInlineSnapshot(`
      "request      abcdefghij0123456789
      kind         statement (held in the session until decided)
      requester    alice
      target       prod-db
      session      sessionid0123456789a
      reason       INC-42
      rule         prod-change
      approvers    bob, group dba (2 needed)
      state        pending
      created      2026-05-01 10:00:00Z
      expires      2026-05-01 10:30:00Z (in 25m 00s)
      approved by  bob at 2026-05-01 10:01:00Z: ok

      statement (delete, digest ffffffffffffffff…):
        delete from orders
        where id = $1 -- ⟨U+001B⟩[2J
      parameters:
        $1 = "42"
        $2 = NULL
      "
    `);
  });

  it('approvers and the errors a requester sees', () => {
    expect(approversText(base.approvers)).toBe('bob, group dba (2 needed)');
    const denied = notApprovedError({
      ...base,
      state: 'denied',
      denial: { approver: 'bob', reason: 'freeze', time: '2026-05-01T10:02:00Z' },
    });
    expect([denied.code, denied.exitCode, denied.message, denied.hint]).toEqual([
      'JIT_APPROVAL_DENIED',
      5,
      'Access to prod-db needs approval, and bob denied it: freeze',
      'jit connect prod-db --reason "…" files a new request',
    ]);
    const expired = notApprovedError({ ...base, state: 'expired', approvals: [] });
    expect([expired.exitCode, expired.message]).toEqual([
      6,
      'Request abcdefghij0123456789 for prod-db expired: nobody approved it within 30m 00s',
    ]);
    expect(notApprovedError({ ...base, state: 'cancelled' }).exitCode).toBe(5);
  });

  it('the waiting view (no colour)', () => {
    const out = renderToString(
      createElement(RequestView, {
        requestId: base.id,
        target: 'prod-db',
        approvers: approversText(base.approvers),
        required: 2,
        approvals: base.approvals,
        elapsedSeconds: 75,
        secondsLeft: 1725,
        color: false,
      }),
      { columns: 120 },
    );
    expect(out.replace(/^\S+ Waiting/, '* Waiting')).toMatchInlineSnapshot(`
      "* Waiting for approval: prod-db (request abcdefghij0123456789)
        approvers bob, group dba (2 needed) · 1 of 2 approved
        ✓ bob: “ok”
        waiting 1m 15s · expires in 28m 45s · Ctrl-C cancels the request"
    `);
  });
});

describe('untrusted text cannot deceive an approver', () => {
  it('makes bidi overrides, zero-width and control characters visible and folds very long values', async () => {
    const { visible } = await import('../output/style.js');
    expect(visible('drop\u202Etable')).toBe('drop⟨U+202E⟩table');
    expect(visible('dr\u200Bop')).toBe('dr⟨U+200B⟩op');
    expect(visible('a\u2066b\u2069c\uFEFF')).toBe('a⟨U+2066⟩b⟨U+2069⟩c⟨U+FEFF⟩');
    expect(visible('x\ry\u0007')).toBe('x⟨U+000D⟩y⟨U+0007⟩');
    const long = visible('a'.repeat(5000), 400);
    expect(long.length).toBeLessThan(450);
    expect(long).toContain('more characters');
  });
});
