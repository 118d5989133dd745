import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Session } from '#shared/contract/http.js';
import { EXIT } from '#shared/errors/codes.js';
import { JitError } from '#shared/errors/jit-error.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { type LeaseDeps, sessionEndedError, startLease } from './lease.js';

const T0 = Date.parse('2026-06-01T10:00:00Z');

const session: Session = {
  id: 'abcdefghij0123456789',
  target: 'prod-db',
  targetType: 'postgres',
  state: 'active',
  createdAt: new Date(T0).toISOString(),
  expiresAt: new Date(T0 + 60_000).toISOString(),
} as Session;

/** A server whose answers the test decides; every call is counted. */
function server() {
  const calls = { heartbeat: 0, end: [] as string[], sessions: 0 };
  let beat: () => Promise<Session> = async () => session;
  let end: () => Promise<Session> = async () => ({ ...session, state: 'ended', endReason: 'exit' }) as Session;
  let list: () => Promise<Session[]> = async () => [];
  const api: LeaseDeps['api'] = {
    heartbeat: () => {
      calls.heartbeat++;
      return beat();
    },
    endSession: (_id, reason = 'exit') => {
      calls.end.push(reason);
      return end();
    },
    sessions: () => {
      calls.sessions++;
      return list();
    },
  };
  return {
    api,
    calls,
    onBeat: (f: typeof beat) => {
      beat = f;
    },
    onEnd: (f: typeof end) => {
      end = f;
    },
    onList: (f: typeof list) => {
      list = f;
    },
  };
}

const created = { session, heartbeatIntervalSeconds: 10 };

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('the CLI session lease', () => {
  it('heartbeats once per interval, never two at a time when the server is slow', async () => {
    const s = server();
    let release!: () => void;
    s.onBeat(
      () =>
        new Promise<Session>((r) => {
          release = () => r(session);
        }),
    );
    startLease({ api: s.api, clock: systemClock }, created);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(s.calls.heartbeat).toBe(1);
    await vi.advanceTimersByTimeAsync(30_000); // the first one is still out
    expect(s.calls.heartbeat).toBe(1);
    release();
    s.onBeat(async () => session);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(s.calls.heartbeat).toBe(2);
  });

  it('a failed heartbeat is a warning, cleared by the next success; the session goes on', async () => {
    const s = server();
    const warnings: (string | undefined)[] = [];
    s.onBeat(async () => {
      throw new JitError('JIT_SERVER_UNREACHABLE', { message: 'cannot reach the jit server' });
    });
    const lease = startLease({ api: s.api, clock: systemClock }, created, { onWarning: (w) => warnings.push(w) });
    await vi.advanceTimersByTimeAsync(10_000);
    s.onBeat(async () => session);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(warnings).toEqual(['heartbeat failed: cannot reach the jit server', undefined]);
    let over = false;
    void lease.ended.then(() => {
      over = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(over).toBe(false);
  });

  it('tells how the server ended it, and stops heartbeating', async () => {
    const s = server();
    s.onBeat(async () => ({ ...session, state: 'ended', endReason: 'admin' }) as Session);
    const lease = startLease({ api: s.api, clock: systemClock }, created);
    await vi.advanceTimersByTimeAsync(10_000);
    const end = await lease.ended;
    expect(end).toMatchObject({ by: 'server', reason: 'admin', message: 'an administrator ended it' });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(s.calls.heartbeat).toBe(1);
    const err = sessionEndedError(end);
    expect(err.message).toBe('Session abcdefghij0123456789 ended: an administrator ended it');
    expect(err.exitCode).toBe(EXIT.sessionEnded);
  });

  it('asks why when the heartbeat only says the session is gone', async () => {
    const s = server();
    s.onBeat(async () => {
      throw new JitError('JIT_SESSION_ENDED');
    });
    s.onList(async () => [{ ...session, state: 'ended', endReason: 'revoked' } as Session]);
    const lease = startLease({ api: s.api, clock: systemClock }, created);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await lease.ended).toMatchObject({
      by: 'server',
      reason: 'revoked',
      message: 'access was revoked',
      session: { state: 'ended' },
    });
  });

  it('ends by itself when its time runs out, in the words every verb uses', async () => {
    const s = server();
    const lease = startLease({ api: s.api, clock: systemClock }, created);
    await vi.advanceTimersByTimeAsync(60_000);
    const end = await lease.ended;
    expect(end.by).toBe('expired');
    // Over on the server now, not at its next sweep; and only once, however the command stops.
    await lease.end();
    expect(s.calls.end).toEqual(['exit']);
    expect(sessionEndedError(end, { during: 'the command ran', hint: 'again' })).toMatchObject({
      code: 'JIT_SESSION_ENDED',
      message: 'Session abcdefghij0123456789 ended while the command ran: its time ran out',
      hint: 'again',
    });
  });

  it('an unreadable expiry leaves ending to the server instead of ending at once', async () => {
    const s = server();
    const lease = startLease({ api: s.api, clock: systemClock }, { ...created, session: { ...session, expiresAt: 'soon' } });
    let over = false;
    void lease.ended.then(() => {
      over = true;
    });
    await vi.advanceTimersByTimeAsync(120_000);
    expect(over).toBe(false);
    expect(s.calls.heartbeat).toBeGreaterThan(5);
  });

  it('ends once on the server however often it is asked, then stops heartbeating', async () => {
    const s = server();
    const lease = startLease({ api: s.api, clock: systemClock }, created);
    const [a, b] = await Promise.all([lease.end('killed'), lease.end()]);
    expect(a).toEqual(b);
    expect(a.endedOnServer).toBe(true);
    expect(s.calls.end).toEqual(['killed']);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(s.calls.heartbeat).toBe(0);
  });

  it('asks nothing of the server when the server ended it', async () => {
    const s = server();
    s.onBeat(async () => ({ ...session, state: 'ended', endReason: 'admin' }) as Session);
    const lease = startLease({ api: s.api, clock: systemClock }, created);
    await vi.advanceTimersByTimeAsync(10_000);
    await lease.ended;
    expect(await lease.end()).toMatchObject({ endedOnServer: true, session: { state: 'ended' } });
    expect(s.calls.end).toEqual([]);
  });

  it('counts a session already gone as ended, a server out of reach as not', async () => {
    const gone = server();
    gone.onEnd(async () => {
      throw new JitError('JIT_SESSION_NOT_FOUND');
    });
    expect((await startLease({ api: gone.api, clock: systemClock }, created).end()).endedOnServer).toBe(true);
    const away = server();
    away.onEnd(async () => {
      throw new JitError('JIT_SERVER_UNREACHABLE');
    });
    expect(await startLease({ api: away.api, clock: systemClock }, created).end()).toMatchObject({
      endedOnServer: false,
      session: { id: session.id },
    });
  });
});
