/**
 * The audit trail as an auditor and an attacker see it, against a real control plane over real
 * sockets: admin-only queries and tailing, verification that names tampering done directly in
 * the SQLite store, forwarding to an HTTP SIEM that is down and then up (every event exactly
 * once, across a restart) and to a syslog TCP receiver (RFC 5424, octet counting), and the
 * evidence report's data.
 */
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '#control-plane/main.js';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { ServerConfig } from '#shared/config/server.js';
import { silentLogger } from '#shared/log.js';
import { api, loginAs, type ServerFixture, startControlPlane, type Tokens } from '../helpers/control-plane.js';
import { eventually } from '../helpers/e2e-stack.js';
import { freePort } from '../helpers/postgres.js';

let cp: ServerFixture;
let server: RunningServer | undefined;
let alice: Tokens;
let bob: Tokens;
let siemPort: number;
let siem: http.Server | undefined;
/** Every event id the SIEM received, in arrival order (duplicates kept, to count them). */
const siemIds: number[] = [];
const siemKeys = new Set<string>();
let syslog: net.Server;
const syslogFrames: string[] = [];

async function start(): Promise<void> {
  server = await startServer({ config: loadYamlConfigFile(cp.serverConfigPath, ServerConfig), configDir: cp.dir, logger: silentLogger() });
}

function startSiem(): Promise<void> {
  siem = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      expect(req.headers['content-type']).toBe('application/x-ndjson');
      for (const line of body.split('\n').filter(Boolean)) {
        const r = JSON.parse(line) as { id: number; idempotencyKey: string };
        siemIds.push(r.id);
        siemKeys.add(r.idempotencyKey);
      }
      res.writeHead(204).end();
    });
  });
  return new Promise((r) => siem!.listen(siemPort, '127.0.0.1', () => r()));
}

/** Parse RFC 6587 octet-counted frames out of a byte stream. */
function frames(buf: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < buf.length) {
    const sp = buf.indexOf(0x20, i);
    const len = Number(buf.subarray(i, sp).toString('ascii'));
    out.push(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
    i = sp + 1 + len;
  }
  return out;
}

beforeAll(async () => {
  cp = await startControlPlane({
    writeOnly: true,
    policy: {
      targets: [
        { name: 'app-db', type: 'postgres', agent: 'local', database: 'app' },
        { name: 'other-db', type: 'postgres', agent: 'local', database: 'other' },
      ],
      access: [{ name: 'engineers-app', targets: ['app-db', 'other-db'], groups: ['engineers'], grantRoles: ['app_reader'] }],
    },
  });
  siemPort = await freePort();
  syslog = net.createServer((sock) => {
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => syslogFrames.push(...frames(Buffer.concat(chunks))));
  });
  await new Promise<void>((r) => syslog.listen(0, '127.0.0.1', () => r()));
  const config = parse(readFileSync(cp.serverConfigPath, 'utf8')) as Record<string, unknown>;
  config['audit'] = {
    checkpointEvery: 5,
    checkpointInterval: '1s',
    retryInitial: 0.2,
    retryMax: 0.5,
    forward: [
      // The SIEM is down at first: nothing listens on its port yet.
      { name: 'siem', type: 'http', url: `http://127.0.0.1:${siemPort}/ingest`, batchSize: 7, timeout: '2s' },
      { name: 'syslog', type: 'syslog', transport: 'tcp', host: '127.0.0.1', port: (syslog.address() as net.AddressInfo).port },
    ],
  };
  writeFileSync(cp.serverConfigPath, stringify(config));
  await start();
  [alice, bob] = await Promise.all([loginAs(cp.url, 'alice'), loginAs(cp.url, 'bob')]);
});

afterAll(async () => {
  await server?.close();
  await cp?.stop();
  siem?.close();
  syslog?.close();
});

const audit = (token: string, qs = '') => api(cp.url, token, 'GET', `/v1/audit${qs}`);

