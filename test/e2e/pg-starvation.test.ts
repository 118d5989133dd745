/**
 * One session cannot starve the target: from the built binary, a user floods their own
 * `jit connect` port with idle sockets and bogus CancelRequests. PostgreSQL's own view
 * connections (the kernel's socket table) are the ground truth: none of it may reach the server, and a superuser and
 * another session still connect. A session over its connection cap gets SQLSTATE 53300.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { USERS } from '../helpers/control-plane.js';
import { cliLogin, type Stack, startStack } from '../helpers/e2e-stack.js';
import { type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { sql } from '../helpers/postgres.js';

const run = promisify(execFile);
const pgInfo = inject('pg');
const TARGET = 'e2e-dos-db';
let stack: Stack;
let home: string;
const procs: SpawnedJit[] = [];

async function connect(): Promise<{ url: string; port: number }> {
  const proc = spawnJit(['connect', TARGET, '--json'], { home });
  procs.push(proc);
  await proc.waitForLine('stdout', /^\}$/, 30_000);
  return JSON.parse(proc.stdout()) as { url: string; port: number };
}

/** TCP connections the agent process holds to the PostgreSQL server right now (ss, the kernel's view). */
async function agentTargetConnections(): Promise<number> {
  const { stdout } = await run('ss', ['-Htnp', 'state', 'established', 'dst', `127.0.0.1:${pgInfo.port}`]);
  return stdout.split('\n').filter((l) => l.includes(`pid=${stack.agent.child.pid},`)).length;
}

function cancelPacket(): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(80877102, 4);
  randomBytes(8).copy(b, 8);
  return b;
}

beforeAll(async () => {
  stack = await startStack(pgInfo, 'e2e_dos');
  home = await cliLogin(stack.url, 'alice', USERS.find((u) => u.username === 'alice')!.password);
}, 120_000);

afterAll(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => p.exited(10_000).catch(() => undefined)));
  await stack?.stop();
});

describe('one session cannot starve the target', () => {
  it('500 idle sockets and 2,000 bogus cancels reach nothing; a superuser and another session still connect', async () => {
    const flooded = await connect();
    const before = await agentTargetConnections();
    const idle: net.Socket[] = [];
    for (let i = 0; i < 500; i++) {
      const s = net.connect(flooded.port, '127.0.0.1');
      s.on('error', () => {});
      idle.push(s);
    }
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(
        Array.from(
          { length: 100 },
          () =>
            new Promise<void>((resolve) => {
              const s = net.connect(flooded.port, '127.0.0.1', () => s.end(cancelPacket()));
              s.on('error', () => resolve());
              s.on('close', () => resolve());
            }),
        ),
      );
    }
    // Every stream has reached the agent by now; none may hold a server connection.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(idle.filter((s) => !s.destroyed).length).toBe(500);
    expect(await agentTargetConnections()).toBeLessThanOrEqual(before + 2);
    expect(await sql(pgInfo.superUrl, 'select 1 as ok')).toEqual([{ ok: 1 }]);
    const other = await connect();
    const c = new pg.Client({ connectionString: other.url });
    await c.connect();
    expect((await c.query('select count(*)::int as n from items')).rows).toEqual([{ n: 100 }]);
    await c.end();
    for (const s of idle) s.destroy();
  }, 120_000);

  it('refuses connections past the session cap with 53300, and the ones before it work', async () => {
    const s = await connect();
    const clients: pg.Client[] = [];
    try {
      for (let i = 0; i < 64; i++) {
        const c = new pg.Client({ connectionString: s.url });
        await c.connect();
        clients.push(c);
      }
      const extra = new pg.Client({ connectionString: s.url });
      const err = (await extra.connect().then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: string; message?: string } | undefined;
      expect(err?.code).toBe('53300');
      expect(err?.message).toMatch(/too many connections for this jit session \(the limit is 64\)/);
      expect((await clients[63]!.query('select 1 as ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  }, 120_000);
});
