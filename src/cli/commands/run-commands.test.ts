/**
 * Every CLI command's run* function over injected dependencies (the way gh tests a command by its
 * options): which server call it makes with what, what it refuses before calling anything, and
 * what the session verbs leave behind when they stop.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { AccessRequest, CreateSessionResponse, Session } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { type ApiClient, ApiError } from '../api/client.js';
import { runExec } from '../exec/run-exec.js';
import { runApprove } from './approve.js';
import { runAudit } from './audit.js';
import { runReport } from './audit-report.js';
import { runVerify } from './audit-verify.js';
import { runCancel } from './cancel.js';
import { runConnect } from './connect.js';
import { runDeny } from './deny.js';
import { runDisconnect } from './disconnect.js';
import { runLogout } from './logout.js';
import { runReplay } from './replay.js';
import { runRequests, runShowRequest } from './requests.js';
import { runSessions } from './sessions.js';
import { runTargets } from './targets.js';
import { runWhoami } from './whoami.js';

const SID = 'abcdefghij0123456789';
const RID = 'req00000000000000001';

/** An ApiClient that records each call and answers from `answers` (a function or a value). */
function fakeApi(answers: Record<string, unknown> = {}) {
  const calls: [string, ...unknown[]][] = [];
  const api = new Proxy(
    {},
    {
      get:
        (_t, name: string) =>
        async (...args: unknown[]) => {
          calls.push([name, ...args]);
          const a = answers[name];
          return typeof a === 'function' ? (a as (...x: unknown[]) => unknown)(...args) : a;
        },
    },
  ) as ApiClient;
  return { api, calls, names: () => calls.map((c) => c[0]) };
}

const session = (over: Partial<Session> = {}): Session =>
  ({
    id: SID,
    target: 'prod-db',
    targetType: 'postgres',
    state: 'active',
    dbUser: `jit_${SID}`,
    database: 'app',
    createdAt: new Date().toISOString(),
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    ...over,
  }) as Session;

const created = (s = session()): CreateSessionResponse =>
  ({ session: s, grant: 'g'.repeat(40), localSecret: 's3cr3t', heartbeatIntervalSeconds: 30 }) as CreateSessionResponse;

describe('thin commands: one server call each, ids checked first', () => {
  const cases: [string, (api: ApiClient) => Promise<unknown>, [string, ...unknown[]]][] = [
    ['jit sessions --all', (api) => runSessions({ api }, { all: true }), ['sessions', { all: true }]],
    ['jit disconnect', (api) => runDisconnect({ api }, SID), ['endSession', SID, 'exit']],
    ['jit requests --mine', (api) => runRequests({ api }, { mine: true }), ['requests', { mine: true, toReview: false }]],
    ['jit requests <id>', (api) => runShowRequest({ api }, RID), ['getRequest', RID]],
    ['jit cancel', (api) => runCancel({ api }, RID), ['cancelRequest', RID]],
    ['jit deny', (api) => runDeny({ api }, RID, 'not now'), ['denyRequest', RID, 'not now']],
    ['jit approve', (api) => runApprove({ api }, RID, { comment: 'ok' }), ['approveRequest', RID, { comment: 'ok' }]],
    ['jit targets', (api) => runTargets({ api }), ['targets']],
    ['jit whoami', (api) => runWhoami({ api }), ['whoami']],
    ['jit replay', (api) => runReplay({ api }, SID), ['sessionEvents', SID]],
  ];
  for (const [name, run, call] of cases) {
    it(name, async () => {
      const f = fakeApi();
      await run(f.api);
      expect(f.calls).toEqual([call]);
    });
  }

  it('jit approve --scope session-kind --for sends the scope; --for alone is a usage error before any call', async () => {
    const f = fakeApi();
    await runApprove({ api: f.api }, RID, { scope: 'session-kind', forSeconds: 600 });
    expect(f.calls).toEqual([['approveRequest', RID, { scope: { type: 'session-kind', forSeconds: 600 } }]]);
    const g = fakeApi();
    expect(() => runApprove({ api: g.api }, RID, { forSeconds: 600 })).toThrow(/--for goes with --scope session-kind/);
    expect(g.calls).toEqual([]);
  });

  it('refuses a malformed id (it would go into a URL) before calling the server', () => {
    const f = fakeApi();
    for (const bad of ['../../audit', 'ABCDEFGHIJ0123456789', `${SID}x`, '']) {
      expect(() => runDisconnect({ api: f.api }, bad)).toThrow(JitError);
      expect(() => runCancel({ api: f.api }, bad)).toThrow(/not a request id/);
      expect(() => runReplay({ api: f.api }, bad)).toThrow(/not a session id/);
    }
    expect(f.calls).toEqual([]);
  });

  it('jit audit filters, checks a session id, and asks once', async () => {
    const f = fakeApi({ request: { events: [] } });
    await runAudit({ api: f.api }, { session: SID, limit: 5 } as never);
    expect(f.calls).toHaveLength(1);
    expect(String(f.calls[0]![2])).toMatch(/^\/audit\?.*session=abcdefghij0123456789/);
    await expect(runAudit({ api: f.api }, { session: 'nope' } as never)).rejects.toThrow(/not a session id/);
  });

  it('jit audit verify and report pass their window through', async () => {
    const f = fakeApi();
    await runVerify({ api: f.api }, { sinceId: 42 });
    await runReport({ api: f.api }, { since: 1000, until: 2000 });
    expect(f.calls.map((c) => [c[1], c[2]])).toEqual([
      ['POST', '/audit/verify?since=42'],
      ['GET', '/audit/report?since=1000&until=2000'],
    ]);
  });
});