describe('who may read the audit log', () => {
  it('refuses non-admins everywhere under /v1/audit', async () => {
    for (const p of [
      '/v1/audit',
      '/v1/audit/verify',
      '/v1/audit/report?since=0',
      '/v1/audit/forwarding',
      '/v1/audit/key',
      '/v1/audit/checkpoints',
    ]) {
      const r = await api(cp.url, alice.accessToken, 'GET', p);
      expect(r.status, p).toBe(403);
      expect(r.body.error.code).toBe('JIT_ADMIN_REQUIRED');
    }
    expect((await api(cp.url, undefined, 'GET', '/v1/audit')).status).toBe(401);
  });
});

describe('queries', () => {
  it('filters by user, target, type prefix, outcome and time', async () => {
    const t0 = Date.now();
    const s1 = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', reason: 'INC-1' });
    const s2 = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'other-db' });
    expect([s1.status, s2.status]).toEqual([201, 201]);
    await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'nope-db' });
    const byTarget = await audit(bob.accessToken, `?target=other-db&since=${t0}`);
    expect(byTarget.body.events.map((e: any) => e.session)).toEqual([s2.body.session.id]);
    const prefix = await audit(bob.accessToken, `?type=session.&user=alice&since=${t0}`);
    expect(prefix.body.events.map((e: any) => e.type)).toEqual(['session.started', 'session.started', 'session.denied']);
    const failures = await audit(bob.accessToken, `?outcome=failure&since=${t0}`);
    expect(failures.body.events.map((e: any) => e.type)).toEqual(['session.denied']);
    expect((await audit(bob.accessToken, `?until=${t0}&type=session.*&since=${t0 - 1}`)).body.events).toEqual([]);
    const e = prefix.body.events[0];
    expect(e).toMatchObject({
      stream: 'cp',
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      prevHash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect((await audit(bob.accessToken, '?type=DROP%20TABLE')).status).toBe(400);
  });

  it('a long poll answers as soon as a new event is committed', async () => {
    const { body } = await audit(bob.accessToken, '?limit=1');
    const after = body.lastId as number;
    const started = Date.now();
    const poll = audit(bob.accessToken, `?afterId=${after}&wait=20&type=session.`);
    await new Promise((r) => setTimeout(r, 300));
    const s = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db' });
    const res = await poll;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(res.body.events.map((e: any) => [e.type, e.session])).toEqual([['session.started', s.body.session.id]]);
  });
});

