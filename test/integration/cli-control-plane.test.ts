/**
 * The CLI's user commands against the REAL control plane (startServer + built-in IdP), driven
 * through `run()` like a user. No agent runs here, so relay streams end at the server's
 * "agent not connected" answer — which must reach psql as a PostgreSQL error.
 */
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenStore } from '#cli/auth/token-store.js';
import { run } from '#cli/main.js';
import { resolveSettings } from '#cli/settings/settings.js';
import { silentLogger } from '#shared/log.js';
import { createSystemCtx } from '#shared/runtime/ctx.js';
import { loginAs, type ServerFixture, startControlPlane } from '../helpers/control-plane.js';

let cp: ServerFixture;

beforeAll(async () => {
  cp = await startControlPlane({
    policy: {
      targets: [
        { name: 'app-db', type: 'postgres', agent: 'local', database: 'app', description: 'the app database', maxDuration: '2h' },
        { name: 'secret-db', type: 'postgres', agent: 'local' },
      ],
      access: [{ name: 'engineers-app', targets: ['app-db'], groups: ['engineers'], grantRoles: ['app_reader'] }],
    },
    sessions: { heartbeatTimeout: '3s', heartbeatInterval: '1s' },
  });
});

afterAll(async () => {
  await cp?.stop();
});

class Capture extends PassThrough {
  text = '';
  constructor() {
    super();
    this.on('data', (c: Buffer) => {
      this.text += c.toString();
    });
  }
}

/** A user's machine: its own HOME, tokens from a real device-flow login in the file store. */
async function userMachine(username: string) {
  const home = mkdtempSync(path.join(os.tmpdir(), `jit-cli-cp-${username}-`));
  const env = { JIT_KEYRING: 'file', XDG_CONFIG_HOME: path.join(home, 'config'), JIT_SERVER: cp.url, NO_COLOR: '1' };
  const tokens = await loginAs(cp.url, username);
  const settings = resolveSettings({ env, homedir: home, flags: {} });
  await createTokenStore({ env, configDir: settings.configDir, profile: 'default', server: settings.server, warn: () => {} }).set({
    ...tokens,
    expiresAt: Date.now() + 600_000,
    issuer: `${cp.url}/oidc`,
    clientId: 'jit-cli',
    audience: cp.url,
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
  };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A PostgreSQL StartupMessage, as psql sends it first. */
function startupMessage(user: string, database: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(body.length + 8, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

function pgExchange(port: number, message: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = net.connect({ port, host: '127.0.0.1' }, () => c.write(message));
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('close', () => resolve(Buffer.concat(chunks)));
    c.on('error', reject);
  });
}

describe('jit CLI against the real control plane', () => {
  it('whoami and targets show what the server says', async () => {
    const alice = await userMachine('alice');
    expect(await alice.run('whoami', '--json')).toBe(0);
    expect(JSON.parse(alice.stdout.text)).toMatchObject({ username: 'alice', groups: ['engineers'], admin: false });
    const before = alice.stdout.text.length;
    expect(await alice.run('targets')).toBe(0);
    expect(alice.stdout.text.slice(before)).toMatchInlineSnapshot(`
      "NAME    TYPE      ONLINE  DESCRIPTION
      app-db  postgres  no      the app database
      "
    `);
  });

  it('connect: URL with the session role, relay refusal reaches psql as a FATAL, Ctrl-C ends the session', async () => {
    const alice = await userMachine('alice');
    const exit = alice.run('connect', 'app-db', '--reason', 'cli test', '--duration', '30m');
    await until(() => alice.stdout.text.includes('\n'));
    const url = new URL(alice.stdout.text.trim());
    expect(url.protocol).toBe('postgresql:');
    expect(url.username).toMatch(/^jit_[a-z0-9]{20}$/);
    expect(url.pathname).toBe('/app');
    const sid = url.username.slice(4);

    // No agent is connected: psql must get an ErrorResponse naming why, not a silent close.
    const answer = await pgExchange(Number(url.port), startupMessage(url.username, 'app'));
    expect(answer[0]).toBe('E'.charCodeAt(0));
    expect(answer.toString('latin1')).toContain('JIT_AGENT_UNAVAILABLE');

    // Heartbeats keep it alive past the server's 3 s timeout.
    await new Promise((r) => setTimeout(r, 4000));
    const other = await userMachine('alice');
    expect(await other.run('sessions', '--json')).toBe(0);
    const listed = JSON.parse(other.stdout.text).sessions.find((s: { id: string }) => s.id === sid);
    expect(listed).toMatchObject({ state: 'active', target: 'app-db', reason: 'cli test', dbUser: `jit_${sid}` });

    alice.signal();
    expect(await exit).toBe(0);
    const after = await userMachine('alice');
    expect(await after.run('sessions', '--json')).toBe(0);
    expect(JSON.parse(after.stdout.text).sessions.find((s: { id: string }) => s.id === sid)).toMatchObject({
      state: 'ended',
      endReason: 'exit',
    });
  }, 30_000);

  it('an administrator ending the session stops connect with exit 8 and says why; audit shows it', async () => {
    const alice = await userMachine('alice');
    const exit = alice.run('connect', 'app-db');
    await until(() => alice.stdout.text.includes('\n'));
    const sid = new URL(alice.stdout.text.trim()).username.slice(4);
    const bob = await userMachine('bob');
    expect(await bob.run('disconnect', sid)).toBe(0);
    expect(await exit).toBe(8);
    expect(alice.stderr.text).toContain(`✘ Session ${sid} ended: an administrator ended it  [JIT_SESSION_ENDED]`);

    const before = bob.stdout.text.length;
    expect(await bob.run('audit', '--session', sid, '--json')).toBe(0);
    const types = bob.stdout.text
      .slice(before)
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).type);
    expect(types).toContain('session.started');
    expect(types.some((t: string) => t.startsWith('session.end'))).toBe(true);
  }, 30_000);

  it('a target outside policy is denied (exit 4); audit is for administrators only (exit 4)', async () => {
    const alice = await userMachine('alice');
    expect(await alice.run('connect', 'secret-db')).toBe(4);
    expect(alice.stderr.text).toMatch(/^✘ .*\[JIT_(ACCESS_DENIED|TARGET_NOT_FOUND)\]\n {2}hint: /);
    expect(await alice.run('audit')).toBe(4);
    expect(alice.stderr.text).toContain('[JIT_ADMIN_REQUIRED]');
  });
});
