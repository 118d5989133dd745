/**
 * Access requests and approvals against a real control plane (real IdP logins, real SQLite,
 * real sockets): alice requests, bob (and carol) approve, mallory is outside every policy.
 * Also: expiry, N of M, a restart in the middle of a request, webhooks from the durable outbox
 * (receiver down at first), and statement approvals through a hand-driven agent channel.
 */
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import WebSocket from 'ws';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Webhooks } from '#control-plane/approvals/webhooks.js';
import { AuditLog } from '#control-plane/audit/audit-log.js';
import { startServer } from '#control-plane/main.js';
import { openSqliteStore } from '#control-plane/store/db.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { ServerConfig } from '#shared/config/server.js';
import { statementDigest } from '#shared/contract/agent.js';
import type { AccessRequest } from '#shared/contract/http.js';
import { silentLogger } from '#shared/log.js';
import { api, loginAs, type ServerFixture, startControlPlane, type Tokens, USERS } from '../helpers/control-plane.js';
import { freePort } from '../helpers/postgres.js';

// A second approver for N-of-M. USERS is this file's own copy of the module (vitest isolates files).
USERS.push({ username: 'carol', password: 'carol-password-1', groups: ['approvers'] });

const SECRET = 'webhook-secret-for-tests-0123456789';
let cp: ServerFixture;
let hookPort: number;
let alice: Tokens;
let bob: Tokens;
let carol: Tokens;
let mallory: Tokens;

interface Delivery {
  path: string;
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: any;
}
const deliveries: Delivery[] = [];
let receiver: http.Server | undefined;