describe('jit logout', () => {
  const tokenStore = (tokens: unknown) => {
    const log: string[] = [];
    return {
      log,
      store: {
        get: async () => tokens,
        set: async () => void log.push('set'),
        delete: async () => void log.push('delete'),
      } as never,
    };
  };

  it('without a login does nothing and says so', async () => {
    const t = tokenStore(undefined);
    const r = await runLogout({
      ctx: { fetch: (() => Promise.reject(new Error('no network'))) as never },
      store: t.store,
      server: 'https://jit',
    });
    expect(r).toEqual({ server: 'https://jit', loggedOut: false, revoked: false });
    expect(t.log).toEqual([]);
  });

  it('forgets the tokens even when the IdP cannot be reached to revoke them', async () => {
    const t = tokenStore({ accessToken: 'a', refreshToken: 'r', issuer: 'http://127.0.0.1:9/', clientId: 'jit-cli' });
    const r = await runLogout({
      ctx: { fetch: (() => Promise.reject(new Error('no network'))) as never },
      store: t.store,
      server: 'https://jit',
    });
    expect(r).toMatchObject({ loggedOut: true, revoked: false });
    expect(t.log).toEqual(['delete']);
  });
});

describe('jit connect (runConnect)', () => {
  /** Signals the test sends by hand. */
  function signals() {
    const handlers = new Set<(s: NodeJS.Signals) => void>();
    return {
      onSignal: (h: (s: NodeJS.Signals) => void) => {
        handlers.add(h);
        return () => handlers.delete(h);
      },
      send: (s: NodeJS.Signals = 'SIGINT') => {
        for (const h of [...handlers]) h(s);
      },
      get count() {
        return handlers.size;
      },
    };
  }

  const deps = (api: ApiClient, sig = signals()) => ({
    ctx: { clock: systemClock, onSignal: sig.onSignal },
    api,
    server: 'http://127.0.0.1:9',
    accessToken: async () => 'token',
  });

  it('serves the session on 127.0.0.1 with its role in the URL; Ctrl-C ends it on the server and frees the port', async () => {
    const sig = signals();
    const f = fakeApi({ createSession: created(), endSession: () => session({ state: 'ended', endReason: 'exit' }) });
    let port = 0;
    const end = await runConnect(
      deps(f.api, sig),
      { target: 'prod-db' },
      {
        onReady: (ready) => {
          port = ready.port;
          expect(ready.url).toBe(`postgresql://jit_${SID}:s3cr3t@127.0.0.1:${port}/app?sslmode=disable`);
          setImmediate(() => sig.send());
        },
      },
    );
    expect(end).toMatchObject({ by: 'signal', endedOnServer: true, session: { state: 'ended' } });
    expect(f.names()).toEqual(['createSession', 'endSession']);
    expect(sig.count).toBe(0);
    await expect(canConnect(port)).resolves.toBe(false);
  });

  it('a taken port fails before any session exists', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as net.AddressInfo).port;
    const f = fakeApi({ createSession: created() });
    try {
      await expect(runConnect(deps(f.api), { target: 'prod-db', port }, { onReady: () => {} })).rejects.toThrow();
      expect(f.calls).toEqual([]);
    } finally {
      taken.close();
    }
  });

  it('an SSH session is refused and ended at once: nothing is served', async () => {
    const f = fakeApi({ createSession: created(session({ targetType: 'ssh', target: 'web-1' })), endSession: () => session() });
    let ready = false;
    await expect(
      runConnect(
        deps(f.api),
        { target: 'web-1' },
        {
          onReady: () => {
            ready = true;
          },
        },
      ),
    ).rejects.toThrow(/jit ssh/);
    expect(ready).toBe(false);
    expect(f.names()).toEqual(['createSession', 'endSession']);
  });

  it('--no-wait on a target that needs approval files the request and returns it, opening nothing', async () => {
    const requirement = {
      rule: 'prod',
      target: 'prod-db',
      reasonRequired: false,
      approvers: { users: ['bob'], groups: [], required: 1 },
      timeoutSeconds: 600,
      maxDurationSeconds: 3600,
    };
    const needs = new ApiError(403, new JitError('JIT_APPROVAL_REQUIRED'), { approval: requirement });
    const filed = { id: RID, target: 'prod-db', state: 'pending' } as AccessRequest;
    const f = fakeApi({
      createSession: () => {
        throw needs;
      },
      fileRequest: filed,
    });
    const end = await runConnect(
      deps(f.api),
      { target: 'prod-db', noWait: true },
      { approval: { askReason: async () => 'needed' }, onReady: () => {} },
    );
    expect(end).toEqual({ by: 'filed', request: filed, requirement });
    expect(f.names()).toEqual(['createSession', 'fileRequest']);
  });

  it('a view that cannot show the URL ends the session instead of leaving it to the heartbeat timeout', async () => {
    const f = fakeApi({ createSession: created(), endSession: () => session({ state: 'ended' }) });
    await expect(
      runConnect(
        deps(f.api),
        { target: 'prod-db' },
        {
          onReady: () => {
            throw new Error('terminal went away');
          },
        },
      ),
    ).rejects.toThrow('terminal went away');
    expect(f.names()).toEqual(['createSession', 'endSession']);
  });
});

