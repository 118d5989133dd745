/**
 * The whole agent (startAgent) against a small test double of the control plane that speaks the
 * contract over real sockets (WebSocket control channel, jit-stream/1 upgrades), and a real
 * PostgreSQL behind the agent.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { ControlChannel } from '#agent/dialer.js';
import { type RunningAgent, startAgent } from '#agent/main.js';
import { makeScramVerifier } from '#protocol/postgres/scram.js';
import { AgentConfig } from '#shared/config/agent.js';
import { AGENT_MAX_CONTROL_MESSAGE, type SessionInfo } from '#shared/contract/agent.js';
import { createLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { sql } from '../helpers/postgres.js';

const pgInfo = inject('pg');
const prefix = `ad${randomBytes(3).toString('hex')}`;
const ADMIN = `${prefix}_admin`;
const ADMIN_PW = randomBytes(12).toString('hex');
const READER = `${prefix}_reader`;
const DB = `${prefix}_db`;
const TOKEN = `agent-${randomBytes(16).toString('hex')}`;
const ADMIN_ENV = `JIT_TEST_ADMIN_URL_${prefix.toUpperCase()}`;
const adminUrl = `postgresql://${ADMIN}:${ADMIN_PW}@127.0.0.1:${pgInfo.port}/${DB}`;

type Msg = Record<string, unknown> & { type: string };

function sid(): string {
  let s = '';
  while (s.length < 20) s += randomBytes(16).toString('hex');
  return s.slice(0, 20);
}

/** Test double of the control plane: just enough of the contract to drive one agent. */
class FakeControlPlane {
  readonly server = http.createServer((_req, res) => res.writeHead(404).end());
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: AGENT_MAX_CONTROL_MESSAGE });
  readonly received: Msg[] = [];
  readonly connectHeaders: IncomingHttpHeaders[] = [];
  readonly streamHeaders: IncomingHttpHeaders[] = [];
  readonly live = new Set<string>();
  refusedConnects = 0;
  ws: WebSocket | undefined;
  private readonly pending = new Map<string, (s: net.Socket, head: Buffer) => void>();
  private waiters: (() => void)[] = [];
  url = '';

  async listen(): Promise<void> {
    this.server.on('upgrade', (req, socket: net.Socket, head) => {
      const path = req.url ?? '';
      if (path === '/v1/agent/connect') {
        this.connectHeaders.push(req.headers);
        if (req.headers.authorization !== `Bearer ${TOKEN}`) {
          this.refusedConnects++;
          const body = JSON.stringify({ error: { code: 'JIT_AGENT_AUTH_FAILED', message: 'no', hint: 'h' } });
          socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
          return;
        }
        this.wss.handleUpgrade(req, socket, head, (ws) => this.onAgent(ws));
        return;
      }
      const m = /^\/v1\/agent\/streams\/([A-Za-z0-9_-]{16,64})$/.exec(path);
      const waiter = m ? this.pending.get(m[1]!) : undefined;
      this.streamHeaders.push(req.headers);
      if (!m || !waiter || req.headers.authorization !== `Bearer ${TOKEN}`) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      this.pending.delete(m[1]!);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: jit-stream/1\r\n\r\n');
      waiter(socket, head);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  private onAgent(ws: WebSocket): void {
    this.ws = ws;
    ws.on('message', (data: RawData) => {
      const msg = JSON.parse(data.toString()) as Msg;
      this.received.push(msg);
      if (msg.type === 'hello') this.send({ type: 'welcome', agent: String(msg['agent']), heartbeatSeconds: 15 });
      if (msg.type === 'sessions.live?') {
        const asked = msg['sessions'] as string[];
        this.send({ type: 'sessions.live', requestId: msg['requestId'], live: asked.filter((s) => this.live.has(s)) });
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }

  send(msg: unknown): void {
    this.ws?.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** Wait until a received message matches (polling on each arrival). */
  async waitFor(pred: (m: Msg) => boolean, timeoutMs = 10_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error('timed out waiting for a message from the agent');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  /** Ask the agent for a stream and return the agent's socket once it dialled back. */
  openStream(session: SessionInfo): Promise<{ socket: net.Socket; head: Buffer; streamId: string }> {
    const streamId = randomBytes(18).toString('base64url');
    return new Promise((resolve) => {
      this.pending.set(streamId, (socket, head) => resolve({ socket, head, streamId }));
      this.send({ type: 'stream.open', streamId, session });
    });
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const cp = new FakeControlPlane();
let agent: RunningAgent;
const logLines: string[] = [];
const logSink = new Writable({
  write(chunk, _enc, cb) {
    logLines.push(String(chunk));
    cb();
  },
});
const orphan = `jit_${sid()}`;
const liveRole = sid();

function session(target = 'test-db'): { info: SessionInfo; secret: string } {
  const secret = randomBytes(24).toString('base64url');
  return {
    secret,
    info: {
      id: sid(),
      user: 'alice',
      target,
      grantRoles: [READER],
      expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      localVerifier: makeScramVerifier(secret),
    },
  };
}

/** A local TCP listener standing in for the CLI: each connection becomes one agent stream. */
async function cliListener(info: SessionInfo): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer(async (client) => {
    const { socket, head } = await cp.openStream(info);
    if (head.length > 0) client.write(head);
    client.pipe(socket).pipe(client);
    client.on('close', () => socket.destroy());
    socket.on('close', () => client.destroy());
    client.on('error', () => socket.destroy());
    socket.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, server };
}

beforeAll(async () => {
  await sql(pgInfo.superUrl, `CREATE ROLE ${ADMIN} LOGIN PASSWORD '${ADMIN_PW}' CREATEROLE`);
  await sql(pgInfo.superUrl, `GRANT pg_signal_backend TO ${ADMIN}`);
  await sql(pgInfo.superUrl, `CREATE ROLE ${READER} NOLOGIN`);
  await sql(pgInfo.superUrl, `GRANT ${READER} TO ${ADMIN} WITH ADMIN OPTION`);
  await sql(pgInfo.superUrl, `CREATE DATABASE ${DB}`);
  // An orphan from a crashed run, and a role of a session the control plane says is live.
  await sql(adminUrl, `CREATE ROLE ${orphan} LOGIN VALID UNTIL 'infinity'`);
  await sql(adminUrl, `CREATE ROLE jit_${liveRole} LOGIN VALID UNTIL 'infinity'`);
  cp.live.add(liveRole);
  await cp.listen();
  const closedPort = await new Promise<number>((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => r(p));
    });
  });
  const config = AgentConfig.parse({
    name: 'agent-1',
    controlPlane: cp.url,
    targets: {
      'test-db': { type: 'postgres', host: '127.0.0.1', port: pgInfo.port, database: DB, adminUrlEnv: ADMIN_ENV },
      'down-db': { type: 'postgres', host: '127.0.0.1', port: closedPort, database: DB, adminUrlEnv: ADMIN_ENV },
    },
  });
  agent = await startAgent({
    config,
    token: TOKEN,
    logger: createLogger({ level: 'debug', destination: logSink }),
    env: { [ADMIN_ENV]: adminUrl },
    backoff: { baseDelayMs: 50, maxDelayMs: 500 },
  });
  await agent.whenConnected();
});

afterAll(async () => {
  await agent?.close();
  await cp.close();
});

describe('agent control channel', () => {
  it('says hello with its targets, capabilities and the token', async () => {
    const hello = await cp.waitFor((m) => m.type === 'hello');
    expect(hello).toMatchObject({
      agent: 'agent-1',
      protocol: 1,
      capabilities: ['postgres.scram-local', 'postgres.inspect', 'ssh'],
      targets: [
        { name: 'test-db', type: 'postgres' },
        { name: 'down-db', type: 'postgres' },
      ],
    });
    expect(cp.connectHeaders[0]?.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('reaps orphan session roles after connecting and leaves live ones', async () => {
    await cp.waitFor((m) => m.type === 'event' && m['event'] === 'credential.destroyed' && (m['data'] as Msg)['role'] === orphan);
    const rows = await sql<{ rolname: string }>(pgInfo.superUrl, 'select rolname from pg_roles where rolname = any($1)', [
      [orphan, `jit_${liveRole}`],
    ]);
    expect(rows.map((r) => r.rolname)).toEqual([`jit_${liveRole}`]);
  });

  it('answers ping with pong and ignores messages that break the contract', async () => {
    const before = cp.connectHeaders.length;
    cp.send('not json at all');
    cp.send({ type: 'bogus', secret: 'x' });
    cp.send({ type: 'stream.open', streamId: 'short', session: {} });
    cp.send({ type: 'ping', t: 4242 });
    await cp.waitFor((m) => m.type === 'pong' && m['t'] === 4242);
    expect(cp.connectHeaders.length).toBe(before);
    const warnings = logLines.filter((l) => l.includes('ignoring a control message'));
    expect(warnings.length).toBeGreaterThanOrEqual(3);
    expect(warnings.join('')).not.toContain('secret');
  });

  it('reconnects after the control plane drops it', async () => {
    const hellos = cp.received.filter((m) => m.type === 'hello').length;
    cp.ws?.terminate();
    await cp.waitFor(() => cp.received.filter((m) => m.type === 'hello').length > hellos);
    await agent.whenConnected();
  });

  it('serves a stream end to end and drops the role on session.end', async () => {
    const { info, secret } = session();
    cp.live.add(info.id);
    const { port, server } = await cliListener(info);
    const c = new pg.Client({ host: '127.0.0.1', port, user: `jit_${info.id}`, password: secret, database: DB });
    c.on('error', () => {});
    try {
      await c.connect();
      expect((await c.query('select current_user as u')).rows[0].u).toBe(`jit_${info.id}`);
      const h = cp.streamHeaders.at(-1)!;
      expect(h.authorization).toBe(`Bearer ${TOKEN}`);
      expect(h.upgrade).toBe('jit-stream/1');
      await cp.waitFor((m) => m.type === 'event' && m['event'] === 'credential.created' && m['session'] === info.id);

      const ended = new Promise<void>((r) => c.once('end', () => r()));
      cp.send({ type: 'session.end', session: info.id, target: 'test-db', reason: 'exit' });
      await ended;
      await cp.waitFor((m) => m.type === 'event' && m['event'] === 'credential.destroyed' && m['session'] === info.id);
      const rows = await sql(pgInfo.superUrl, 'select 1 from pg_roles where rolname = $1', [`jit_${info.id}`]);
      expect(rows).toEqual([]);
    } finally {
      await c.end().catch(() => {});
      server.close();
    }
  });

  it('answers stream.failed when the target cannot be reached', async () => {
    const { info } = session('down-db');
    const streamId = randomBytes(18).toString('base64url');
    cp.send({ type: 'stream.open', streamId, session: info });
    const failed = await cp.waitFor((m) => m.type === 'stream.failed' && m['streamId'] === streamId);
    expect(failed).toMatchObject({ code: 'JIT_TARGET_UNREACHABLE', message: 'The target down-db cannot be reached from its agent' });
  });

  it('answers stream.failed for a target it does not serve', async () => {
    const { info } = session('elsewhere');
    const streamId = randomBytes(18).toString('base64url');
    cp.send({ type: 'stream.open', streamId, session: info });
    const failed = await cp.waitFor((m) => m.type === 'stream.failed' && m['streamId'] === streamId);
    expect(failed).toMatchObject({ code: 'JIT_TARGET_NOT_FOUND' });
  });

  it('keeps retrying when the token is refused, and says so', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _e, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const before = cp.refusedConnects;
    const ch = new ControlChannel({
      controlPlane: cp.url,
      token: 'wrong-token',
      hello: { type: 'hello', agent: 'x', version: '0', protocol: 1, capabilities: [], targets: [] },
      onMessage: () => {},
      logger: createLogger({ level: 'info', destination: sink }),
      clock: systemClock,
      baseDelayMs: 20,
      maxDelayMs: 100,
    });
    ch.start();
    try {
      const deadline = Date.now() + 5_000;
      while (cp.refusedConnects - before < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(cp.refusedConnects - before).toBeGreaterThanOrEqual(3);
      expect(lines.some((l) => l.includes('refused the agent token'))).toBe(true);
      expect(lines.join('')).not.toContain('wrong-token');
    } finally {
      await ch.close();
    }
  });

  it('sends a burst of audit events in one socket write, through the socket ws hands out publicly', async () => {
    // A bare WebSocket server that counts the TCP chunks it receives from the agent.
    const server = http.createServer();
    const wss = new WebSocketServer({ server });
    let chunks = 0;
    let messages = 0;
    let counting = false;
    wss.on('connection', (ws, req) => {
      req.socket.on('data', () => {
        if (counting) chunks++;
      });
      ws.on('message', () => {
        if (counting) messages++;
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const ch = new ControlChannel({
      controlPlane: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
      token: TOKEN,
      hello: { type: 'hello', agent: 'x', version: '0', protocol: 1, capabilities: [], targets: [] },
      onMessage: () => {},
      logger: createLogger({ level: 'silent' }),
      clock: systemClock,
    });
    ch.start();
    try {
      await ch.whenConnected();
      await new Promise((r) => setTimeout(r, 100)); // the hello has arrived
      counting = true;
      for (let i = 0; i < 200; i++) {
        ch.emit({ event: 'statement.executed', session: 'abcdefghij0123456789', target: 't', outcome: 'success', data: { seq: i } });
      }
      const deadline = Date.now() + 5_000;
      while (messages < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(messages).toBe(200);
      expect(chunks).toBe(1);
    } finally {
      await ch.close();
      wss.close();
      server.close();
    }
  });
});