/** The webhook receiver; started late on purpose (the outbox must retry until it is up). */
async function startReceiver(): Promise<void> {
  receiver = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      deliveries.push({ path: req.url ?? '', headers: req.headers, raw, body: JSON.parse(raw) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver!.listen(hookPort, '127.0.0.1', () => r()));
}

async function boot(): Promise<void> {
  cp.server = await startServer({
    config: loadYamlConfigFile(cp.serverConfigPath, ServerConfig),
    configDir: cp.dir,
    logger: silentLogger(),
  });
  // After a restart, fetch's pool may still hold a keep-alive socket to the old server: use it up.
  await until(
    async () =>
      (await fetch(`${cp.url}/healthz`)
        .then((r) => r.ok)
        .catch(() => false)) || undefined,
  );
}

async function until<T>(fn: () => T | undefined | Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const post = (t: Tokens, p: string, body: unknown = {}) => api(cp.url, t.accessToken, 'POST', p, body);
const get = (t: Tokens, p: string) => api(cp.url, t.accessToken, 'GET', p);
const file = async (target: string, extra: Record<string, unknown> = {}) => {
  const res = await post(alice, '/v1/requests', { target, reason: 'INC-1234: fix the stuck orders', ...extra });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.request as { id: string; state: string };
};
const auditOf = async (type: string, requestId: string) =>
  ((await get(bob, `/v1/audit?type=${type}`)).body.events as any[]).filter((e) => e.data.request === requestId);

beforeAll(async () => {
  hookPort = await freePort();
  cp = await startControlPlane({
    writeOnly: true,
    policy: {
      targets: [
        { name: 'prod-db', type: 'postgres', agent: 'local', database: 'app' },
        { name: 'pair-db', type: 'postgres', agent: 'local' },
        { name: 'quick-db', type: 'postgres', agent: 'local' },
        { name: 'carol-db', type: 'postgres', agent: 'local' },
        { name: 'open-db', type: 'postgres', agent: 'local' },
      ],
      access: [{ name: 'engineers', targets: ['*'], groups: ['engineers'], grantRoles: ['app_reader'] }],
      approvals: [
        { name: 'prod-change', targets: ['prod-db'], approvers: { users: ['bob'], timeout: '10m' }, maxDuration: '30m' },
        // alice is an approver here too: refusing her is the self-approval rule, not the approver list.
        { name: 'two-person', targets: ['pair-db'], approvers: { users: ['alice', 'bob', 'carol'], required: 2 } },
        { name: 'quick', targets: ['quick-db'], approvers: { users: ['bob'], timeout: '2s' }, reasonRequired: false },
        { name: 'carol-only', targets: ['carol-db'], approvers: { groups: ['approvers'] } },
      ],
      guardrails: [
        { name: 'deletes-need-approval', match: { kinds: ['delete'] }, action: 'require-approval', approvers: { users: ['bob'] } },
      ],
    },
  });
  const config = parse(readFileSync(cp.serverConfigPath, 'utf8'));
  config.notifications = {
    retryInitial: '200ms',
    retryMax: '1s',
    maxAttempts: 100,
    webhooks: [
      { url: `http://127.0.0.1:${hookPort}/jit`, secret: SECRET, format: 'jit' },
      { url: `http://127.0.0.1:${hookPort}/slack`, format: 'slack', events: ['request.created'] },
    ],
  };
  writeFileSync(cp.serverConfigPath, stringify(config));
  await boot();
  [alice, bob, carol, mallory] = await Promise.all([
    loginAs(cp.url, 'alice'),
    loginAs(cp.url, 'bob'),
    loginAs(cp.url, 'carol'),
    loginAs(cp.url, 'mallory'),
  ]);
});

afterAll(async () => {
  await new Promise((r) => (receiver ? receiver.close(r) : r(undefined)));
  await cp?.stop();
});

describe('a target with an approvals rule', () => {
  it('refuses a session without an approved request, saying what the rule asks for', async () => {
    const res = await post(alice, '/v1/sessions', { target: 'prod-db' });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('JIT_APPROVAL_REQUIRED');
    expect(res.body.error.hint).toContain('jit connect prod-db --reason');
    expect(res.body.approval).toEqual({
      rule: 'prod-change',
      target: 'prod-db',
      reasonRequired: true,
      approvers: { users: ['bob'], groups: [], required: 1 },
      timeoutSeconds: 600,
      maxDurationSeconds: 1800,
    });
    // Targets without a rule are unaffected.
    expect((await post(alice, '/v1/sessions', { target: 'open-db' })).status).toBe(201);
  });

  it('wants a reason, a duration within the rule, and an access rule for the requester', async () => {
    const noReason = await post(alice, '/v1/requests', { target: 'prod-db' });
    expect(noReason.status).toBe(400);
    expect(noReason.body.error).toMatchObject({ code: 'JIT_USAGE', message: expect.stringContaining('reason is required') });
    expect(noReason.body.error.hint).toContain('--reason');
    const tooLong = await post(alice, '/v1/requests', { target: 'prod-db', reason: 'x', durationSeconds: 3600 });
    expect(tooLong.body.error.code).toBe('JIT_SESSION_DURATION');
    const noAccess = await post(mallory, '/v1/requests', { target: 'prod-db', reason: 'let me in' });
    expect(noAccess.body.error.code).toBe('JIT_TARGET_NOT_FOUND');
    const needless = await post(alice, '/v1/requests', { target: 'open-db', reason: 'x' });
    expect(needless.body.error).toMatchObject({ code: 'JIT_USAGE', message: 'Sessions to open-db need no approval' });
  });
});

describe('approve', () => {
  it('bob approves; alice opens ONE session under it; the audit links them', async () => {
    const r = await file('prod-db', { durationSeconds: 900 });
    expect(r).toMatchObject({ state: 'pending', target: 'prod-db', requester: { username: 'alice' }, rule: 'prod-change' });

    // Visible to the requester and approvers, not to others; to-review lists it for bob only.
    expect((await get(alice, `/v1/requests/${r.id}`)).body.request.canReview).toBe(false);
    expect((await get(mallory, `/v1/requests/${r.id}`)).body.error.code).toBe('JIT_APPROVAL_NOT_FOUND');
    const review = (await get(bob, '/v1/requests?to-review=1')).body.requests as any[];
    expect(review.find((x) => x.id === r.id)).toMatchObject({ canReview: true, reason: 'INC-1234: fix the stuck orders' });
    expect((await get(mallory, '/v1/requests?to-review=1')).body.requests).toEqual([]);
    expect(((await get(alice, '/v1/requests?mine=1')).body.requests as any[]).map((x) => x.id)).toContain(r.id);

    // Pending: not usable yet.
    const early = await post(alice, '/v1/sessions', { target: 'prod-db', request: r.id });
    expect(early.body.error).toMatchObject({ code: 'JIT_APPROVAL_REQUIRED', message: `Request ${r.id} is still waiting for approval` });

    const ok = await post(bob, `/v1/requests/${r.id}/approve`, { comment: 'go ahead' });
    expect(ok.status).toBe(200);
    expect(ok.body.request).toMatchObject({ state: 'approved', approvals: [{ approver: 'bob', comment: 'go ahead' }] });
    expect(Date.parse(ok.body.request.usableUntil)).toBeGreaterThan(Date.now() + 9 * 60_000);

    // Someone else cannot ride alice's approval.
    expect((await post(bob, '/v1/sessions', { target: 'prod-db', request: r.id })).body.error.code).toBe('JIT_APPROVAL_NOT_FOUND');
    const s = await post(alice, '/v1/sessions', { target: 'prod-db', request: r.id });
    expect(s.status, JSON.stringify(s.body)).toBe(201);
    expect(s.body.session.request).toBe(r.id);
    expect(Date.parse(s.body.session.expiresAt) - Date.parse(s.body.session.createdAt)).toBe(900_000);
    const again = await post(alice, '/v1/sessions', { target: 'prod-db', request: r.id });
    expect(again.body.error).toMatchObject({ code: 'JIT_APPROVAL_DECIDED', message: expect.stringContaining('already opened a session') });
    expect((await get(alice, `/v1/requests/${r.id}`)).body.request).toMatchObject({ state: 'used', session: s.body.session.id });

    expect(await auditOf('request.created', r.id)).toMatchObject([{ actor: 'alice', target: 'prod-db' }]);
    expect(await auditOf('request.approved', r.id)).toMatchObject([{ actor: 'bob', data: { comment: 'go ahead', approved: true } }]);
    expect(await auditOf('request.used', r.id)).toMatchObject([{ actor: 'alice', session: s.body.session.id }]);
    const started = (await get(bob, `/v1/audit?session=${s.body.session.id}&type=session.started`)).body.events;
    expect(started[0].data.request).toBe(r.id);
  });

  it('refuses self-approval, approvers outside the rule, and counts each approver once (2 of 3)', async () => {
    const r = await file('pair-db');
    const self = await post(alice, `/v1/requests/${r.id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.error.message).toContain('your own request');
    expect((await post(mallory, `/v1/requests/${r.id}/approve`, {})).body.error.code).toBe('JIT_APPROVAL_NOT_FOUND');

    const first = await post(bob, `/v1/requests/${r.id}/approve`, {});
    expect(first.body.request).toMatchObject({ state: 'pending', approvals: [{ approver: 'bob' }] });
    const twice = await post(bob, `/v1/requests/${r.id}/approve`, {});
    expect(twice.status).toBe(409);
    expect(twice.body.error).toMatchObject({ code: 'JIT_APPROVAL_DECIDED', message: expect.stringContaining('already approved') });
    const second = await post(carol, `/v1/requests/${r.id}/approve`, { comment: 'second pair of eyes' });
    expect(second.body.request.state).toBe('approved');
    expect(second.body.request.approvals.map((a: any) => a.approver)).toEqual(['bob', 'carol']);
    expect((await auditOf('request.approved', r.id)).map((e) => [e.actor, e.data.approved])).toEqual([
      ['bob', false],
      ['carol', true],
    ]);
  });

  it('an administrator who is not among the approvers sees the request but cannot decide it', async () => {
    const r = await file('carol-db');
    expect((await get(bob, `/v1/requests/${r.id}`)).body.request.canReview).toBe(false);
    const res = await post(bob, `/v1/requests/${r.id}/approve`, {});
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'JIT_ACCESS_DENIED', message: expect.stringContaining('not an approver') });
    expect((await post(carol, `/v1/requests/${r.id}/approve`, {})).body.request.state).toBe('approved');
    // Decisions are final.
    const late = await post(carol, `/v1/requests/${r.id}/deny`, { reason: 'changed my mind' });
    expect(late.body.error.code).toBe('JIT_APPROVAL_DECIDED');
  });
});

describe('deny, cancel, expire', () => {
  it('a denial needs a reason, is final, and the requester learns why', async () => {
    const r = await file('prod-db');
    expect((await post(bob, `/v1/requests/${r.id}/deny`, {})).status).toBe(400);
    expect((await post(bob, `/v1/requests/${r.id}/deny`, { reason: '   ' })).status).toBe(400);
    const d = await post(bob, `/v1/requests/${r.id}/deny`, { reason: 'not during the freeze' });
    expect(d.body.request).toMatchObject({ state: 'denied', denial: { approver: 'bob', reason: 'not during the freeze' } });
    expect((await post(bob, `/v1/requests/${r.id}/approve`, {})).body.error.code).toBe('JIT_APPROVAL_DECIDED');
    const use = await post(alice, '/v1/sessions', { target: 'prod-db', request: r.id });
    expect(use.body.error).toMatchObject({
      code: 'JIT_APPROVAL_DENIED',
      message: expect.stringContaining('by bob: not during the freeze'),
    });
    expect((await post(alice, `/v1/requests/${r.id}/cancel`)).body.error.code).toBe('JIT_APPROVAL_DENIED');
    expect(await auditOf('request.denied', r.id)).toMatchObject([
      { actor: 'bob', outcome: 'failure', data: { reason: 'not during the freeze' } },
    ]);
  });

  it('the requester may cancel while pending; nobody else may', async () => {
    const r = await file('prod-db');
    expect((await post(bob, `/v1/requests/${r.id}/cancel`)).status).toBe(403);
    expect((await post(alice, `/v1/requests/${r.id}/cancel`)).body.request.state).toBe('cancelled');
    expect((await post(bob, `/v1/requests/${r.id}/approve`, {})).body.error.code).toBe('JIT_APPROVAL_CANCELLED');
    expect(await auditOf('request.cancelled', r.id)).toHaveLength(1);
  });

  it('a request nobody decides expires and cannot be approved afterwards', async () => {
    const r = await file('quick-db', { reason: undefined });
    await new Promise((res) => setTimeout(res, 2300));
    expect((await get(alice, `/v1/requests/${r.id}`)).body.request.state).toBe('expired');
    const late = await post(bob, `/v1/requests/${r.id}/approve`, {});
    expect(late.body.error.code).toBe('JIT_APPROVAL_EXPIRED');
    expect((await post(alice, '/v1/sessions', { target: 'quick-db', request: r.id })).body.error.code).toBe('JIT_APPROVAL_EXPIRED');
    expect(await auditOf('request.expired', r.id)).toMatchObject([{ actor: 'jit', data: { was: 'pending' } }]);
  });

  it('the sweeper expires requests nobody looks at', async () => {
    const r = await file('quick-db');
    await until(async () => (await auditOf('request.expired', r.id)).length === 1, 6000);
  });
});

describe('durability and notifications', () => {
  it('a request survives a restart and is approved afterwards; webhooks filed while the receiver was down arrive, signed', async () => {
    const r = await file('prod-db');
    await cp.server!.close();
    await boot();
    expect((await get(alice, `/v1/requests/${r.id}`)).body.request.state).toBe('pending');
    expect((await post(bob, `/v1/requests/${r.id}/approve`, {})).body.request.state).toBe('approved');
    expect((await post(alice, '/v1/sessions', { target: 'prod-db', request: r.id })).status).toBe(201);

    // The receiver comes up only now: the outbox has been retrying (and survived the restart).
    await new Promise((res) => setTimeout(res, 1500));
    expect(deliveries).toHaveLength(0);
    await startReceiver();
    const created = await until(() =>
      deliveries.find((d) => d.path === '/jit' && d.body.request.id === r.id && d.body.event === 'request.created'),
    );
    const decided = await until(() =>
      deliveries.find((d) => d.path === '/jit' && d.body.request.id === r.id && d.body.event === 'request.decided'),
    );
    for (const d of [created, decided]) {
      const expected = `sha256=${createHmac('sha256', SECRET).update(d.raw).digest('hex')}`;
      expect(d.headers['x-jit-signature']).toBe(expected);
      expect(Number(d.headers['x-jit-timestamp'])).toBeGreaterThan(Date.now() / 1000 - 60);
      expect(d.body.delivery.attempt).toBeGreaterThan(1);
    }
    expect(created.body).toMatchObject({
      event: 'request.created',
      request: {
        id: r.id,
        state: 'pending',
        target: 'prod-db',
        requester: { username: 'alice' },
        reason: 'INC-1234: fix the stuck orders',
      },
      approve: { command: `jit approve ${r.id}`, url: `${cp.url}/v1/requests/${r.id}` },
    });
    expect(decided.body.request).toMatchObject({ state: 'approved', approvals: [{ approver: 'bob' }] });
    // A tampered body would not verify.
    expect(createHmac('sha256', SECRET).update(`${created.raw} `).digest('hex')).not.toBe(created.headers['x-jit-signature']);

    const slack = await until(() => deliveries.find((d) => d.path === '/slack' && d.body.text.includes(r.id)));
    expect(slack.body.text).toBe(`alice requests access to prod-db: INC-1234: fix the stuck orders (request ${r.id})`);
    expect(slack.body.blocks.length).toBeGreaterThan(1);
    expect(slack.headers['x-jit-signature']).toBeUndefined();
    expect(JSON.stringify(deliveries)).not.toContain(alice.accessToken);
  });
});

describe('webhook give-up', () => {
  it('after maxAttempts to a receiver that never answers, the row is given up and audited', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-hooks-'));
    const db = await openSqliteStore(dir);
    const audit = new AuditLog(db, systemClock);
    const deadPort = await freePort();
    const hooks = new Webhooks({
      db,
      audit,
      clock: systemClock,
      logger: silentLogger(),
      fetch: globalThis.fetch,
      random: (n) => Buffer.alloc(n, 0x80),
      env: {},
      publicUrl: 'http://127.0.0.1:1',
      config: {
        webhooks: [
          { url: `http://127.0.0.1:${deadPort}/x`, secret: SECRET, format: 'jit', events: ['request.created', 'request.decided'] },
        ],
        maxAttempts: 3,
        retryInitial: 0.1,
        retryMax: 0.2,
      },
    });
    try {
      const request = {
        id: 'a'.repeat(20),
        kind: 'access',
        requester: { subject: 's', issuer: 'i', username: 'alice' },
        target: 't',
        durationSeconds: 60,
        rule: 'r',
        approvers: { users: ['bob'], groups: [], required: 1 },
        state: 'pending',
        approvals: [],
        createdAt: '',
        expiresAt: '',
        canReview: false,
      } satisfies AccessRequest;
      await db.transaction().execute((trx) => hooks.enqueue(trx, 'request.created', request));
      hooks.start();
      const failed = await until(async () => (await audit.query({ type: 'webhook.failed' }))[0]);
      expect(failed).toMatchObject({ outcome: 'failure', data: { event: 'request.created', request: request.id, attempts: 3 } });
      const row = await db.selectFrom('webhook_outbox').selectAll().executeTakeFirstOrThrow();
      expect(row).toMatchObject({ state: 'failed', attempts: 3 });
    } finally {
      await hooks.close();
      await db.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('statement approvals (the agent side driven by hand)', () => {
  it('files a held statement, shows it to approvers, sends the decision with its digest and scope', async () => {
    const { session } = (await post(alice, '/v1/sessions', { target: 'open-db', reason: 'cleanup' })).body;
    const ws = new WebSocket(`${cp.url.replace('http', 'ws')}/v1/agent/connect`, {
      headers: { authorization: `Bearer ${cp.agentToken}` },
    });
    const inbox: any[] = [];
    ws.on('message', (d) => inbox.push(JSON.parse(String(d))));
    await new Promise((r) => ws.on('open', r));
    ws.send(
      JSON.stringify({
        type: 'hello',
        agent: 'local',
        version: 't',
        protocol: 1,
        capabilities: ['postgres.inspect'],
        targets: [{ name: 'open-db', type: 'postgres' }],
      }),
    );
    await until(() => inbox.find((m) => m.type === 'welcome'));

    const sql = 'delete from orders where id = $1';
    const params = ['42'];
    const send = (m: object) =>
      ws.send(
        JSON.stringify({
          type: 'approval.request',
          session: session.id,
          sql,
          params,
          rule: 'deletes-need-approval',
          kind: 'delete',
          fingerprint: 'fp1',
          ...m,
        }),
      );
    // A digest that does not match the statement is refused at once.
    send({ requestId: 'agent-req-bad', digest: 'f'.repeat(64) });
    expect(await until(() => inbox.find((m) => m.requestId === 'agent-req-bad'))).toMatchObject({
      decision: 'denied',
      reason: expect.stringContaining('digest'),
    });

    const digest = statementDigest(sql, params);
    send({ requestId: 'agent-req-1', digest });
    const pending = await until(async () =>
      ((await get(bob, '/v1/requests?to-review=1')).body.requests as any[]).find((x) => x.kind === 'statement' && x.session === session.id),
    );
    expect(pending).toMatchObject({
      requester: { username: 'alice' },
      target: 'open-db',
      reason: 'cleanup',
      rule: 'deletes-need-approval',
      statement: { sql, params, digest, kind: 'delete' },
    });
    expect((await post(alice, `/v1/requests/${pending.id}/approve`, {})).status).toBe(403);
    await post(bob, `/v1/requests/${pending.id}/approve`, { scope: { type: 'session-kind', forSeconds: 600 } });
    const decision = await until(() => inbox.find((m) => m.type === 'approval.decision' && m.requestId === 'agent-req-1'));
    expect(decision).toMatchObject({
      decision: 'approved',
      digest,
      approver: 'bob',
      request: pending.id,
      scope: { type: 'session-kind', fingerprint: 'fp1' },
    });
    expect(Date.parse(decision.scope.until)).toBeGreaterThan(Date.now() + 500_000);

    // --scope is for statements only.
    const access = await file('prod-db');
    expect((await post(bob, `/v1/requests/${access.id}/approve`, { scope: { type: 'statement' } })).body.error.code).toBe('JIT_USAGE');
    ws.close();
    // Let the hub record the disconnect before the server shuts down.
    await until(async () => ((await get(bob, '/v1/audit?type=agent.disconnected')).body.events as any[]).length > 0);
  });
});
