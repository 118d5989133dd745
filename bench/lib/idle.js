/**
 * Memory per idle connection: open PostgreSQL connections through one session in steps
 * (e.g. 200, then up to 1,000), and read the resident set size of the jit processes before and
 * after each step. Then run `select 1` on every connection to show they all still work.
 */
import pg from 'pg';
import { median, sleep } from './proc.js';

async function sampleRss(probes, settleMs) {
  await sleep(settleMs);
  const samples = {};
  for (const name of Object.keys(probes)) samples[name] = [];
  for (let i = 0; i < 3; i++) {
    for (const [name, probe] of Object.entries(probes)) {
      const v = probe();
      if (v !== undefined) samples[name].push(v);
    }
    await sleep(300);
  }
  const out = {};
  for (const [name, xs] of Object.entries(samples)) out[name] = median(xs);
  return out;
}

async function openOne(conn) {
  const client = new pg.Client({ ...conn, connectionTimeoutMillis: 30_000 });
  // An idle connection dropped by the far end must not crash the bench; select 1 reports it.
  client.on('error', (err) => {
    client.lastError = err;
  });
  await client.connect();
  return client;
}

/** Run `fn` over `items` with at most `limit` in flight; returns the settled results in order. */
async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { ok: true, value: await fn(items[i], i) };
      } catch (error) {
        results[i] = { ok: false, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * `steps`: ascending connection counts; `probes`: { name: () => RSS in KiB } to watch. Returns
 * `{ baseline, points: [{ n, rss, perConnKiB }], opened, openError, selectOk, selectErrors, firstSelectError }`.
 */
export async function idleConnections(conn, { steps, probes, parallel = 16, settleMs = 1_500 }) {
  const clients = [];
  const result = { baseline: await sampleRss(probes, settleMs), points: [], opened: 0, selectOk: 0, selectErrors: 0 };
  try {
    for (const n of steps) {
      const want = n - clients.length;
      const opened = await pool(Array.from({ length: want }), parallel, () => openOne(conn));
      for (const r of opened) if (r.ok) clients.push(r.value);
      const failed = opened.find((r) => !r.ok);
      if (failed) {
        result.openError = `${opened.filter((r) => !r.ok).length} of ${want} failed to open; first: ${failed.error.message}`;
        break;
      }
      const rss = await sampleRss(probes, settleMs);
      const perConnKiB = {};
      for (const name of Object.keys(probes)) {
        if (rss[name] !== undefined && result.baseline[name] !== undefined) perConnKiB[name] = (rss[name] - result.baseline[name]) / n;
      }
      result.points.push({ n, rss, perConnKiB });
    }
    result.opened = clients.length;
    const checks = await pool(clients, 32, async (c) => {
      const r = await c.query('select 1 as one');
      if (r.rows[0]?.one !== 1) throw new Error('select 1 returned something else');
    });
    result.selectOk = checks.filter((r) => r.ok).length;
    result.selectErrors = checks.length - result.selectOk;
    result.firstSelectError = checks.find((r) => !r.ok)?.error.message;
  } finally {
    await pool(clients, 64, (c) => c.end().catch(() => {}));
  }
  return result;
}
