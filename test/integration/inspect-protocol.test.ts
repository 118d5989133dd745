import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildDescribe,
  buildExecute,
  buildParse,
  buildQuery,
  MessageFramer,
  parseCommandComplete,
  parseNoticeFields,
} from '#protocol/postgres/messages.js';
import { sql } from '../helpers/postgres.js';
import { type Harness, startInspectHarness } from './inspect-harness.js';
import { bind, dataValues, fcall, RawClient as Raw, sync, types } from './raw-client.js';

let h: Harness;
beforeAll(async () => {
  h = await startInspectHarness('ip');
});
afterAll(async () => {
  await h?.close();
});

describe('extended protocol on the wire', () => {
  it('pipelined Parse/Bind/Execute ×3 before one Sync with the 2nd blocked: 1st runs, error swapped, rest discarded', async () => {
    const c = await Raw.connect(h);
    await sql(h.superDbUrl, 'create table if not exists pipe_t (x int); grant all on pipe_t to public');
    c.send(
      buildParse('a', 'insert into pipe_t values (1)'),
      bind('a'),
      buildExecute(''),
      buildParse('b', 'drop table pipe_t'),
      bind('b'),
      buildExecute(''),
      buildParse('c', 'insert into pipe_t values (3)'),
      bind('c'),
      buildExecute(''),
      sync(),
    );
    const r = await c.untilReady();
    expect(types(r)).toBe('12CEZ');
    expect(parseNoticeFields(Buffer.concat([Buffer.from('E\0\0\0\0'), r[3]!.body]), 0, r[3]!.body.length + 5)).toMatchObject({
      C: '42501',
      D: 'rule: no-drop',
    });
    // Statement a ran (the server committed it at Sync? no: the error aborted the implicit transaction).
    const rows = await sql(h.superDbUrl, 'select x from pipe_t order by x');
    expect(rows).toEqual([]);
    // The connection is usable and 'a' exists, 'b' does not.
    c.send(bind('a'), buildExecute(''), sync());
    expect(types(await c.untilReady())).toBe('2CZ');
    c.send(bind('b'), buildExecute(''), sync());
    const r2 = await c.untilReady();
    expect(types(r2)).toBe('EZ');
    expect(r2[0]!.body.toString()).toContain('26000'); // prepared statement "b" does not exist
    expect(await sql(h.superDbUrl, 'select x from pipe_t order by x')).toEqual([{ x: 1 }]);
    c.end();
  });

  it('masks binary-format results of text columns, and rows of an Execute the client never described', async () => {
    const c = await Raw.connect(h);
    c.send(
      buildParse('m', 'select id::text, email, card_number from customers where id = $1'),
      bind('m', ['1'], 1),
      buildExecute(''),
      sync(),
    );
    const r = await c.untilReady();
    expect(types(r)).toBe('12DCZ'); // our own Describe's answer is not forwarded
    expect(dataValues(r[2]!)).toEqual(['1', 'a***@example.com', '****']);
    // A non-text masked column in binary format cannot be masked: the result is refused.
    await sql(h.superDbUrl, 'alter table customers add column if not exists card_number_int bigint');
    await sql(h.superDbUrl, `create or replace view cards as select id, 4111::bigint as card_number from customers`);
    await sql(h.superDbUrl, 'grant select on cards to public');
    c.send(buildParse('', 'select card_number from cards'), bind('', [], 1), buildDescribe('P', ''), buildExecute(''), sync());
    const r2 = await c.untilReady();
    expect(types(r2)).toBe('12TEZ');
    expect(r2[3]!.body.toString()).toContain('jit: cannot mask this result safely');
    // In text format it becomes NULL.
    c.send(buildQuery('select card_number from cards where id = 1'));
    const r3 = await c.untilReady();
    expect(types(r3)).toBe('TDCZ');
    expect(dataValues(r3[1]!)).toEqual([null]);
    c.end();
  });

  it('a refused result inside a transaction leaves the session usable', async () => {
    const c = await Raw.connect(h);
    c.send(buildQuery('begin'));
    await c.untilReady();
    c.send(buildParse('', 'select card_number from cards'), bind('', [], 1), buildExecute(''), sync());
    const r = await c.untilReady();
    expect(types(r)).toBe('12E'.concat('Z'));
    c.send(buildQuery('select 1; commit'));
    expect(types(await c.untilReady())).toBe('TDCCZ');
    c.end();
  });

  it('refuses SQL text whose lexing depends on settings when the server has standard_conforming_strings off', async () => {
    await sql(h.superDbUrl, `alter database ${h.db} set standard_conforming_strings = off`);
    try {
      const c = await Raw.connect(h);
      // With backslash escapes the server reads one SELECT plus a DROP where the parser (on) sees one SELECT.
      c.send(buildQuery("select 'a\\' , $$ ' ; drop table orders; -- $$"));
      const r = await c.untilReady();
      expect(types(r)).toBe('EZ');
      expect(r[0]!.body.toString()).toContain('standard_conforming_strings');
      // Plain ASCII without backslashes lexes the same either way: allowed.
      c.send(buildQuery("select 'plain' as x"));
      expect(types(await c.untilReady())).toBe('TDCZ');
      c.end();
    } finally {
      await sql(h.superDbUrl, `alter database ${h.db} reset standard_conforming_strings`);
    }
    expect(await sql(h.superDbUrl, "select 1 from pg_class where relname = 'orders'")).toHaveLength(1);
  });

  it('changing standard_conforming_strings or client_encoding in the session is refused, also pipelined', async () => {
    const c = await Raw.connect(h);
    for (const q of [
      'set standard_conforming_strings = off',
      "select set_config('standard_conforming_strings', 'off', false)",
      "set client_encoding = 'SJIS'",
    ]) {
      c.send(buildQuery(q), buildQuery("select 'a\\' , $$ ' ; drop table orders; -- $$"));
      expect(types(await c.untilReady()), q).toBe('EZ');
      expect(types(await c.untilReady())).toBe('TDCZ');
    }
    c.end();
    expect(await sql(h.superDbUrl, "select 1 from pg_class where relname = 'orders'")).toHaveLength(1);
  });
});

