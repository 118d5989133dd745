import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { maskDataRow, planMasking } from '#protocol/postgres/mask.js';
import { MaskRule } from '#shared/config/policy.js';
import { maskingKey } from './main.js';

const rules = [MaskRule.parse({ name: 'emails', columns: ['email'], style: 'hash' })];
const field = { name: 'email', tableOid: 1, columnAttr: 1, typeOid: 25, typeSize: -1, typeModifier: -1, format: 0 as const };

/** The hash mask of one text value under `key`, as a client would see it. */
function masked(key: Buffer, value: string): string {
  const plan = planMasking([field], () => ({ schema: 'public', table: 'users', column: 'email' }), rules, { hashKey: key });
  const v = Buffer.from(value);
  const row = Buffer.alloc(11 + v.length);
  row.write('D', 0);
  row.writeInt32BE(10 + v.length, 1);
  row.writeInt16BE(1, 5);
  row.writeInt32BE(v.length, 7);
  v.copy(row, 11);
  const out = maskDataRow(row, plan)!;
  return out.subarray(11).toString();
}

describe('the masking hash key', () => {
  it('is the same for the same agent token across restarts, so equal values keep equal masks', () => {
    const a = maskingKey({}, 'agent-token-1');
    const b = maskingKey({}, 'agent-token-1');
    expect(a.equals(b)).toBe(true);
    expect(masked(a, 'ann@example.com')).toBe(masked(b, 'ann@example.com'));
    expect(masked(a, 'ann@example.com')).not.toContain('ann');
    expect(maskingKey({}, 'agent-token-2').equals(a)).toBe(false);
  });

  it('comes from the operator’s file when configured (rotated by replacing it), refusing a short one', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-mkey-'));
    const file = path.join(dir, 'key');
    writeFileSync(file, 'a-long-enough-masking-key-0123456789\n');
    const k = maskingKey({ maskingKeyFile: file }, 'agent-token-1');
    expect(k.toString()).toBe('a-long-enough-masking-key-0123456789');
    expect(masked(k, 'ann@example.com')).not.toBe(masked(maskingKey({}, 'agent-token-1'), 'ann@example.com'));
    writeFileSync(file, 'short\n');
    expect(() => maskingKey({ maskingKeyFile: file }, 't')).toThrow(/fewer than 16 bytes/);
  });
});