describe('forwarding', () => {
  it('keeps a backlog while the SIEM is down, then delivers every event exactly once, also across a restart', async () => {
    const status = await api(cp.url, bob.accessToken, 'GET', '/v1/audit/forwarding');
    const siemStatus = status.body.destinations.find((d: any) => d.name === 'siem');
    expect(siemStatus).toMatchObject({ type: 'http', cursor: 0, endpoint: `http://127.0.0.1:${siemPort}/ingest` });
    expect(siemStatus.backlog).toBeGreaterThan(5);
    expect(
      await eventually(
        async () => (await api(cp.url, bob.accessToken, 'GET', '/v1/audit/forwarding')).body.destinations[0].failures > 0,
        5000,
      ),
    ).toBe(true);

    await startSiem();
    const head = async () => (await audit(bob.accessToken, '?limit=1')).body.lastId as number;
    let h = await head();
    expect(await eventually(async () => siemIds.length > 0 && Math.max(...siemIds) >= h, 15_000)).toBe(true);
    expect((await api(cp.url, bob.accessToken, 'GET', '/v1/audit/forwarding')).body.destinations[0]).toMatchObject({
      cursor: h,
      backlog: 0,
      failures: 0,
    });

    // Restart: the cursor is durable, nothing is sent twice, new events keep flowing.
    await server!.close();
    server = undefined;
    await start();
    // A fresh connection: the client's keep-alive sockets to the old process are gone.
    expect(await eventually(async () => (await fetch(`${cp.url}/healthz`).catch(() => undefined))?.ok === true, 5000)).toBe(true);
    await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', reason: 'after restart' });
    h = await head();
    expect(await eventually(async () => Math.max(...siemIds) >= h, 15_000)).toBe(true);
    const sorted = [...siemIds].sort((a, b) => a - b);
    expect(sorted).toEqual(Array.from({ length: h }, (_, i) => i + 1));
    expect(siemKeys.size).toBe(siemIds.length);
  });

  it('sends RFC 5424 messages with octet-counting framing to a syslog receiver', async () => {
    const s = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', reason: 'syslog check' });
    const id = s.body.session.id as string;
    expect(await eventually(async () => syslogFrames.some((f) => f.includes(id)), 10_000)).toBe(true);
    const frame = syslogFrames.find((f) => f.includes(id) && f.includes(' session.started '))!;
    // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG; facility 13 (log audit), severity 6.
    expect(frame).toMatch(
      /^<110>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ jit - session\.started \[jit@32473 id="\d+" stream="cp" seq="\d+" hash="[0-9a-f]{64}"\] \uFEFF\{/,
    );
    const msg = JSON.parse(frame.slice(frame.indexOf('\uFEFF') + 1));
    expect(msg).toMatchObject({ type: 'session.started', actor: 'alice', session: id, data: { reason: 'syslog check' } });
    const denied = syslogFrames.find((f) => f.includes(' session.denied '));
    expect(denied).toMatch(/^<108>1 /);
  });
});

describe('report data', () => {
  it('lists sessions per user and target with reason and counts, and refusals', async () => {
    const r = await api(cp.url, bob.accessToken, 'GET', `/v1/audit/report?since=${Date.now() - 3600_000}`);
    expect(r.status).toBe(200);
    const mine = r.body.sessions.filter((s: any) => s.user === 'alice');
    expect(mine.length).toBeGreaterThanOrEqual(4);
    expect(mine.find((s: any) => s.reason === 'INC-1')).toMatchObject({
      target: 'app-db',
      rule: 'engineers-app',
      startedAt: expect.any(String),
      credentials: [],
    });
    expect(r.body.denied.some((d: any) => d.type === 'session.denied' && d.user === 'alice' && d.target === 'nope-db')).toBe(true);
    expect(r.body.totals.users).toBe(1);
    expect((await api(cp.url, bob.accessToken, 'GET', '/v1/audit/report?since=5&until=4')).status).toBe(400);
  });
});

describe('verification', () => {
  it('passes on the untouched log and names the event an attacker deleted or changed in SQLite', async () => {
    const ok = await api(cp.url, bob.accessToken, 'POST', '/v1/audit/verify');
    expect(ok.body.ok, JSON.stringify(ok.body.problem)).toBe(true);
    expect(ok.body.streams[0].checkpoints.verified).toBeGreaterThan(0);
    const key = await api(cp.url, bob.accessToken, 'GET', '/v1/audit/key');
    expect(key.body.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid: expect.stringMatching(/^audit-/) });

    const db = new Database(path.join(cp.dir, 'data', 'jit.db'));
    try {
      const victim = db.prepare(`SELECT id FROM audit_events WHERE type = 'session.denied' ORDER BY id LIMIT 1`).get() as { id: number };
      db.prepare('DELETE FROM audit_events WHERE id = ?').run(victim.id);
      const bad = await api(cp.url, bob.accessToken, 'GET', '/v1/audit/verify');
      expect(bad.body.ok).toBe(false);
      expect(bad.body.problem).toMatchObject({ kind: 'removed', seq: expect.any(Number) });
      expect(bad.body.problem.message).toContain(`after event ${victim.id - 1}`);
      // From a later checkpoint on, the rest still verifies.
      const later = await api(cp.url, bob.accessToken, 'GET', `/v1/audit/verify?since=${victim.id + 20}`);
      expect(later.body.ok, JSON.stringify(later.body.problem)).toBe(true);
    } finally {
      db.close();
    }
  });
});
