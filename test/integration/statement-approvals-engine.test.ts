/**
 * The agent's hold point for require-approval statements against a real PostgreSQL, with the test
 * playing the control plane (it reads the agent's approval.request messages and answers with
 * approval.decision, including forged ones): an approval releases only the exact statement text
 * and parameters it was asked for, a session-kind approval covers the same shape in the same
 * session only, and a lost control channel, a CancelRequest or a departed client end the wait.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatementApprovals } from '#agent/engines/inspect/approval.js';
import { type AgentApprovalRequest, type AgentToServer, statementDigest } from '#shared/contract/agent.js';
import { silentLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { sql } from '../helpers/postgres.js';
import { type Harness, startInspectHarness } from './inspect-harness.js';

const RULES = {
  guardrails: [{ name: 'deletes', match: { kinds: ['delete'] }, action: 'require-approval', approvers: { users: ['bob'], timeout: '1m' } }],
  masking: [],
  maskedComputation: 'refuse',
};

const sent: AgentToServer[] = [];
const channel = { up: true };
const approvals = new StatementApprovals({
  send: (m) => {
    if (!channel.up) return false;
    sent.push(m);
    return true;
  },
  connected: () => channel.up,
  clock: systemClock,
  random: randomBytes,
  logger: silentLogger(),
});
let h: Harness;

beforeAll(async () => {
  h = await startInspectHarness('sa', [], { approve: approvals.await });
});
afterAll(async () => {
  await h?.close();
});

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: h.url(h.newSession(RULES)) });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** The next approval.request the agent sends. */
async function nextRequest(after = sent.length): Promise<AgentApprovalRequest> {
  for (let i = 0; i < 200; i++) {
    const m = sent.slice(after).find((x) => x.type === 'approval.request');
    if (m) return m as AgentApprovalRequest;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no approval.request');
}

const ordersLeft = async (id: number) => (await sql(h.superDbUrl, 'select count(*)::int as n from orders where id = $1', [id]))[0]?.n;
const settle = <T>(p: Promise<T>) =>
  p.then(
    (ok) => ({ ok }),
    (err) => ({ err }),
  );

describe('the agent holds a statement until the control plane decides', () => {
  it('an approval whose digest is another statement’s is refused: approving X never runs Y', async () => {
    const c = await connect();
    try {
      const held = settle(c.query('delete from orders where id = 1'));
      const req = await nextRequest();
      expect(req).toMatchObject({
        sql: 'delete from orders where id = 1',
        rule: 'deletes',
        digest: statementDigest('delete from orders where id = 1', undefined),
      });
      expect(req.approvers).toMatchObject({ users: ['bob'] });
      expect(req.timeoutSeconds).toBe(60);
      const mark = sent.length;
      // A forged decision for the request id, carrying the digest of a different statement.
      approvals.onDecision({
        type: 'approval.decision',
        requestId: req.requestId,
        decision: 'approved',
        digest: statementDigest('delete from orders', undefined),
        request: 'r1',
        approver: 'bob',
      });
      expect(await held).toMatchObject({
        err: { code: '42501', message: expect.stringContaining('the approval does not match the held statement') },
      });
      expect(sent.slice(mark)).toContainEqual({ type: 'approval.cancel', requestId: req.requestId });
      expect(await ordersLeft(1)).toBe(1);
      // A decision for a request id the agent never chose releases nothing.
      approvals.onDecision({ type: 'approval.decision', requestId: 'made-up-0001', decision: 'approved', digest: req.digest });
      expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('extended protocol: bound to the parameters too; the matching approval runs it and the audit names it', async () => {
    const c = await connect();
    try {
      const held = settle(c.query('delete from orders where id = $1', [2]));
      const req = await nextRequest();
      expect(req).toMatchObject({
        sql: 'delete from orders where id = $1',
        params: ['2'],
        digest: statementDigest('delete from orders where id = $1', ['2']),
      });
      // Sync came right behind the Execute: the client's pipeline waits with it.
      approvals.onDecision({
        type: 'approval.decision',
        requestId: req.requestId,
        decision: 'approved',
        digest: statementDigest('delete from orders where id = $1', ['3']),
      });
      expect(await held).toMatchObject({ err: { code: '42501' } });
      expect(await ordersLeft(2)).toBe(1);

      const again = settle(c.query('delete from orders where id = $1', [2]));
      const req2 = await nextRequest(sent.indexOf(req) + 1);
      expect(req2.requestId).not.toBe(req.requestId);
      approvals.onDecision({
        type: 'approval.decision',
        requestId: req2.requestId,
        decision: 'approved',
        digest: req2.digest,
        request: 'req-two',
        approver: 'bob',
      });
      expect(await again).toMatchObject({ ok: { rowCount: 1 } });
      expect(await ordersLeft(2)).toBe(0);
      const executed = h.events.find((e) => e.event === 'statement.executed' && e.data?.['approval'] === 'req-two');
      expect(executed?.data).toMatchObject({ sql: 'delete from orders where id = $1', params: ['2'], approvalScope: 'statement' });
      // A NULL parameter is shown to approvers as null, not as the text 'NULL'.
      const nul = settle(c.query('delete from orders where customer is not distinct from $1', [null]));
      const req3 = await nextRequest(sent.indexOf(req2) + 1);
      expect(req3.params).toEqual([null]);
      expect(req3.digest).toBe(statementDigest('delete from orders where customer is not distinct from $1', [null]));
      approvals.onDecision({ type: 'approval.decision', requestId: req3.requestId, decision: 'expired', digest: req3.digest });
      expect(await nul).toMatchObject({ err: { message: expect.stringContaining('nobody decided in time') } });
    } finally {
      await c.end();
    }
  });

  it('session-kind: the same shape in the same session runs without asking, until the time is up; other sessions ask', async () => {
    await sql(h.superDbUrl, 'insert into orders (id, customer, amount) values (101, 9, 1), (102, 9, 1), (103, 9, 1), (104, 9, 1)');
    const c = await connect();
    const other = await connect();
    try {
      const held = settle(c.query('delete from orders where id = 101'));
      const req = await nextRequest();
      expect(req.fingerprint).toMatch(/^[0-9a-f]{16}$/);
      approvals.onDecision({
        type: 'approval.decision',
        requestId: req.requestId,
        decision: 'approved',
        digest: req.digest,
        request: 'req-kind',
        scope: { type: 'session-kind', until: new Date(Date.now() + 60_000).toISOString(), fingerprint: req.fingerprint },
      });
      expect(await held).toMatchObject({ ok: { rowCount: 1 } });
      const mark = sent.length;
      expect((await c.query('delete from orders where id = 102')).rowCount).toBe(1);
      expect(sent.slice(mark).filter((m) => m.type === 'approval.request')).toEqual([]);
      // Another session (another role, another client) is not covered.
      const elsewhere = settle(other.query('delete from orders where id = 103'));
      const req2 = await nextRequest(mark);
      approvals.onDecision({
        type: 'approval.decision',
        requestId: req2.requestId,
        decision: 'denied',
        digest: req2.digest,
        approver: 'bob',
        reason: 'no',
      });
      expect(await elsewhere).toMatchObject({ err: { message: expect.stringContaining('bob denied it: no') } });
      expect(await ordersLeft(103)).toBe(1);
    } finally {
      await c.end();
      await other.end();
    }
  });

  it('the control channel going down while a statement waits refuses it; the request is cancelled after reconnecting', async () => {
    const c = await connect();
    try {
      const held = settle(c.query('delete from orders where id = 104'));
      const req = await nextRequest();
      channel.up = false;
      approvals.onDisconnected();
      expect(await held).toMatchObject({
        err: { code: '42501', message: expect.stringContaining('lost its connection to the control plane') },
      });
      // Still down: refused at once, nothing is sent.
      expect(await settle(c.query('delete from orders where id = 104'))).toMatchObject({
        err: { message: expect.stringContaining('no connection to the control plane') },
      });
      channel.up = true;
      const mark = sent.length;
      approvals.onConnected();
      expect(sent.slice(mark)).toContainEqual({ type: 'approval.cancel', requestId: req.requestId });
      // A late decision for it runs nothing.
      approvals.onDecision({ type: 'approval.decision', requestId: req.requestId, decision: 'approved', digest: req.digest });
      expect(await ordersLeft(104)).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('a CancelRequest (psql Ctrl-C) gives up the wait with 57014 and cancels the request', async () => {
    const c = await connect();
    try {
      const held = settle(c.query('delete from orders where id = 104'));
      const req = await nextRequest();
      const mark = sent.length;
      await new Promise<void>((resolve) => {
        const con = new (pg as any).Connection();
        con.on('connect', () => con.cancel((c as any).processID, (c as any).secretKey));
        con.on('end', resolve);
        con.on('error', resolve);
        con.connect(h.port, '127.0.0.1');
      });
      expect(await held).toMatchObject({ err: { code: '57014' } });
      expect(sent.slice(mark)).toContainEqual({ type: 'approval.cancel', requestId: req.requestId });
      expect((await c.query('select 1 as one')).rows[0].one).toBe(1);
      expect(await ordersLeft(104)).toBe(1);
    } finally {
      await c.end();
    }
  });

  it('a client that goes away while its statement waits cancels the request', async () => {
    const c = await connect();
    void c.query('delete from orders where id = 104').catch(() => {});
    const req = await nextRequest();
    const mark = sent.length;
    await c.end();
    for (let i = 0; i < 100 && !sent.slice(mark).some((m) => m.type === 'approval.cancel'); i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(sent.slice(mark)).toContainEqual({ type: 'approval.cancel', requestId: req.requestId });
    expect(approvals.held).toBe(0);
  });
});
