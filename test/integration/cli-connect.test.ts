/**
 * `jit connect` and the list commands driven through `run()` like a user, against a stand-in
 * for the control plane that speaks src/shared/contract/http.ts over real sockets (the real
 * control plane is covered by the e2e suite). Tokens are pre-seeded in the file store.
 */
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenStore } from '#cli/auth/token-store.js';
import { run } from '#cli/main.js';
import { resolveSettings } from '#cli/settings/settings.js';
import type { Session } from '#shared/contract/http.js';
import { createSystemCtx } from '#shared/runtime/ctx.js';
import { silentLogger } from '#shared/log.js';

const SID = 'k3j4h5g6f7d8s9a0q1w2';
const ACCESS_TOKEN = 'at-valid-token';

interface Plane {
  url: string;
  sessions: Map<string, Session>;
  deletes: string[];
  heartbeats: number;
  relayAuth: string[];
  heartbeatInterval: number;
  server: http.Server;
}

function json(res: http.ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

async function startPlane(): Promise<Plane> {
  const plane: Plane = {
    url: '',
    sessions: new Map(),
    deletes: [],
    heartbeats: 0,
    relayAuth: [],
    heartbeatInterval: 15,
    server: http.createServer(),
  };
  let counter = 0;
  plane.server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.headers.authorization !== `Bearer ${ACCESS_TOKEN}`) {
        json(res, 401, { error: { code: 'JIT_AUTH_INVALID_TOKEN', message: 'The access token was refused' } });
        return;
      }
      const url = new URL(req.url ?? '/', 'http://x');
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
      const m = url.pathname.match(/^\/v1\/sessions\/([a-z0-9]+)(\/heartbeat)?$/);
      if (req.method === 'POST' && url.pathname === '/v1/sessions') {
        if (body.target !== 'prod-db') {
          json(res, 403, {
            error: {
              code: 'JIT_ACCESS_DENIED',
              message: `Access to ${body.target} denied by rule no-prod\x1b[31m`,
              hint: 'ask the DBA team',
            },
          });
          return;
        }
        const id = counter++ === 0 ? SID : `${SID.slice(0, 19)}${counter}`;
        const now = Date.now();
        const session: Session = {
          id,
          user: 'alice',
          target: 'prod-db',
          targetType: 'postgres',
          database: 'orders',
          reason: body.reason,
          state: 'active',
          createdAt: new Date(now).toISOString(),
          expiresAt: new Date(now + (body.durationSeconds ?? 3600) * 1000).toISOString(),
          dbUser: `jit_${id}`,
        };
        plane.sessions.set(id, session);
        json(res, 201, { session, grant: `grant-for-${id}`, localSecret: 's3cr+t/=', heartbeatIntervalSeconds: plane.heartbeatInterval });
      } else if (req.method === 'POST' && m?.[2]) {
        plane.heartbeats++;
        const s = plane.sessions.get(m[1]!);
        if (!s || s.state === 'ended') json(res, 410, { error: { code: 'JIT_SESSION_ENDED', message: 'The session has ended' } });
        else json(res, 200, { session: s });
      } else if (req.method === 'DELETE' && m) {
        plane.deletes.push(`${m[1]}?${url.searchParams}`);
        const s = plane.sessions.get(m[1]!);
        if (!s) return json(res, 404, { error: { code: 'JIT_SESSION_NOT_FOUND', message: 'No such session' } });
        Object.assign(s, { state: 'ended', endReason: 'exit', endedAt: new Date().toISOString() });
        json(res, 200, { session: s });
      } else if (req.method === 'GET' && url.pathname === '/v1/sessions') {
        json(res, 200, { sessions: [...plane.sessions.values()] });
      } else if (req.method === 'GET' && url.pathname === '/v1/whoami') {
        json(res, 200, {
          subject: 'u-1',
          username: 'alice',
          groups: ['dba'],
          admin: true,
          issuer: `${plane.url}/oidc`,
          expiresAt: new Date(Date.now() + 300_000).toISOString(),
        });
      } else if (req.method === 'GET' && url.pathname === '/v1/targets') {
        json(res, 200, {
          targets: [{ name: 'prod-db', type: 'postgres', description: 'Orders\x1b[2J', online: true, maxDurationSeconds: 3600 }],
        });
      } else if (req.method === 'GET' && url.pathname === '/v1/audit') {
        json(res, 200, {
          events: [
            {
              id: 1,
              time: '2026-05-01T10:00:00Z',
              type: 'session.started',
              actor: 'alice',
              target: 'prod-db',
              session: SID,
              outcome: 'success',
            },
            {
              id: 2,
              time: '2026-05-01T10:01:00Z',
              type: 'session.ended',
              actor: 'alice',
              session: SID,
              outcome: 'info',
              data: { q: url.search },
            },
          ],
        });
      } else {
        json(res, 404, { error: { code: 'JIT_INTERNAL', message: 'not found' } });
      }
    });
  });
  plane.server.on('upgrade', (req, socket: net.Socket) => {
    plane.relayAuth.push(`${req.url} ${req.headers.authorization} ${req.headers['jit-access-token']} ${req.headers.upgrade}`);
    const id = req.url?.split('/').pop() ?? '';
    if (
      req.headers.authorization !== `Bearer grant-for-${id}` ||
      req.headers['jit-access-token'] !== ACCESS_TOKEN ||
      plane.sessions.get(id)?.state !== 'active'
    ) {
      const text = JSON.stringify({ error: { code: 'JIT_GRANT_INVALID', message: 'The session grant was refused' } });
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${text.length}\r\n\r\n${text}`);
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: jit-stream/1\r\n\r\n');
    socket.allowHalfOpen = true;
    socket.pipe(socket);
  });
  await new Promise<void>((r) => plane.server.listen(0, '127.0.0.1', r));
  plane.url = `http://127.0.0.1:${(plane.server.address() as net.AddressInfo).port}`;
  return plane;
}

class Capture extends PassThrough {
  text = '';
  isTTY = false;
  constructor() {
    super();
    this.on('data', (c: Buffer) => {
      this.text += c.toString();
    });
  }
}

async function harness(plane: Plane) {
  const home = mkdtempSync(path.join(os.tmpdir(), 'jit-cli-connect-'));
  const env = { JIT_KEYRING: 'file', XDG_CONFIG_HOME: path.join(home, 'config'), JIT_SERVER: plane.url, NO_COLOR: '1' };
  const settings = resolveSettings({ env, homedir: home, flags: {} });
  await createTokenStore({ env, configDir: settings.configDir, profile: 'default', server: settings.server, warn: () => {} }).set({
    accessToken: ACCESS_TOKEN,
    refreshToken: 'rt',
    expiresAt: Date.now() + 3_600_000,
    issuer: `${plane.url}/oidc`,
    clientId: 'jit-cli',
    audience: plane.url,
  });
  const stdout = new Capture();
  const stderr = new Capture();
  let signalHandler: ((s: NodeJS.Signals) => void) | undefined;
  const ctx = createSystemCtx({
    io: { stdin: new PassThrough(), stdout, stderr },
    env,
    homedir: home,
    logger: silentLogger(),
    onSignal(handler) {
      signalHandler = handler;
      return () => {
        if (signalHandler === handler) signalHandler = undefined;
      };
    },
  });
  return {
    stdout,
    stderr,
    run: (...args: string[]) => run(['node', 'jit', ...args], ctx),
    signal: () => signalHandler?.('SIGINT'),
    hasSignalHandler: () => signalHandler !== undefined,
  };
}

/** Ports are chosen at run time; snapshots show PORT. */
function norm(text: string): string {
  return text.replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT');
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function echo(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1' }, () => c.end(payload));
    let got = '';
    c.on('data', (d) => {
      got += d;
    });
    c.on('close', () => resolve(got));
    c.on('error', reject);
  });
}

let plane: Plane;
beforeAll(async () => {
  plane = await startPlane();
});
afterAll(async () => {
  plane.server.closeAllConnections();
  await new Promise((r) => plane.server.close(r));
});

describe('jit connect', () => {
  it('prints the URL, relays connections, and on Ctrl-C ends the session on the server and exits 0', async () => {
    const h = await harness(plane);
    const started = performance.now();
    const exit = h.run('connect', 'prod-db', '--reason', 'INC-1', '--duration', '30m');
    await until(() => h.stdout.text.includes('\n'));
    const readyMs = performance.now() - started;
    const url = h.stdout.text.trim();
    expect(url).toMatch(new RegExp(`^postgresql://jit_${SID}:s3cr%2Bt%2F%3D@127\\.0\\.0\\.1:(\\d+)/orders\\?sslmode=disable$`));
    // Cached token, local server: the port must be ready fast (budget 300 ms; generous for CI).
    expect(readyMs).toBeLessThan(1000);
    const port = Number(new URL(url).port);

    expect(await echo(port, 'startup-bytes')).toBe('startup-bytes');
    expect(plane.relayAuth.at(-1)).toBe(`/v1/relay/${SID} Bearer grant-for-${SID} ${ACCESS_TOKEN} jit-stream/1`);

    await until(() => h.stderr.text.includes('connection 1 closed'));
    h.signal();
    expect(await exit).toBe(0);
    expect(plane.deletes).toContain(`${SID}?reason=exit`);
    expect(norm(h.stderr.text).replace(/ends in \d+m \d+s/, 'ends in T')).toMatchInlineSnapshot(`
      "session k3j4h5g6f7d8s9a0q1w2 ready on 127.0.0.1:PORT (prod-db, ends in T)
      connection 1 opened
      connection 1 closed
      Session k3j4h5g6f7d8s9a0q1w2 ended; its credential is being destroyed
      "
    `);
    // The listener is gone.
    await expect(echo(port, 'x')).rejects.toThrow(/ECONNREFUSED/);
    // The secret never appears in status output.
    expect(h.stderr.text).not.toContain('s3cr');
  });

  it('--json prints one object {session, url, port} on stdout', async () => {
    const h = await harness(plane);
    const exit = h.run('connect', 'prod-db', '--json');
    await until(() => h.stdout.text.trim().endsWith('}'));
    const out = JSON.parse(h.stdout.text);
    expect(Object.keys(out).sort()).toEqual(['port', 'session', 'url']);
    expect(out.url).toContain(`:${out.port}/orders`);
    h.signal();
    expect(await exit).toBe(0);
  });

  it('when the server ends the session, heartbeats notice, it says why and exits 8', async () => {
    plane.heartbeatInterval = 1;
    try {
      const h = await harness(plane);
      const exit = h.run('connect', 'prod-db');
      await until(() => h.stdout.text.includes('\n'));
      const id = new URL(h.stdout.text.trim()).username.slice(4);
      Object.assign(plane.sessions.get(id)!, { state: 'ended', endReason: 'admin' });
      expect(await exit).toBe(8);
      expect(h.stderr.text).toContain(`✘ Session ${id} ended: an administrator ended it  [JIT_SESSION_ENDED]`);
      expect(plane.deletes.some((d) => d.startsWith(id))).toBe(false);
    } finally {
      plane.heartbeatInterval = 15;
    }
  });

  it('a denied target prints the server reason and exits 4, leaving no listener', async () => {
    const h = await harness(plane);
    expect(await h.run('connect', 'secret-db')).toBe(4);
    expect(h.stderr.text).toMatchInlineSnapshot(`
      "✘ Access to secret-db denied by rule no-prod [31m  [JIT_ACCESS_DENIED]
        hint: ask the DBA team
      "
    `);
    expect(h.stdout.text).toBe('');
    // Server-supplied text cannot drive the terminal.
    expect(h.stderr.text).not.toContain('\x1b');
  });

  it('a taken --port fails with exit 2 before any session is created', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    const before = plane.sessions.size;
    const h = await harness(plane);
    expect(await h.run('connect', 'prod-db', '--port', String(port))).toBe(2);
    expect(h.stderr.text).toContain(`Port ${port} on 127.0.0.1 is already in use  [JIT_PORT_IN_USE]`);
    expect(plane.sessions.size).toBe(before);
    blocker.close();
  });

  it('a bad --duration is a usage error (exit 2)', async () => {
    const h = await harness(plane);
    expect(await h.run('connect', 'prod-db', '--duration', 'forever')).toBe(2);
    expect(h.stderr.text).toContain('not a duration');
  });
});

