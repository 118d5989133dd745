/**
 * The inspecting relay's state machine driven by bytes, with no socket: frontend messages in,
 * what would go to the server out; backend messages in, what would go to the client out. The
 * same decisions the integration tests check against a real server, here in isolation so each
 * rule of the protocol handling can be pinned down.
 */
import { serialize } from 'pg-protocol';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlParser } from '#protocol/postgres/classify.js';
import { PgProtocolError, parameterStatus, readyForQuery, typedMessage } from '#protocol/postgres/codec.js';
import {
  buildCommandComplete,
  buildErrorResponse,
  type FrontendMessage,
  MessageFramer,
  parseFrontend,
  parseNoticeFields,
} from '#protocol/postgres/messages.js';
import { InspectionRules, type SessionInfo } from '#shared/contract/agent.js';
import { createLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import type { Catalog } from '../../catalog.js';
import type { AgentEventInput } from '../../events.js';
import type { ApprovalDecision, ApprovalRequest } from './approval.js';
import type { InspectDeps } from './connection.js';
import { Inspector } from './inspector.js';

beforeAll(async () => {
  await loadSqlParser();
});

const rules = InspectionRules.parse({
  guardrails: [
    { name: 'no-drop', match: { kinds: ['drop'] }, action: 'block', message: 'Dropping is not allowed here' },
    { name: 'billing-writes', match: { relationsWritten: ['billing.*'] }, action: 'require-approval' },
    { name: 'kill-needs-approval', match: { functions: ['pg_terminate_backend'] }, action: 'require-approval' },
  ],
  masking: [{ name: 'emails', columns: ['email'], style: 'full' }],
});

const USERS_OID = 16_384;

/** A catalog that knows one table, public.users(id, email), and one function by OID. */
const catalog = {
  missing: () => [],
  load: async () => {},
  column: (_db: string, oid: number, att: number) =>
    oid === USERS_OID ? { schema: 'public', table: 'users', column: att === 1 ? 'id' : 'email' } : undefined,
  functionName: async (_db: string, oid: number) => (oid === 2096 ? 'pg_terminate_backend' : undefined),
} as unknown as Catalog;

interface Harness {
  insp: Inspector;
  events: AgentEventInput[];
  held: ApprovalRequest[];
  decide(d: ApprovalDecision): void;
  /** Frontend messages in order; stops at the first one that must be waited for and returns its promise. */
  client(...msgs: Buffer[]): Promise<void> | undefined;
  server(...msgs: Buffer[]): void;
  /** What went to the server since the last call, as parsed messages. */
  toServer(): FrontendMessage[];
  /** What went to the client since the last call, as [type, buffer] pairs. */
  toClient(): { type: string; buf: Buffer }[];
}

function harness(opts: { recorder?: boolean; parameters?: { name: string; value: string }[]; noCatalog?: boolean } = {}): Harness {
  const events: AgentEventInput[] = [];
  const held: ApprovalRequest[] = [];
  let answer: ((d: ApprovalDecision) => void) | undefined;
  const deps: InspectDeps = {
    emit: (e) => void events.push(e),
    recorderReady: () => opts.recorder ?? true,
    logger: createLogger({ level: 'silent' }),
    clock: { ...systemClock, now: () => 1_000 },
    random: (n) => Buffer.alloc(n, 7),
    ...(opts.noCatalog ? {} : { catalog }),
    approve: (req) => {
      held.push(req);
      return new Promise((resolve) => {
        answer = resolve;
      });
    },
  };
  const session = { id: 'unitunitunitunitunit', inspection: rules } as unknown as SessionInfo;
  const ctx = { session, rules, target: 'db', streamId: 's1', database: 'app', parameters: opts.parameters ?? [], kill: () => {} };
  const insp = new Inspector(ctx, deps, { flushToServer: () => {}, endServer: () => {} });
  return {
    insp,
    events,
    held,
    decide: (d) => answer?.(d),
    client(...msgs) {
      for (const m of msgs) {
        const p = insp.frontend(m, 0, m.length);
        if (p) return p;
      }
      return undefined;
    },
    server(...msgs) {
      for (const m of msgs) void insp.backend(m[0]!, m, 0, m.length);
    },
    toServer: () => frames(insp.conn.toServer.take()).map((f) => parseFrontend(f, 0, f.length)),
    toClient: () => frames(insp.conn.toClient.take()).map((buf) => ({ type: String.fromCharCode(buf[0]!), buf })),
  };
}

function frames(bytes: Buffer): Buffer[] {
  const f = new MessageFramer(1 << 20);
  f.push(bytes);
  const out: Buffer[] = [];
  while (f.next()) out.push(f.buf.subarray(f.start, f.end));
  expect(f.buffered).toBe(0);
  return out;
}

const sqlOf = (m: FrontendMessage | undefined) => (m && 'sql' in m ? m.sql.toString() : undefined);
const codeOf = (buf: Buffer) => parseNoticeFields(buf, 0, buf.length)['C'];
const eventNames = (h: Harness) => h.events.map((e) => e.event);
const serverError = (code = '42601') => buildErrorResponse({ code, message: 'server says no' });

function rowDescription(fields: { name: string; table: number; att: number; type?: number; format?: number }[]): Buffer {
  const parts = fields.map((f) => {
    const b = Buffer.alloc(18);
    b.writeUInt32BE(f.table, 0);
    b.writeInt16BE(f.att, 4);
    b.writeUInt32BE(f.type ?? 25, 6); // text unless told
    b.writeInt16BE(-1, 10);
    b.writeInt32BE(-1, 12);
    b.writeInt16BE(f.format ?? 0, 16);
    return Buffer.concat([Buffer.from(`${f.name}\0`), b]);
  });
  const n = Buffer.alloc(2);
  n.writeInt16BE(fields.length);
  return typedMessage('T', Buffer.concat([n, ...parts]));
}

function dataRow(values: string[]): Buffer {
  const n = Buffer.alloc(2);
  n.writeInt16BE(values.length);
  const cols = values.map((v) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(v));
    return Buffer.concat([len, Buffer.from(v)]);
  });
  return typedMessage('D', Buffer.concat([n, ...cols]));
}

