/**
 * The measurements that run the same way on every path (direct, ssh -L, jit): each takes a
 * connection description `{ host, port, user, password, database }` and drives the stock
 * PostgreSQL client tools (psql, pgbench) against it.
 */
import { median, run } from './proc.js';
import { pgEnv } from './postgres.js';

/** Bytes per row of the bulk query: 1,000 characters and the newline COPY adds. */
export const BULK_ROW_BYTES = 1001;

/** `Time: 123.456 ms` lines that psql's \timing prints; the last one. */
export function parsePsqlTiming(stdout) {
  const all = [...stdout.matchAll(/^Time: ([\d.]+) ms/gm)];
  const last = all.at(-1);
  return last ? Number(last[1]) : undefined;
}

/** tps (without initial connection time), average latency and failed transactions from pgbench's report. */
export function parsePgbench(stdout) {
  const tps = /^tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/m.exec(stdout);
  const lat = /^latency average = ([\d.]+) ms/m.exec(stdout);
  const failed = /^number of failed transactions: (\d+)/m.exec(stdout);
  const processed = /^number of transactions actually processed: (\d+)/m.exec(stdout);
  if (!tps || !lat) return undefined;
  return {
    tps: Number(tps[1]),
    latencyMs: Number(lat[1]),
    failed: failed ? Number(failed[1]) : 0,
    transactions: processed ? Number(processed[1]) : undefined,
  };
}

function failure(what, r) {
  const why = r.signal ? `killed by ${r.signal} (time limit?)` : `exit ${r.code}`;
  const text = `${r.stderr}`.trim().split('\n').slice(-4).join('\n');
  return new Error(`${what}: ${why}${text ? `: ${text}` : ''}`);
}

/**
 * Bulk download: psql's `\copy (SELECT repeat('x',1000) FROM generate_series(1,N)) TO '/dev/null'`
 * (COPY … TO STDOUT on the wire), timed by psql's \timing so process start and login are not
 * counted. Returns `{ mbps }` with MB = 10^6 bytes.
 */
export async function bulk(conn, { rows }) {
  const r = await run(
    'psql',
    [
      '-X',
      '-q',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      '\\timing on',
      '-c',
      `\\copy (SELECT repeat('x', 1000) FROM generate_series(1, ${rows})) TO '/dev/null'`,
    ],
    { env: pgEnv(conn), timeoutMs: 120_000 },
  );
  if (r.code !== 0) throw failure('psql \\copy', r);
  const ms = parsePsqlTiming(r.stdout);
  if (ms === undefined) throw new Error(`psql printed no timing: ${r.stdout.slice(0, 200)}`);
  return { mbps: (rows * BULK_ROW_BYTES) / 1e6 / (ms / 1000) };
}

/**
 * `pgbench -n -S` (select-only) for `seconds` with `clients`/`threads`, in protocol `mode`:
 * `simple` (Query), `extended` (Parse/Bind/Execute each time, unnamed) or `prepared` (named
 * statements parsed once, then Bind/Execute).
 */
export async function pgbench(conn, { clients, threads, seconds, mode = 'simple' }) {
  const r = await run('pgbench', ['-n', '-S', '-M', mode, '-c', String(clients), '-j', String(threads), '-T', String(seconds)], {
    env: pgEnv(conn),
    timeoutMs: (seconds + 60) * 1000,
  });
  if (r.code !== 0) throw failure(`pgbench -c ${clients}`, r);
  const parsed = parsePgbench(r.stdout);
  if (!parsed) throw new Error(`pgbench printed no tps/latency: ${r.stdout.slice(-300)}`);
  if (parsed.failed > 0) throw new Error(`pgbench -c ${clients}: ${parsed.failed} failed transactions`);
  return parsed;
}

/**
 * Fetch a whole result with psql (`SELECT …` printed unaligned to /dev/null), timed by psql's
 * \timing (process start and login not counted). `rows` and `bytes` (what the result weighs on
 * the wire) turn the time into `{ ms, rowsPerSec, mbps }` with MB = 10^6 bytes.
 */
export async function fetchResult(conn, { query, rows, bytes }) {
  const r = await run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', '\\timing on', '-c', '\\o /dev/null', '-c', query], {
    env: pgEnv(conn),
    timeoutMs: 300_000,
  });
  if (r.code !== 0) throw failure('psql SELECT', r);
  const ms = parsePsqlTiming(r.stdout);
  if (ms === undefined) throw new Error(`psql printed no timing: ${r.stdout.slice(0, 200)}`);
  return { ms, rowsPerSec: rows / (ms / 1000), mbps: bytes / 1e6 / (ms / 1000) };
}

/** One value from psql (`-A -t`), for checking what a path returns. */
export async function psqlValue(conn, query) {
  const r = await run('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', query], { env: pgEnv(conn), timeoutMs: 30_000 });
  if (r.code !== 0) throw failure('psql', r);
  return r.stdout.trim();
}

/** Wall time of one `psql -c 'select 1'`, process start to exit (login included): `{ ms }`. */
export async function selectOne(conn) {
  const r = await run('psql', ['-X', '-A', '-t', '-c', 'select 1'], { env: pgEnv(conn), timeoutMs: 30_000 });
  if (r.code !== 0 || r.stdout.trim() !== '1') throw failure('psql select 1', r);
  return { ms: r.ms };
}

/**
 * Many runs of a measurement folded into one: the median of every numeric field, and the
 * individual runs under `runs`.
 */
export function aggregate(runs) {
  const out = { runs };
  for (const [k, v] of Object.entries(runs[0] ?? {})) {
    if (typeof v === 'number') out[k] = median(runs.map((r) => r[k]));
  }
  return out;
}
