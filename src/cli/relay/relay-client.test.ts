import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalRelayListener } from './local-listener.js';
import { postgresFatal, relayConnection } from './relay-client.js';

const SID = 'abcdefghij0123456789';
const servers: http.Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

interface Seen {
  url?: string;
  headers?: http.IncomingHttpHeaders;
}

/** A tiny stand-in for the control plane's relay endpoint: 101 + echo, over real sockets. */
async function echoRelay(seen: Seen, opts: { head?: Buffer } = {}): Promise<string> {
  const srv = http.createServer((_req, res) => res.writeHead(426).end());
  srv.on('upgrade', (req, socket: net.Socket, head) => {
    seen.url = req.url;
    seen.headers = req.headers;
    // One write, so the first bytes after the 101 arrive in the same packet (the `head` case).
    socket.write(
      Buffer.concat([
        Buffer.from('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: jit-stream/1\r\n\r\n'),
        opts.head ?? Buffer.alloc(0),
      ]),
    );
    if (head.length) socket.write(head);
    socket.allowHalfOpen = true;
    socket.pipe(socket);
  });
  return listen(srv);
}

async function refusingRelay(status: number, body: unknown): Promise<string> {
  const srv = http.createServer();
  srv.on('upgrade', (_req, socket: net.Socket) => {
    const text = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${status} Nope\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  });
  return listen(srv);
}

async function listen(srv: http.Server): Promise<string> {
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(c));
    c.on('error', reject);
  });
}

function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

describe('relay through a 101 jit-stream/1 upgrade', () => {
  it('sends the grant and upgrade headers, echoes bytes both ways, forwards half-close, counts bytes', async () => {
    const seen: Seen = {};
    const server = await echoRelay(seen);
    const closed: Array<{ upgraded: boolean }> = [];
    const listener = new LocalRelayListener({ onClose: (_id, o) => closed.push(o) });
    const port = await listener.listen(0);
    let tokenCalls = 0;
    listener.activate({
      server,
      sessionId: SID,
      grant: 'grant-jwt',
      accessToken: async () => `user-at-${++tokenCalls}`,
    });

    const client = await connect(port);
    const payload = Buffer.alloc(256 * 1024, 7);
    const received = readAll(client);
    client.write('hello ');
    client.end(payload); // half-close: the echo must still come back after our FIN
    const got = await received;
    expect(got.subarray(0, 6).toString()).toBe('hello ');
    expect(got.length).toBe(6 + payload.length);

    expect(seen.url).toBe(`/v1/relay/${SID}`);
    expect(seen.headers?.authorization).toBe('Bearer grant-jwt');
    // The user's own access token rides beside the grant, fetched per stream.
    expect(seen.headers?.['jit-access-token']).toBe('user-at-1');
    expect(seen.headers?.upgrade).toBe('jit-stream/1');
    expect(seen.headers?.connection?.toLowerCase()).toBe('upgrade');

    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toEqual([{ upgraded: true }]);
    expect(listener.stats()).toEqual({ active: 0, total: 1, bytesIn: got.length, bytesOut: got.length });
    await listener.close();
  });

  it('bytes the server sends right after the 101 (in the same packet) reach the client', async () => {
    const server = await echoRelay({}, { head: Buffer.from('greeting;') });
    const listener = new LocalRelayListener();
    const port = await listener.listen(0);
    listener.activate({ server, sessionId: SID, grant: 'g' });
    const client = await connect(port);
    const received = readAll(client);
    client.end('x');
    expect((await received).toString()).toBe('greeting;x');
    await listener.close();
  });

  it('a client that connects before the session is ready waits, and its early bytes are kept', async () => {
    const server = await echoRelay({});
    const listener = new LocalRelayListener();
    const port = await listener.listen(0);
    const client = await connect(port);
    const received = readAll(client);
    client.end('early');
    await new Promise((r) => setTimeout(r, 50));
    listener.activate({ server, sessionId: SID, grant: 'g' });
    expect((await received).toString()).toBe('early');
    await listener.close();
  });

  it('a 403 with an ErrorBody closes the local socket and reports the server message', async () => {
    const server = await refusingRelay(403, { error: { code: 'JIT_ACCESS_DENIED', message: 'Session belongs to bob', hint: 'h' } });
    const local = await new Promise<{ a: net.Socket; b: net.Socket; srv: net.Server }>((resolve) => {
      const srv = net.createServer({ pauseOnConnect: true }, (a) => resolve({ a, b, srv }));
      let b!: net.Socket;
      srv.listen(0, '127.0.0.1', () => {
        b = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
      });
    });
    const received = readAll(local.b);
    const outcome = await relayConnection(
      local.a,
      { server, sessionId: SID, grant: 'g' },
      {
        onRefused: (sock, err) => sock.write(postgresFatal(err.message)),
      },
    );
    expect(outcome.upgraded).toBe(false);
    expect(outcome.error?.code).toBe('JIT_ACCESS_DENIED');
    expect(outcome.error?.message).toBe('Session belongs to bob');
    const bytes = await received;
    expect(bytes[0]).toBe('E'.charCodeAt(0));
    expect(bytes.toString('latin1')).toContain('MSession belongs to bob\0');
    local.srv.close();
  });

  it('an unreachable server closes the local socket with JIT_SERVER_UNREACHABLE', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const outcomes: unknown[] = [];
    const listener = new LocalRelayListener({ onClose: (_id, o) => outcomes.push(o.error?.code) });
    const port = await listener.listen(0);
    listener.activate({ server: `http://127.0.0.1:${closedPort}`, sessionId: SID, grant: 'g' });
    const client = await connect(port);
    await readAll(client);
    await new Promise((r) => setTimeout(r, 20));
    expect(outcomes).toEqual(['JIT_SERVER_UNREACHABLE']);
    await listener.close();
  });

  it('when no access token can be had, the stream is not attempted and the client is told why', async () => {
    const seen: Seen = {};
    const server = await echoRelay(seen);
    const outcomes: unknown[] = [];
    const listener = new LocalRelayListener({
      onClose: (_id, o) => outcomes.push(o.error?.code),
      onRefused: (sock, err) => sock.write(postgresFatal(err.message)),
    });
    const port = await listener.listen(0);
    listener.activate({
      server,
      sessionId: SID,
      grant: 'g',
      accessToken: async () => {
        const { JitError } = await import('#shared/errors/jit-error.js');
        throw new JitError('JIT_AUTH_REFRESH_FAILED');
      },
    });
    const client = await connect(port);
    const bytes = await readAll(client);
    expect(bytes.toString('latin1')).toContain('MYour login could not be refreshed\0');
    await new Promise((r) => setTimeout(r, 20));
    expect(outcomes).toEqual(['JIT_AUTH_REFRESH_FAILED']);
    expect(seen.url).toBeUndefined();
    await listener.close();
  });

  it('a port in use → JIT_PORT_IN_USE', async () => {
    const a = new LocalRelayListener();
    const port = await a.listen(0);
    await expect(new LocalRelayListener().listen(port)).rejects.toMatchObject({
      code: 'JIT_PORT_IN_USE',
      message: `Port ${port} on 127.0.0.1 is already in use`,
    });
    await a.close();
  });
});