function functionCall(oid: number, args: string[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(oid, 0);
  head.writeInt16BE(0, 4); // no argument format codes: all text
  head.writeInt16BE(args.length, 6);
  const body = args.map((a) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(a));
    return Buffer.concat([len, Buffer.from(a)]);
  });
  return typedMessage('F', Buffer.concat([head, ...body, Buffer.from([0, 0])]));
}

describe('inspecting relay state machine (no sockets)', () => {
  it('forwards an allowed Query byte for byte, recorded before it leaves and completed by the server answer', () => {
    const h = harness();
    const q = serialize.query('select id from users');
    expect(h.client(q)).toBeUndefined();
    expect(h.insp.conn.toServer.take()).toEqual(q);
    expect(eventNames(h)).toEqual(['statement.executed']);
    h.server(buildCommandComplete('SELECT 3'), readyForQuery('I'));
    expect(h.toClient().map((m) => m.type)).toEqual(['C', 'Z']);
    expect(h.events[1]).toMatchObject({ event: 'statement.completed', data: { rows: 3 } });
    expect(h.insp.conn.due).toHaveLength(0);
  });

  it('sends a blocked Query to the server only as a syntax error and answers with the rule instead of the server error', () => {
    const h = harness();
    h.client(serialize.query('drop table users'));
    const sent = h.toServer();
    expect(sent.map(sqlOf)).toEqual(['JIT_REFUSED_STATEMENT']);
    expect(eventNames(h)).toEqual(['statement.blocked']);
    h.server(serverError('42601'), readyForQuery('I'));
    const back = h.toClient();
    expect(back.map((m) => m.type)).toEqual(['E', 'Z']);
    expect(codeOf(back[0]!.buf)).toBe('42501');
    expect(back[0]!.buf.toString()).toContain('Dropping is not allowed here');
  });

  it('refuses everything with 57P03 while the recorder is down (fail closed)', () => {
    const h = harness({ recorder: false });
    h.client(serialize.query('select 1'));
    expect(h.toServer().map(sqlOf)).toEqual(['JIT_REFUSED_STATEMENT']);
    h.server(serverError(), readyForQuery('I'));
    expect(codeOf(h.toClient()[0]!.buf)).toBe('57P03');
  });

  it('holds an Execute under require-approval unread until the decision, with its parameters, and forwards exactly it on approval', async () => {
    const h = harness();
    const pending = h.client(
      serialize.parse({ text: 'update billing.invoices set paid = $1', types: [] }),
      serialize.bind({ values: ['true'] }),
      serialize.execute({}),
    );
    expect(pending).toBeInstanceOf(Promise);
    expect(h.toServer().map((m) => m.type)).toEqual(['P', 'B']);
    expect(h.held).toMatchObject([{ sql: 'update billing.invoices set paid = $1', params: ['true'], rule: 'billing-writes' }]);
    h.decide({ approved: true, request: 'req-1' });
    await pending;
    // The session masks: the relay asks for the portal's row description itself, before the Execute.
    expect(h.toServer()).toMatchObject([
      { type: 'D', target: 'P', name: '' },
      { type: 'E', portal: '' },
    ]);
    expect(h.events.at(-1)).toMatchObject({ event: 'statement.executed', data: { approval: 'req-1', params: ['true'] } });
  });

  it('sends a denied Execute as an Execute of a portal that cannot exist; the rest of the pipeline is skipped until Sync', async () => {
    const h = harness();
    const pending = h.client(
      serialize.parse({ text: 'update billing.invoices set paid = $1', types: [] }),
      serialize.bind({ values: ['true'] }),
      serialize.execute({}),
    );
    h.decide({ approved: false, reason: 'denied by bob', request: 'req-2' });
    await pending;
    h.client(serialize.parse({ name: 'later', text: 'select 1', types: [] }), serialize.sync());
    const sent = h.toServer();
    expect(sent.map((m) => m.type)).toEqual(['P', 'B', 'E', 'P', 'S']);
    expect(sent[2]).toMatchObject({ type: 'E', portal: expect.stringMatching(/^jit-refused-/) });
    expect(h.events.map((e) => e.event)).toContain('statement.blocked');
    h.server(typedMessage('1'), typedMessage('2'), serverError('34000'), readyForQuery('I'));
    const back = h.toClient();
    expect(back.map((m) => m.type)).toEqual(['1', '2', 'E', 'Z']);
    expect(codeOf(back[2]!.buf)).toBe('42501');
    // The server discarded the second Parse: the name it would have defined is not remembered.
    expect(h.insp.conn.statements.has('later')).toBe(false);
    expect(h.insp.conn.due).toHaveLength(0);
  });

  it('holds a FunctionCall under require-approval like a statement, its arguments shown to the approver', async () => {
    const h = harness();
    const pending = h.client(functionCall(2096, ['4242']));
    expect(pending).toBeInstanceOf(Promise);
    await new Promise((r) => setImmediate(r)); // the catalog names the function
    expect(h.held).toMatchObject([{ params: ['4242'], rule: 'kill-needs-approval' }]);
    expect(h.toServer()).toEqual([]);
    h.decide({ approved: false, reason: 'nobody answered' });
    await pending;
    expect(h.toServer().map(sqlOf)).toEqual(['JIT_REFUSED_STATEMENT']);
    h.server(serverError(), readyForQuery('I'));
    expect(codeOf(h.toClient()[0]!.buf)).toBe('42501');
  });

  it('refuses a FunctionCall whose function the catalog cannot name', async () => {
    const h = harness();
    await h.client(functionCall(99_999, []));
    expect(h.toServer().map(sqlOf)).toEqual(['JIT_REFUSED_STATEMENT']);
    h.server(serverError(), readyForQuery('I'));
    expect(h.toClient()[0]!.buf.toString()).toContain('cannot tell which function');
  });

  it('masks a masked column of a result and records result.masked once per result', () => {
    const h = harness();
    h.client(serialize.query('select id, email from users'));
    h.toServer();
    h.server(
      rowDescription([
        { name: 'id', table: USERS_OID, att: 1 },
        { name: 'email', table: USERS_OID, att: 2 },
      ]),
      dataRow(['1', 'ann@example.com']),
      dataRow(['2', 'bob@example.com']),
      buildCommandComplete('SELECT 2'),
      readyForQuery('I'),
    );
    const back = h.toClient();
    expect(back.map((m) => m.type)).toEqual(['T', 'D', 'D', 'C', 'Z']);
    const rows = back.filter((m) => m.type === 'D').map((m) => m.buf.toString('latin1'));
    for (const r of rows) expect(r).not.toContain('@example.com');
    expect(eventNames(h).filter((e) => e === 'result.masked')).toHaveLength(1);
  });

  it('refuses a result it cannot mask (a masked non-text column in binary) and drops the rest until ReadyForQuery', () => {
    const h = harness();
    h.client(serialize.query('select email from users'));
    h.server(
      rowDescription([{ name: 'email', table: USERS_OID, att: 2, type: 1114, format: 1 }]),
      dataRow(['ann@example.com']),
      dataRow(['bob@example.com']),
      buildCommandComplete('SELECT 2'),
      readyForQuery('T'),
    );
    const back = h.toClient();
    expect(back.map((m) => m.type)).toEqual(['T', 'E', 'Z']);
    expect(back[1]!.buf.toString()).toContain('cannot mask this result safely');
    expect(Buffer.concat(back.map((m) => m.buf)).toString()).not.toContain('example.com');
    expect(eventNames(h)).toContain('result.refused');
  });

  it('refuses a result from a table it cannot identify when there is no catalog', () => {
    const h = harness({ noCatalog: true });
    h.client(serialize.query('select email from users'));
    h.server(rowDescription([{ name: 'email', table: USERS_OID, att: 2 }]), dataRow(['ann@example.com']), readyForQuery('I'));
    expect(h.toClient().map((m) => m.type)).toEqual(['T', 'E', 'Z']);
  });

  it('judges settings-dependent text only after earlier statements complete, then refuses it under a non-UTF8 encoding', async () => {
    const h = harness();
    h.client(serialize.query('select 1'));
    const pending = h.client(serialize.query("select 'café'"));
    expect(pending).toBeInstanceOf(Promise);
    expect(
      h
        .toServer()
        .filter((m) => m.type === 'Q')
        .map(sqlOf),
    ).toEqual(['select 1']);
    // The earlier statement changed the encoding (a function may, whatever the text says).
    h.server(parameterStatus('client_encoding', 'LATIN1'), buildCommandComplete('SELECT 1'), readyForQuery('I'));
    await pending;
    expect(h.toServer().map(sqlOf)).toEqual(['JIT_REFUSED_STATEMENT']);
    h.toClient();
    h.server(serverError(), readyForQuery('I'));
    expect(codeOf(h.toClient()[0]!.buf)).toBe('0A000');
  });

  it('never forwards a malformed message: it is a protocol error', () => {
    const h = harness();
    const bad = typedMessage('Q', Buffer.from('select 1')); // no terminating NUL
    expect(() => h.client(bad)).toThrow(PgProtocolError);
    expect(h.insp.conn.toServer.take()).toHaveLength(0);
  });
});