describe('FunctionCall', () => {
  it('is judged as a call of the function the catalog names: pg_terminate_backend is blocked, int4pl runs', async () => {
    const [kill] = await sql(h.superDbUrl, "select 'pg_terminate_backend(int, bigint)'::regprocedure::oid::int as oid");
    const [add] = await sql(h.superDbUrl, "select 'int4pl(int, int)'::regprocedure::oid::int as oid");
    const c = await Raw.connect(h);
    c.send(fcall(kill!['oid'] as number, ['1', '0']));
    const r = await c.untilReady();
    expect(types(r)).toBe('EZ');
    expect(r[0]!.body.toString()).toContain('rule: no-kill');
    c.send(fcall(add!['oid'] as number, ['40', '2']));
    const r2 = await c.untilReady();
    expect(types(r2), r2[0]!.body.toString()).toBe('VZ');
    expect(r2[0]!.body.subarray(4).toString()).toBe('42');
    c.end();
  });
});

describe('bulk', () => {
  it('streams a 100 MB result with bounded memory while the client reads slowly', async () => {
    const c = await Raw.connect(h);
    // Count bytes instead of keeping messages.
    c.sock.removeAllListeners('data');
    let bytes = 0;
    let done = false;
    const framer = new MessageFramer(1 << 30);
    let rows = 0;
    let tag = '';
    let stalled = false;
    c.sock.on('data', (b: Buffer) => {
      bytes += b.length;
      framer.push(b);
      while (framer.next()) {
        if (framer.type === 0x44) rows++;
        if (framer.type === 0x43) tag = parseCommandComplete(framer.buf, framer.start, framer.end).tag;
        if (framer.type === 0x5a) done = true;
      }
      // A stalled reader: after 5 MB it stops reading for 1.5 s. Without backpressure the engine
      // would queue the rest of the result (~95 MB) in memory meanwhile.
      if (!stalled && bytes > 5_000_000) {
        stalled = true;
        c.sock.pause();
        setTimeout(() => c.sock.resume(), 1500);
      }
    });
    // Retained memory, not garbage waiting for a collection: collect before each sample.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const retained = () => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const base = retained();
    const baseRss = process.memoryUsage().rss;
    let peak = base;
    let peakRss = baseRss;
    const timer = setInterval(() => {
      peak = Math.max(peak, retained());
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 50);
    const t0 = Date.now();
    c.send(buildQuery("select id, repeat('x', 1000) as pad, 'someone@example.com' as contact from generate_series(1, 100000) id"));
    while (!done) await new Promise((r) => setTimeout(r, 20));
    clearInterval(timer);
    const ms = Date.now() - t0;
    expect(rows).toBe(100_000);
    expect(tag).toBe('SELECT');
    expect(bytes).toBeGreaterThan(100_000_000);
    const growthMb = (peak - base) / 2 ** 20;
    // RSS is reported, not asserted: the allocator keeps freed chunk memory, so its peak says little.
    console.log(
      `100 MB result: ${ms} ms, retained heap+buffers growth ${growthMb.toFixed(1)} MiB, RSS growth ${((peakRss - baseRss) / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(ms).toBeGreaterThan(1500);
    expect(growthMb).toBeLessThan(64);
    c.end();
  });
});
