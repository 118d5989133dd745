/**
 * One gate, every carrier: the same decision (allow, block, approve, deny) reached through a simple
 * Query, an extended Parse/Bind/Execute, an extended batch pipelined behind another statement, and
 * a FunctionCall message must have the same outcome. Ground truth is the server: each statement
 * calls a function that writes a row, so "ran" means the row exists.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalRequest } from '#agent/engines/inspect/approval.js';
import { buildExecute, buildParse, buildQuery, parseNoticeFields } from '#protocol/postgres/messages.js';
import { statementDigest } from '#shared/contract/agent.js';
import { sql } from '../helpers/postgres.js';
import { DEFAULT_RULES, type Harness, startInspectHarness } from './inspect-harness.js';
import { bind, dataValues, fcall, type Msg, RawClient, sync, types } from './raw-client.js';

const RULES = {
  ...DEFAULT_RULES,
  guardrails: [
    ...DEFAULT_RULES.guardrails,
    { name: 'no-gate-block', match: { functions: ['gate_block'] }, action: 'block' },
    { name: 'hold-gate', match: { functions: ['gate_hold'] }, action: 'require-approval' },
    // Listed approval-first on purpose: the block must still win (the strictest matching rule).
    { name: 'hold-both', match: { functions: ['gate_both'] }, action: 'require-approval' },
    { name: 'no-both', match: { functions: ['gate_both'] }, action: 'block' },
  ],
};

const FUNCTIONS = ['gate_ok', 'gate_block', 'gate_hold', 'gate_both'];
const held: ApprovalRequest[] = [];
let h: Harness;
const oids = new Map<string, number>();

beforeAll(async () => {
  h = await startInspectHarness(
    'gp',
    [
      'CREATE TABLE gate_log (tag text)',
      ...FUNCTIONS.map((f) => `CREATE FUNCTION ${f}(t text) RETURNS int LANGUAGE sql AS $$ INSERT INTO gate_log VALUES (t) RETURNING 1 $$`),
    ],
    {
      // A human approves what is tagged approve-…, denies the rest; the request shows exactly what will run.
      approve: async (req) => {
        held.push(req);
        const shown = `${req.sql} ${(req.params ?? []).join(' ')}`;
        return shown.includes('approve-')
          ? { approved: true, request: 'req-1', scope: 'statement' }
          : { approved: false, reason: 'it was denied' };
      },
    },
  );
  for (const f of FUNCTIONS) {
    const [row] = await sql(h.superDbUrl, `select '${f}(text)'::regprocedure::oid::int as oid`);
    oids.set(f, row!['oid'] as number);
  }
});
afterAll(async () => {
  await h?.close();
});

type Carrier = 'simple' | 'extended' | 'pipelined' | 'function-call';
const CARRIERS: Carrier[] = ['simple', 'extended', 'pipelined', 'function-call'];
const CASES = [
  { outcome: 'allow', fn: 'gate_ok', runs: true },
  { outcome: 'block', fn: 'gate_block', runs: false },
  { outcome: 'approve', fn: 'gate_hold', runs: true },
  { outcome: 'deny', fn: 'gate_hold', runs: false },
  // An approver would approve it (tagged approve-…), but a block rule also matches: never held, never run.
  { outcome: 'approve-but-blocked', fn: 'gate_both', runs: false },
] as const;

/** Send `fn(tag)` through the carrier; the messages up to the statement's ReadyForQuery. */
async function call(c: RawClient, carrier: Carrier, fn: string, tag: string): Promise<Msg[]> {
  switch (carrier) {
    case 'simple':
      c.send(buildQuery(`select ${fn}('${tag}')`));
      break;
    case 'extended':
      c.send(buildParse('', `select ${fn}($1)`), bind('', [tag]), buildExecute(''), sync());
      break;
    case 'pipelined':
      c.send(
        buildParse('a', 'select 1'),
        bind('a'),
        buildExecute(''),
        buildParse('b', `select ${fn}($1)`),
        bind('b', [tag]),
        buildExecute(''),
        sync(),
      );
      break;
    case 'function-call':
      c.send(fcall(oids.get(fn)!, [tag]));
      break;
  }
  return c.untilReady();
}

