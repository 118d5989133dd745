/**
 * Fuzz of the inspecting relay's client side: random valid, mutated and garbage frontend
 * messages after authentication. The relay must answer with an ErrorResponse or close, never
 * throw out of its handlers, and never forward a message it did not parse: everything that
 * reaches the (recording) upstream must be a whole frontend message that parses and is either
 * bytes the client sent (contiguous) or one of the relay's own rewrites.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSqlParser } from '#protocol/postgres/classify.js';
import { typedMessage } from '#protocol/postgres/codec.js';
import { buildDescribe, buildExecute, buildParse, buildQuery, MessageFramer, parseFrontend } from '#protocol/postgres/messages.js';
import { InspectionRules, type SessionInfo } from '#shared/contract/agent.js';
import { createLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import type { AgentEventInput } from '../../events.js';
import { runInspectingRelay } from '../postgres-inspect.js';

const rules = InspectionRules.parse({
  guardrails: [{ name: 'no-drop', match: { kinds: ['drop'] }, action: 'block' }],
  masking: [{ name: 'm', columns: ['email'], style: 'full' }],
});
const session = { id: 'fuzzfuzzfuzzfuzzfuzz', inspection: rules } as unknown as SessionInfo;

let upstreamServer: net.Server;
let relayServer: net.Server;
let upstreamPort: number;
let relayPort: number;
const recorded = new Map<number, Buffer[]>();
const events: AgentEventInput[] = [];
let uncaught: unknown[] = [];
const onUncaught = (e: unknown) => uncaught.push(e);

beforeAll(async () => {
  await loadSqlParser();
  process.on('uncaughtException', onUncaught);
  let n = 0;
  // The "server": records every byte it receives, answers nothing.
  upstreamServer = net.createServer((s) => {
    const id = Number(s.remotePort);
    const chunks: Buffer[] = [];
    recorded.set(id, chunks);
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  await new Promise<void>((r) => upstreamServer.listen(0, '127.0.0.1', r));
  upstreamPort = (upstreamServer.address() as net.AddressInfo).port;
  relayServer = net.createServer((client) => {
    client.on('error', () => {});
    const up = net.connect(upstreamPort, '127.0.0.1');
    up.on('error', () => {});
    up.once('connect', () => {
      (client as net.Socket & { upstreamPort?: number }).upstreamPort = up.localPort;
      relayPorts.set(Number(client.remotePort), Number(up.localPort));
      runInspectingRelay(
        client,
        up,
        {
          session,
          rules,
          target: 't',
          streamId: `s${n++}`,
          database: 'db',
          parameters: [],
          kill: () => {
            client.destroy();
            up.destroy();
          },
        },
        {
          emit: (e) => events.push(e),
          recorderReady: () => true,
          logger: createLogger({ level: 'silent' }),
          clock: systemClock,
          random: randomBytes,
        },
      );
    });
  });
  await new Promise<void>((r) => relayServer.listen(0, '127.0.0.1', r));
  relayPort = (relayServer.address() as net.AddressInfo).port;
});

afterAll(() => {
  process.off('uncaughtException', onUncaught);
  relayServer?.close();
  upstreamServer?.close();
});

const relayPorts = new Map<number, number>();

// ---- generators

let seed = 0x2545f491;
function rnd(n: number): number {
  // xorshift: reproducible runs
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}
const pick = <T>(xs: T[]): T => xs[rnd(xs.length)]!;

const SQL = [
  'select 1',
  'select email from customers',
  'drop table customers',
  "select 'x' ; drop table t",
  'select $1::int',
  'begin',
  'commit',
  '',
  'selec broken',
  'copy t to stdout',
];

function validMessage(): Buffer {
  switch (rnd(9)) {
    case 0:
      return buildQuery(pick(SQL));
    case 1:
      return buildParse(pick(['', 's1', 's2']), pick(SQL));
    case 2: {
      const body = Buffer.concat([
        Buffer.from(`${pick(['', 'p1'])}\0${pick(['', 's1', 'nope'])}\0`),
        Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 0x31, 0, 1, 0, rnd(2)]),
      ]);
      return typedMessage('B', body);
    }
    case 3:
      return buildExecute(pick(['', 'p1']), rnd(3));
    case 4:
      return buildDescribe(pick(['S', 'P'] as const), pick(['', 's1', 'p1']));
    case 5:
      return typedMessage('S');
    case 6:
      return typedMessage('H');
    case 7:
      return typedMessage('C', Buffer.from(`${pick(['S', 'P'])}s1\0`));
    default:
      return typedMessage('d', randomBytes(rnd(20)));
  }
}

function malformed(): Buffer {
  const v = validMessage();
  switch (rnd(6)) {
    case 0: {
      // random type byte
      const b = Buffer.from(v);
      b[0] = rnd(256);
      return b;
    }
    case 1: {
      // flip a byte of the body or length
      const b = Buffer.from(v);
      const i = 1 + rnd(b.length - 1);
      b[i] = rnd(256);
      return b;
    }
    case 2:
      // truncated message: length says more than is sent, then other bytes follow
      return v.subarray(0, Math.max(1, v.length - 1 - rnd(3)));
    case 3: {
      // absurd length
      const b = Buffer.from(v);
      b.writeInt32BE(0x7ff00000 + rnd(1000), 1);
      return b;
    }
    case 4:
      return randomBytes(1 + rnd(40));
    default: {
      // trailing garbage inside the declared length
      const extra = randomBytes(1 + rnd(4));
      const b = Buffer.concat([v, extra]);
      b.writeInt32BE(b.length - 1, 1);
      return b;
    }
  }
}

function isOurRewrite(m: Buffer): boolean {
  const p = parseFrontend(m, 0, m.length);
  if (p.type === 'Q' || p.type === 'P') return p.sql.toString() === 'JIT_REFUSED_STATEMENT';
  if (p.type === 'E') return p.portal.startsWith('jit-refused-');
  if (p.type === 'B') return p.statement.startsWith('jit-refused-');
  if (p.type === 'f') return m.toString('utf8', 5).startsWith('jit: ');
  if (p.type === 'D') return p.target === 'P';
  return p.type === 'H';
}

async function session1(msgs: Buffer[]): Promise<{ forwarded: Buffer[]; answered: Buffer }> {
  const sock = net.connect(relayPort, '127.0.0.1');
  sock.on('error', () => {});
  const answer: Buffer[] = [];
  sock.on('data', (b: Buffer) => answer.push(b));
  const closed = new Promise((r) => sock.once('close', r));
  await new Promise((r) => sock.once('connect', r));
  const localPort = Number(sock.localPort);
  // Send in random slices so framing sees every kind of boundary.
  const all = Buffer.concat(msgs);
  for (let i = 0; i < all.length; ) {
    const n = 1 + rnd(64);
    sock.write(all.subarray(i, i + n));
    i += n;
  }
  await Promise.race([closed, new Promise((r) => setTimeout(r, 20))]);
  sock.end();
  await Promise.race([closed, new Promise((r) => setTimeout(r, 500))]);
  sock.destroy();
  const up = relayPorts.get(localPort);
  const forwarded = up ? Buffer.concat(recorded.get(up) ?? []) : Buffer.alloc(0);
  return { forwarded: [forwarded], answered: Buffer.concat(answer) };
}

describe('inspecting relay fuzz', () => {
  it('never forwards what it did not parse, answers errors or closes, never throws', async () => {
    uncaught = [];
    let closedWithError = 0;
    for (let round = 0; round < Number(process.env['FUZZ_ROUNDS'] ?? 300); round++) {
      const sent: Buffer[] = [];
      const count = 1 + rnd(8);
      for (let i = 0; i < count; i++) sent.push(rnd(3) === 0 ? malformed() : validMessage());
      const t0 = Date.now();
      const { forwarded, answered } = await session1(sent);
      if (process.env['FUZZ_DEBUG'] && Date.now() - t0 > 200)
        console.log(
          round,
          Date.now() - t0,
          sent.map((b) => b.toString('hex').slice(0, 40)),
        );
      // A truncated message followed by others can frame as a different, valid message: what is
      // forwarded must then still be bytes the client sent, contiguous, and parse.
      const stream = Buffer.concat(sent);
      const f = new MessageFramer(1 << 26);
      f.push(forwarded[0]!);
      let consumed = 0;
      while (f.next()) {
        const m = Buffer.from(f.buf.subarray(f.start, f.end));
        consumed += m.length;
        expect(() => parseFrontend(m, 0, m.length)).not.toThrow();
        const ok = stream.indexOf(m) >= 0 || isOurRewrite(m);
        expect(ok, `round ${round}: forwarded ${m.toString('hex')}`).toBe(true);
      }
      // No partial message ever reaches the server.
      expect(consumed).toBe(forwarded[0]!.length);
      if (answered.length > 0) {
        // Whatever the client got back are ErrorResponses (the recording server answers nothing).
        const a = new MessageFramer(1 << 20);
        a.push(answered);
        while (a.next()) expect(String.fromCharCode(a.type)).toBe('E');
        closedWithError++;
      }
    }
    expect(uncaught).toEqual([]);
    // Sanity: the generator does produce protocol violations the relay refuses.
    expect(closedWithError).toBeGreaterThan(10);
  });
});
