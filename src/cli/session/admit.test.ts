import { describe, expect, it } from 'vitest';
import type { Session } from '#shared/contract/http.js';
import { describeEndReason, END_REASON_TEXT, EndReason } from '#shared/contract/end-reasons.js';
import { isJitError } from '#shared/errors/jit-error.js';
import { admitSession } from './admit.js';

const session: Session = {
  id: 'abcdefghij0123456789',
  user: 'alice',
  target: 'web-1',
  targetType: 'ssh',
  state: 'active',
  createdAt: '2026-05-01T10:00:00.000Z',
  expiresAt: '2026-05-01T10:30:00.000Z',
};

function recordingApi() {
  const ended: [string, string][] = [];
  return { ended, api: { endSession: async (id: string, reason: string) => void ended.push([id, reason]) } as never };
}

async function refusal(p: Promise<unknown>) {
  try {
    await p;
  } catch (err) {
    if (isJitError(err)) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('admitSession', () => {
  it('lets a verb open the types its engine serves', async () => {
    const { api, ended } = recordingApi();
    await admitSession(api, 'ssh', 'web-1', session);
    await admitSession(api, 'exec', 'web-1', session);
    await admitSession(api, 'connect', 'db', { ...session, targetType: 'postgres' });
    expect(ended).toEqual([]);
  });

  it('ends a session of the wrong type at once and says which verb to use', async () => {
    const { api, ended } = recordingApi();
    const err = await refusal(admitSession(api, 'connect', 'web-1', session));
    expect(err.code).toBe('JIT_USAGE');
    expect(err.message).toBe('web-1 is an SSH host, which jit connect does not open (use jit ssh or jit exec)');
    expect(ended).toEqual([[session.id, 'exit']]);
    const err2 = await refusal(admitSession(api, 'ssh', 'db', { ...session, targetType: 'postgres' }));
    expect(err2.message).toContain('use jit connect or jit exec');
  });

  it('refuses a malformed session id before using it anywhere', async () => {
    const { api, ended } = recordingApi();
    for (const id of ['../../etc', 'ABCDEFGHIJ0123456789', 'abcdefghij012345678', 'abcdefghij0123456789\n']) {
      const err = await refusal(admitSession(api, 'ssh', 'web-1', { ...session, id }));
      expect(err.code).toBe('JIT_PROTOCOL_ERROR');
    }
    expect(ended).toEqual([]);
  });
});

describe('end reasons', () => {
  it('every reason has words, and an unknown or missing one reads as ended by the server', () => {
    for (const r of EndReason.options) expect(END_REASON_TEXT[r]).toMatch(/^[a-z]/);
    expect(describeEndReason('admin')).toBe('an administrator ended it');
    expect(describeEndReason(undefined)).toBe('the server ended it');
    expect(describeEndReason('from-a-newer-server')).toBe('the server ended it');
  });
});