describe('list commands', () => {
  it('whoami, targets, sessions, audit: plain tables and --json', async () => {
    const h = await harness(plane);
    expect(await h.run('targets')).toBe(0);
    expect(await h.run('whoami', '--json')).toBe(0);
    const afterWhoami = h.stdout.text;
    expect(afterWhoami).toContain('"username": "alice"');
    expect(await h.run('audit', '--session', SID, '--limit', '5', '--json')).toBe(0);
    const lines = h.stdout.text.slice(afterWhoami.length).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1]!).data.q).toBe(`?session=${SID}&limit=5`);
    expect(h.stdout.text.slice(0, h.stdout.text.indexOf('{'))).toMatchInlineSnapshot(`
      "NAME     TYPE      ONLINE  DESCRIPTION
      prod-db  postgres  yes     Orders [2J
      "
    `);
  });

  it('disconnect ends a session; a malformed id is a usage error', async () => {
    const h = await harness(plane);
    expect(await h.run('disconnect', 'NOT-AN-ID')).toBe(2);
    expect(await h.run('disconnect', 'zzzzzzzzzzzzzzzzzzzz')).toBe(8);
    expect(h.stderr.text).toMatchInlineSnapshot(`
      "✘ "NOT-AN-ID" is not a session id (20 lowercase letters and digits)  [JIT_USAGE]
        hint: jit sessions lists your sessions and their ids
      ✘ No such session  [JIT_SESSION_NOT_FOUND]
        hint: jit sessions lists your sessions
      "
    `);
  });

  it('not logged in → exit 3 with a hint', async () => {
    const h = await harness(plane);
    expect(await h.run('logout')).toBe(0);
    expect(await h.run('whoami')).toBe(3);
    expect(norm(h.stderr.text)).toMatchInlineSnapshot(`
      "Logged out of http://127.0.0.1:PORT (the identity provider could not be told; the tokens were removed here)
      ✘ You are not logged in to http://127.0.0.1:PORT  [JIT_AUTH_REQUIRED]
        hint: run jit login
      "
    `);
  });
});
