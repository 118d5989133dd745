/**
 * The control plane over real sockets with the real built-in IdP: identity, policy, sessions,
 * the relay gate and the audit trail, as a client or an attacker sees them.
 */
import http from 'node:http';
import { SignJWT, generateKeyPair } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, loginAs, type ServerFixture, startControlPlane, type Tokens } from '../helpers/control-plane.js';

let cp: ServerFixture;
let alice: Tokens;
let bob: Tokens;
let mallory: Tokens;

beforeAll(async () => {
  cp = await startControlPlane({
    policy: {
      targets: [
        { name: 'app-db', type: 'postgres', agent: 'local', database: 'app', description: 'the app database', maxDuration: '2h' },
        { name: 'secret-db', type: 'postgres', agent: 'local' },
      ],
      access: [{ name: 'engineers-app', targets: ['app-db'], groups: ['engineers'], grantRoles: ['app_reader'] }],
    },
    sessions: { heartbeatTimeout: '2s', heartbeatInterval: '1s' },
  });
  [alice, bob, mallory] = await Promise.all([loginAs(cp.url, 'alice'), loginAs(cp.url, 'bob'), loginAs(cp.url, 'mallory')]);
});

afterAll(async () => {
  await cp?.stop();
});

/** Send an upgrade request and report the answer: 101 (socket kept) or an error body. */
function upgrade(
  pathname: string,
  headers: Record<string, string>,
): Promise<{ status: number; body?: any; socket?: import('node:net').Socket }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${cp.url}${pathname}`, {
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'jit-stream/1', ...headers },
    });
    req.on('upgrade', (_res, socket) => resolve({ status: 101, socket }));
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('discovery and identity', () => {
  it('publishes what the CLI needs to log in', async () => {
    const res = await api(cp.url, undefined, 'GET', '/.well-known/jit');
    expect(res.body).toMatchObject({ issuer: `${cp.url}/oidc`, clientId: 'jit-cli', audience: cp.url, apiBase: cp.url });
  });

  it('whoami names the user, groups and admin flag', async () => {
    expect((await api(cp.url, alice.accessToken, 'GET', '/v1/whoami')).body).toMatchObject({
      username: 'alice',
      groups: ['engineers'],
      admin: false,
    });
    expect((await api(cp.url, bob.accessToken, 'GET', '/v1/whoami')).body.admin).toBe(true);
  });

  it('refuses missing, garbage and forged tokens with the login-needed code', async () => {
    expect((await api(cp.url, undefined, 'GET', '/v1/targets')).body.error.code).toBe('JIT_AUTH_REQUIRED');
    const garbage = await api(cp.url, 'not.a.token', 'GET', '/v1/targets');
    expect(garbage.status).toBe(401);
    expect(garbage.body.error.code).toBe('JIT_AUTH_INVALID_TOKEN');
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT({ preferred_username: 'alice', groups: ['jit-admins'] })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' })
      .setIssuer(`${cp.url}/oidc`)
      .setAudience(cp.url)
      .setSubject('alice')
      .setExpirationTime('5m')
      .sign(privateKey);
    const res = await api(cp.url, forged, 'GET', '/v1/audit');
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('JIT_AUTH_INVALID_TOKEN');
  });
});

describe('targets and policy', () => {
  it('lists only what policy lets the caller use, with the agent offline', async () => {
    const res = await api(cp.url, alice.accessToken, 'GET', '/v1/targets');
    expect(res.body.targets).toEqual([
      {
        name: 'app-db',
        type: 'postgres',
        description: 'the app database',
        database: 'app',
        online: false,
        maxDurationSeconds: 7200,
      },
    ]);
    expect((await api(cp.url, mallory.accessToken, 'GET', '/v1/targets')).body.targets).toEqual([]);
  });

  it('refuses a session to a target without a rule, the same way as to an unknown one', async () => {
    const forbidden = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'secret-db' });
    const unknown = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'nope' });
    expect(forbidden.status).toBe(404);
    expect(forbidden.body.error.code).toBe('JIT_TARGET_NOT_FOUND');
    expect(unknown.body.error.code).toBe(forbidden.body.error.code);
  });

  it('opens only the databases policy names for a target (--database)', async () => {
    const other = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', database: 'postgres' });
    expect(other.status).toBe(403);
    expect(other.body.error).toMatchObject({
      code: 'JIT_ACCESS_DENIED',
      message: 'The database postgres is not open through jit on app-db',
      hint: 'databases on this target: app',
    });
    const own = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', database: 'app' });
    expect(own.status).toBe(201);
    await api(cp.url, alice.accessToken, 'DELETE', `/v1/sessions/${own.body.session.id}`);
  });

  it('refuses a duration longer than policy allows', async () => {
    const res = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', durationSeconds: 3 * 3600 });
    expect(res.body.error.code).toBe('JIT_SESSION_DURATION');
  });

  it('validates the request body', async () => {
    const res = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 42 });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('JIT_USAGE');
  });
});

describe('sessions and the relay gate', () => {
  it('creates a session with a grant and a local secret, and ends it', async () => {
    const res = await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', reason: 'debug #42' });
    expect(res.status).toBe(201);
    const { session, grant, localSecret } = res.body;
    expect(session).toMatchObject({ user: 'alice', target: 'app-db', state: 'active', database: 'app' });
    expect(session.id).toMatch(/^[a-z0-9]{20}$/);
    expect(session.dbUser).toBe(`jit_${session.id}`);
    expect(grant.split('.')).toHaveLength(3);
    expect(localSecret.length).toBeGreaterThanOrEqual(32);

    // Others cannot see, heartbeat or end it.
    expect((await api(cp.url, mallory.accessToken, 'GET', `/v1/sessions/${session.id}`)).status).toBe(404);
    expect((await api(cp.url, mallory.accessToken, 'POST', `/v1/sessions/${session.id}/heartbeat`)).status).toBe(404);
    expect((await api(cp.url, mallory.accessToken, 'DELETE', `/v1/sessions/${session.id}`)).status).toBe(404);

    expect((await api(cp.url, alice.accessToken, 'POST', `/v1/sessions/${session.id}/heartbeat`)).status).toBe(200);
    const ended = await api(cp.url, alice.accessToken, 'DELETE', `/v1/sessions/${session.id}?reason=exit`);
    expect(ended.body.session).toMatchObject({ state: 'ended', endReason: 'exit' });
    const hb = await api(cp.url, alice.accessToken, 'POST', `/v1/sessions/${session.id}/heartbeat`);
    expect(hb.status).toBe(410);
    expect(hb.body.error.code).toBe('JIT_SESSION_ENDED');
  });

  it('refuses relay streams without a valid grant, with another user’s login, or for an ended session', async () => {
    const { session, grant } = (await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db' })).body;
    const path = `/v1/relay/${session.id}`;

    const noGrant = await upgrade(path, { 'jit-access-token': alice.accessToken });
    expect(noGrant.status).toBe(401);
    expect(noGrant.body.error.code).toBe('JIT_GRANT_INVALID');

    const tampered = `${grant.slice(0, -4)}AAAA`;
    expect((await upgrade(path, { authorization: `Bearer ${tampered}`, 'jit-access-token': alice.accessToken })).status).toBe(401);

    // Bob holds Alice's grant but logs in as himself: refused.
    const stolen = await upgrade(path, { authorization: `Bearer ${grant}`, 'jit-access-token': bob.accessToken });
    expect(stolen.status).toBe(401);
    expect(stolen.body.error.code).toBe('JIT_GRANT_INVALID');

    // The grant alone is not enough.
    expect((await upgrade(path, { authorization: `Bearer ${grant}` })).body.error.code).toBe('JIT_AUTH_REQUIRED');

    // A grant for one session cannot open another.
    const other = (await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db' })).body;
    const cross = await upgrade(`/v1/relay/${other.session.id}`, {
      authorization: `Bearer ${grant}`,
      'jit-access-token': alice.accessToken,
    });
    expect(cross.status).toBe(401);

    // Right user, right grant, but no agent is connected.
    const ok = await upgrade(path, { authorization: `Bearer ${grant}`, 'jit-access-token': alice.accessToken });
    expect(ok.status).toBe(503);
    expect(ok.body.error.code).toBe('JIT_AGENT_UNAVAILABLE');

    await api(cp.url, alice.accessToken, 'DELETE', `/v1/sessions/${session.id}`);
    const ended = await upgrade(path, { authorization: `Bearer ${grant}`, 'jit-access-token': alice.accessToken });
    expect(ended.status).toBe(410);
    expect(ended.body.error.code).toBe('JIT_SESSION_ENDED');
  });

  it('ends a session whose heartbeat stops', async () => {
    const { session } = (await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db' })).body;
    await new Promise((r) => setTimeout(r, 3500));
    const res = await api(cp.url, alice.accessToken, 'GET', `/v1/sessions/${session.id}`);
    expect(res.body.session).toMatchObject({ state: 'ended', endReason: 'heartbeat-lost' });
  });
});

describe('agents', () => {
  it('refuses an agent with a wrong token and audits it', async () => {
    const err = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${cp.url.replace('http', 'ws')}/v1/agent/connect`, {
        headers: { authorization: 'Bearer jat_wrong' },
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    expect(err).toBe(401);
    const audit = await api(cp.url, bob.accessToken, 'GET', '/v1/audit?type=agent.auth-failed');
    expect(audit.body.events.length).toBeGreaterThan(0);
  });

  it('closes an agent that sends an invalid control message', async () => {
    const code = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${cp.url.replace('http', 'ws')}/v1/agent/connect`, {
        headers: { authorization: `Bearer ${cp.agentToken}` },
      });
      ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', agent: 1 })));
      ws.on('close', (c) => resolve(c));
    });
    expect(code).toBe(4400);
  });
});

describe('audit', () => {
  it('is for admins only and tells the story of a session', async () => {
    expect((await api(cp.url, alice.accessToken, 'GET', '/v1/audit')).body.error.code).toBe('JIT_ADMIN_REQUIRED');
    const { session } = (await api(cp.url, alice.accessToken, 'POST', '/v1/sessions', { target: 'app-db', reason: 'audit me' })).body;
    await api(cp.url, alice.accessToken, 'DELETE', `/v1/sessions/${session.id}`);
    const res = await api(cp.url, bob.accessToken, 'GET', `/v1/audit?session=${session.id}`);
    expect(res.body.events.map((e: { type: string }) => e.type)).toEqual(['session.started', 'session.ended']);
    expect(res.body.events[0]).toMatchObject({ actor: 'alice', target: 'app-db', data: { reason: 'audit me' } });
    const logins = await api(cp.url, bob.accessToken, 'GET', '/v1/audit?type=login.succeeded');
    expect(logins.body.events.map((e: { actor: string }) => e.actor)).toEqual(expect.arrayContaining(['alice', 'bob']));
    const all = JSON.stringify((await api(cp.url, bob.accessToken, 'GET', '/v1/audit')).body);
    expect(all).not.toContain(alice.accessToken);
    expect(all).not.toContain('alice-password-1');
  });
});