describe('jit exec (runExec)', () => {
  const base = (api: ApiClient, start?: never) => ({
    ctx: {
      clock: systemClock,
      onSignal: () => () => {},
      env: {},
      io: { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
    },
    api,
    server: 'http://127.0.0.1:9',
    profile: 'default',
    accessToken: async () => 'token',
    status: () => {},
    approval: {},
    self: { node: process.execPath, script: 'jit' },
    ...(start ? { start } : {}),
  });

  it('needs a command, and asks nothing of the server without one', async () => {
    const f = fakeApi();
    await expect(runExec(base(f.api) as never, { target: 'prod-db', command: [] })).rejects.toThrow(/needs a command/);
    expect(f.calls).toEqual([]);
  });

  it("runs the command with the session in its environment, exits with the child's code and ends the session", async () => {
    const f = fakeApi({
      targets: [{ name: 'prod-db', type: 'postgres' }],
      createSession: created(),
      endSession: () => session({ state: 'ended' }),
    });
    let seen: Record<string, string | undefined> = {};
    const start = ((command: string[], env: Record<string, string | undefined>) => {
      seen = env;
      expect(command).toEqual(['./migrate', '--up']);
      return { ended: Promise.resolve({ code: 7 }), signal: () => {}, stop: async () => {} };
    }) as never;
    const code = await runExec(base(f.api, start) as never, { target: 'prod-db', command: ['./migrate', '--up'] });
    expect(code).toBe(7);
    expect(seen['PGUSER']).toBe(`jit_${SID}`);
    expect(seen['PGHOST']).toBe('127.0.0.1');
    expect(f.names()).toEqual(['targets', 'createSession', 'endSession']);
  });
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
