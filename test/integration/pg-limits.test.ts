/**
 * Clear refusals for big inputs (issue 12, item 7), against a real PostgreSQL: a Query, Parse, Bind,
 * FunctionCall or CopyData over the agent's message limit gets an ErrorResponse naming the limit
 * (SQLSTATE 54000) and a message.refused audit event; the connection stays usable, transactions
 * behave as after any error, and nothing of the big message reaches the server.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { typedMessage } from '#protocol/postgres/codec.js';
import { sql } from '../helpers/postgres.js';
import { type Harness, startInspectHarness } from './inspect-harness.js';
import { RawClient, types } from './raw-client.js';

const LIMIT = 1024 * 1024;
const BIG = 'x'.repeat(2 * LIMIT);
let h: Harness;

beforeAll(async () => {
  h = await startInspectHarness('lim', [], { maxFrontendMessage: LIMIT });
});
afterAll(async () => {
  await h?.close();
});

async function client(): Promise<{ c: pg.Client; sid: string }> {
  const s = h.newSession();
  const c = new pg.Client({ connectionString: h.url(s) });
  c.on('error', () => {});
  await c.connect();
  return { c, sid: s.session.id };
}

const refusedBig = { code: '54000', message: expect.stringMatching(/over jit's limit of 1 MiB per message/) };

describe('messages over the limit', () => {
  it('a big simple query is refused with the limit named, recorded, and the connection goes on', async () => {
    const { c, sid } = await client();
    try {
      await expect(c.query(`select '${BIG}' as v`)).rejects.toMatchObject({
        ...refusedBig,
        message: expect.stringMatching(/this query is 2(\.0)? MiB/),
      });
      expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      const ev = h.events.find((e) => e.session === sid && e.event === 'message.refused');
      expect(ev?.data).toMatchObject({ message: 'Q', bytes: expect.any(Number), limit: LIMIT });
    } finally {
      await c.end();
    }
  });

  it('inside a transaction it aborts the transaction exactly like a server error', async () => {
    const { c } = await client();
    try {
      await c.query('begin');
      await c.query('insert into orders (customer, amount) values (77, 1)');
      await expect(c.query(`select '${BIG}'`)).rejects.toMatchObject({ code: '54000' });
      await expect(c.query('select 1')).rejects.toMatchObject({ code: '25P02' });
      await c.query('rollback');
      const rows = await sql(h.superDbUrl, 'select count(*)::int as n from orders where customer = 77');
      expect(rows[0]!['n']).toBe(0);
    } finally {
      await c.end();
    }
  });

  it('a big parameter (Bind) and a big prepared text (Parse) are refused; the connection goes on', async () => {
    const { c } = await client();
    try {
      await expect(c.query({ text: 'select $1::text as v', values: [BIG] })).rejects.toMatchObject({
        ...refusedBig,
        message: expect.stringMatching(/set of parameters/),
      });
      expect((await c.query({ text: 'select $1::int + 1 as n', values: [1] })).rows).toEqual([{ n: 2 }]);
      await expect(c.query({ text: `select '${BIG}' || $1 as v`, values: ['a'] })).rejects.toMatchObject({
        ...refusedBig,
        message: expect.stringMatching(/statement to prepare/),
      });
      expect((await c.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
    } finally {
      await c.end();
    }
  });

  it('a big CopyData fails the COPY with the limit named; the table gets none of it', async () => {
    const raw = await RawClient.connect(h);
    try {
      raw.send(typedMessage('Q', Buffer.from('copy orders (customer, amount) from stdin\0')));
      await raw.until('G'); // CopyInResponse
      const row = Buffer.from(`78\t${'1'.repeat(2 * LIMIT)}\n`);
      raw.send(typedMessage('d', row), typedMessage('c'));
      const got = await raw.untilReady();
      const err = got.find((m) => m.type === 'E');
      expect(err?.body.toString()).toMatch(/COPY data message is 2(\.0)? MiB, over jit's limit of 1 MiB/);
      raw.send(typedMessage('Q', Buffer.from('select 1\0')));
      expect(types(await raw.untilReady())).toMatch(/T.*D.*C.*Z/);
      const rows = await sql(h.superDbUrl, 'select count(*)::int as n from orders where customer = 78');
      expect(rows[0]!['n']).toBe(0);
    } finally {
      raw.end();
    }
  });
});

describe('query text over what jit inspects', () => {
  it('a syntax error is reported as one (42601 with the parser message), not as a policy refusal', async () => {
    const { c } = await client();
    try {
      await expect(c.query('selec 1')).rejects.toMatchObject({
        code: '42601',
        message: expect.stringMatching(/syntax error at or near "selec"/),
      });
      expect((await c.query('select 3 as three')).rows).toEqual([{ three: 3 }]);
    } finally {
      await c.end();
    }
  });
});
