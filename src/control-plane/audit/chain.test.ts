import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '#shared/runtime/ctx.js';
import { openSqliteStore } from '../store/db.js';
import { AuditSigner } from './audit-key.js';
import { AuditLog } from './audit-log.js';
import { canonicalJson } from '#shared/audit/chain.js';
import { dbEventSource } from './db-source.js';
import { verifyAudit } from '#shared/audit/verify.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function makeLog(every = 10) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-chain-'));
  dirs.push(dir);
  const db = await openSqliteStore(dir);
  const signer = AuditSigner.load(path.join(dir, 'audit-key.json'));
  // Each reading of the clock is one second later: event n is at n seconds (checkpoints read it too).
  let t = 0;
  const clock = { ...systemClock, now: () => (t += 1000) };
  const log = new AuditLog(db, clock, { signer, checkpointEveryEvents: every });
  for (let i = 1; i <= 25; i++) await log.append({ type: 'statement.executed', session: 's1', actor: 'alice', data: { n: i } });
  await log.checkpoint();
  const verify = () => verifyAudit(dbEventSource(db), signer.verificationKeys(), { now: Date.now() });
  // A second connection, as an attacker with file access would have.
  const raw = new Database(path.join(dir, 'jit.db'));
  return { dir, db, log, signer, verify, raw };
}

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'x', null], c: true }, u: undefined })).toBe('{"a":{"c":true,"d":[1,"x",null]},"b":1}');
  });
});

describe('the audit chain', () => {
  it('verifies an untouched log, checkpoints included', async () => {
    const { db, verify, raw } = await makeLog();
    const r = await verify();
    expect(r.ok).toBe(true);
    expect(r.streams[0]).toMatchObject({
      stream: 'cp',
      checked: 25,
      unsignedTail: 0,
      checkpoints: { total: 3, verified: 3, badSignatures: 0 },
    });
    raw.close();
    await db.destroy();
  });

  it('names a deleted event', async () => {
    const { db, verify, raw } = await makeLog();
    raw.prepare('DELETE FROM audit_events WHERE id = 7').run();
    const r = await verify();
    expect(r.ok).toBe(false);
    expect(r.problem).toMatchObject({ kind: 'removed', eventId: 8, seq: 7 });
    expect(r.problem?.message).toContain('after event 6');
    raw.close();
    await db.destroy();
  });

  it('names an altered event, also when the attacker re-hashed it', async () => {
    const { db, verify, raw } = await makeLog();
    raw.prepare(`UPDATE audit_events SET actor = 'mallory' WHERE id = 12`).run();
    expect((await verify()).problem).toMatchObject({ kind: 'altered', eventId: 12 });
    raw.prepare(`UPDATE audit_events SET hash = 'ab' || substr(hash, 3) WHERE id = 12`).run();
    expect((await verify()).problem).toMatchObject({ kind: 'altered', eventId: 12 });
    raw.close();
    await db.destroy();
  });

  it('names an inserted event and a reordering', async () => {
    const { db, verify, raw } = await makeLog();
    raw.prepare(`UPDATE audit_events SET id = id + 1000 WHERE id >= 15`).run();
    raw.prepare(`UPDATE audit_events SET id = id - 999 WHERE id >= 1015`).run();
    const prev = raw.prepare('SELECT hash, seq FROM audit_events WHERE id = 14').get() as { hash: string; seq: number };
    raw
      .prepare(
        `INSERT INTO audit_events (id, time, type, actor, outcome, data, stream, seq, prev_hash, hash) VALUES (15, 1, 'session.started', 'mallory', 'success', '{}', 'cp', ?, ?, ?)`,
      )
      .run(prev.seq + 1, prev.hash, 'f'.repeat(64));
    expect((await verify()).problem).toMatchObject({ kind: 'inserted', eventId: 15 });
    raw.close();
    await db.destroy();

    const b = await makeLog();
    b.raw.prepare('UPDATE audit_events SET id = -1 WHERE id = 5').run();
    b.raw.prepare('UPDATE audit_events SET id = 5 WHERE id = 6').run();
    b.raw.prepare('UPDATE audit_events SET id = 6 WHERE id = -1').run();
    expect((await b.verify()).problem).toMatchObject({ kind: 'reordered', eventId: 5 });
    b.raw.close();
    await b.db.destroy();
  });

  it('a row written without the chain is named as inserted', async () => {
    const { db, verify, raw } = await makeLog();
    raw.prepare(`INSERT INTO audit_events (time, type, outcome, data) VALUES (1, 'session.started', 'success', '{}')`).run();
    expect((await verify()).problem).toMatchObject({ kind: 'inserted', eventId: 26 });
    raw.close();
    await db.destroy();
  });

  it('a removed tail is caught by the signed checkpoint, a forged checkpoint by its signature', async () => {
    const { db, verify, raw } = await makeLog();
    raw.prepare('DELETE FROM audit_events WHERE id > 22').run();
    expect((await verify()).problem).toMatchObject({ kind: 'removed', eventId: null, seq: 23 });
    raw.prepare('UPDATE audit_checkpoints SET last_id = 22, last_seq = 22, count = 22').run();
    expect((await verify()).problem).toMatchObject({ kind: 'checkpoint' });
    raw.close();
    await db.destroy();
  });

  it('prunes only up to a checkpoint and still verifies', async () => {
    const { db, log, verify, raw } = await makeLog();
    const t15 = (raw.prepare('SELECT time FROM audit_events WHERE id = 15').get() as { time: number }).time;
    const pruned = await log.prune(t15 + 1);
    expect(pruned).toEqual({ throughId: 10, throughSeq: 10, deleted: 10 });
    const r = await verify();
    expect(r.ok, JSON.stringify(r.problem)).toBe(true);
    expect(r.streams[0]?.anchor).toEqual({ kind: 'pruned', id: 10, seq: 10 });
    const [ev] = await log.query({ type: 'audit.pruned' });
    expect(ev?.data).toMatchObject({ throughId: 10, deleted: 10 });
    // Removing the first event after the prune point is still seen.
    raw.prepare('DELETE FROM audit_events WHERE id = 11').run();
    expect((await verify()).problem).toMatchObject({ kind: 'removed', eventId: 12 });
    raw.close();
    await db.destroy();
  });

  it('chains the rows of a store written before chaining existed, once', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-chain-'));
    dirs.push(dir);
    let db = await openSqliteStore(dir);
    const raw = new Database(path.join(dir, 'jit.db'));
    raw
      .prepare(
        `INSERT INTO audit_events (time, type, outcome, data) VALUES (1, 'server.started', 'info', '{}'), (2, 'login.succeeded', 'success', '{}')`,
      )
      .run();
    const signer = AuditSigner.load(path.join(dir, 'audit-key.json'));
    const log = new AuditLog(db, systemClock, { signer });
    await log.append({ type: 'session.started', data: {} });
    const r = await verifyAudit(dbEventSource(db), signer.verificationKeys(), { now: Date.now() });
    expect(r.ok).toBe(true);
    expect(r.streams[0]?.checked).toBe(3);
    raw.close();
    await db.destroy();
    db = await openSqliteStore(dir);
    await db.destroy();
  });
});
