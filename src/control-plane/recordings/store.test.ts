import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AgentRecordingChunk } from '#shared/contract/agent.js';
import { silentLogger } from '#shared/log.js';
import { RecordingStore } from './store.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-rec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const chunk = (seq: number, data: string, final = false): AgentRecordingChunk => ({
  type: 'recording.chunk',
  session: 'abcdefghij0123456789',
  seq,
  data,
  final,
});

describe('RecordingStore', () => {
  it('writes chunks in order whatever order they are handed over in, once each, audited around the file', async () => {
    const audit: { type: string; data?: Record<string, unknown> }[] = [];
    const store = new RecordingStore({ dir, audit: { append: async (e) => void audit.push(e) }, logger: silentLogger() });
    const origin = { agent: 'a', actor: 'alice', target: 'web-1' };
    await Promise.all([
      store.append(chunk(1, 'b'), origin),
      store.append(chunk(0, 'H\n'), origin),
      store.append(chunk(2, 'c', true), origin),
      store.append(chunk(1, 'b'), origin),
    ]);
    expect(readFileSync(store.file('abcdefghij0123456789'), 'utf8')).toBe('H\nbc');
    expect(audit.map((e) => e.type)).toEqual(['recording.started', 'recording.finished']);
    expect(audit[0]!.data).toMatchObject({ file: 'recordings/abcdefghij0123456789.cast', format: 'asciicast-v2' });
    expect(audit[1]!.data).toMatchObject({ bytes: 4, chunks: 3 });
  });

  it('refuses a session id that is not one (it goes into a path)', () => {
    const store = new RecordingStore({ dir, audit: { append: async () => undefined }, logger: silentLogger() });
    expect(() => store.file('../../etc/passwd')).toThrow();
  });
});