async function ran(tag: string): Promise<boolean> {
  return (await sql(h.superDbUrl, `select 1 from gate_log where tag = '${tag}'`)).length === 1;
}

const PROTOCOL: Record<Carrier, string> = {
  simple: 'simple',
  extended: 'extended',
  pipelined: 'extended',
  'function-call': 'function-call',
};

describe('every carrier passes the same gate', () => {
  for (const carrier of CARRIERS) {
    for (const k of CASES) {
      it(`${carrier} × ${k.outcome}`, async () => {
        const tag = `${k.outcome}-${carrier}-${Math.random().toString(36).slice(2, 8)}`;
        const c = await RawClient.connect(h, RULES);
        const before = h.events.length;
        const heldBefore = held.length;
        const msgs = await call(c, carrier, k.fn, tag);
        c.end();
        const errors = msgs
          .filter((m) => m.type === 'E')
          .map((m) => parseNoticeFields(Buffer.concat([Buffer.from('E\0\0\0\0'), m.body]), 0, m.body.length + 5));
        const events = h.events.slice(before).filter((e) => e.data?.['sql'] && String(e.data['sql']).includes(k.fn));

        expect(await ran(tag), types(msgs)).toBe(k.runs);
        if (k.runs) {
          expect(errors).toEqual([]);
          const executed = events.find((e) => e.event === 'statement.executed');
          expect(executed?.data?.['protocol']).toBe(PROTOCOL[carrier]);
          if (k.outcome === 'approve') {
            expect(executed?.data?.['approval']).toBe('req-1');
            // The record joins the approval on its digest: exactly what the approver was shown.
            const req = held[held.length - 1]!;
            expect(executed?.data?.['digest']).toBe(statementDigest(req.sql, req.params));
          }
          const completed = h.events
            .slice(before)
            .find((e) => e.event === 'statement.completed' && e.data?.['ref'] === executed?.data?.['seq']);
          expect(completed?.data?.['digest']).toBe(executed?.data?.['digest']);
        } else {
          expect(errors.map((e) => e['C'])).toEqual(['42501']);
          expect(errors[0]!['M']).toMatch(
            k.outcome === 'block'
              ? /blocked by rule no-gate-block/
              : k.outcome === 'deny'
                ? /needs approval \(rule hold-gate\) and it was denied/
                : /blocked by rule no-both/,
          );
          expect(events.map((e) => e.event)).toEqual(['statement.blocked']);
          expect(events[0]!.data?.['digest']).toMatch(/^[0-9a-f]{64}$/);
        }
        // Only require-approval statements were held, each once, showing the value that would run.
        const newHeld = held.slice(heldBefore);
        if (k.fn === 'gate_hold') {
          expect(newHeld).toHaveLength(1);
          expect(`${newHeld[0]!.sql} ${(newHeld[0]!.params ?? []).join(' ')}`).toContain(tag);
        } else expect(newHeld).toEqual([]);
      });
    }
  }
});

describe('masking on every result carrier', () => {
  for (const carrier of ['simple', 'extended'] as const) {
    it(`${carrier}: a masked column never leaves in clear`, async () => {
      const c = await RawClient.connect(h, RULES);
      if (carrier === 'simple') c.send(buildQuery('select email from customers where id = 1'));
      else c.send(buildParse('', 'select email from customers where id = $1'), bind('', ['1']), buildExecute(''), sync());
      const msgs = await c.untilReady();
      c.end();
      const rows = msgs.filter((m) => m.type === 'D').map(dataValues);
      expect(rows).toHaveLength(1);
      expect(rows[0]![0]).not.toBe('alice@example.com');
      expect(rows[0]![0]).not.toContain('alice');
    });
  }
});
