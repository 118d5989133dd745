import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '#shared/runtime/ctx.js';
import { openSqliteStore } from '../store/db.js';
import { AuditLog } from './audit-log.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function makeLog() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-audit-'));
  dirs.push(dir);
  const db = await openSqliteStore(dir);
  return { db, log: new AuditLog(db, systemClock) };
}

describe('AuditLog', () => {
  it('keeps every event of a burst, in order, with increasing ids', async () => {
    const { db, log } = await makeLog();
    const ids = await Promise.all(
      Array.from({ length: 2500 }, (_, i) => log.append({ type: 'statement.executed', session: 's1', data: { n: i } })),
    );
    expect(new Set(ids).size).toBe(2500);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    const events = await log.query({ session: 's1', limit: 10_000 });
    expect(events.map((e) => e.data['n'])).toEqual(Array.from({ length: 2500 }, (_, i) => i));
    expect(log.backlog()).toBe(0);
    await db.destroy();
  });

  it('never stores secrets passed by mistake', async () => {
    const { db, log } = await makeLog();
    await log.append({ type: 'x.happened', data: { password: 'hunter2', accessToken: 'eyJ…', user: 'alice' } });
    const [e] = await log.query({ type: 'x.happened' });
    expect(e?.data).toEqual({ password: '[redacted]', accessToken: '[redacted]', user: 'alice' });
    await db.destroy();
  });
});
