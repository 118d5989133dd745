/**
 * Unit tests of the bench's pure parts: parsing the tools' output, settings, the report and the
 * PASS/MISS logic. Run with `node --test bench/` (the benchmark itself is `npm run bench`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readConfig } from './config.js';
import { aggregate, parsePgbench, parsePsqlTiming } from './measure.js';
import { parseUrl, urlOf } from './postgres.js';
import { median } from './proc.js';
import { jitVsSsh, renderReport, targets } from './report.js';

const PGBENCH_15 = `pgbench (15.18 (Debian 15.18-0+deb12u1), server 18.4)
transaction type: <builtin: select only>
scaling factor: 5
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 86778
number of failed transactions: 0 (0.000%)
latency average = 0.277 ms
initial connection time = 12.497 ms
tps = 28926.412345 (without initial connection time)
`;

describe('tool output', () => {
  it('reads tps, latency and failures from pgbench 15', () => {
    assert.deepEqual(parsePgbench(PGBENCH_15), { tps: 28926.412345, latencyMs: 0.277, failed: 0, transactions: 86778 });
  });
  it('reports an unreadable pgbench output as undefined rather than zero', () => {
    assert.equal(parsePgbench('pgbench: error: connection to server failed'), undefined);
  });
  it("takes the last of psql's \\timing lines", () => {
    assert.equal(parsePsqlTiming('Timing is on.\nCOPY 10\nTime: 12.5 ms\nTime: 1234.567 ms (00:01.235)\n'), 1234.567);
    assert.equal(parsePsqlTiming('COPY 10\n'), undefined);
  });
  it('folds runs into medians and keeps the runs', () => {
    const out = aggregate([
      { tps: 1, latencyMs: 5 },
      { tps: 3, latencyMs: 1 },
      { tps: 2, latencyMs: 9 },
    ]);
    assert.equal(out.tps, 2);
    assert.equal(out.latencyMs, 5);
    assert.equal(out.runs.length, 3);
    assert.equal(median([4, 1]), 2.5);
  });
  it('parses the URL jit connect prints, escapes included', () => {
    const c = parseUrl('postgresql://jit_abcdefghij0123456789:s%2Fe%40cret@127.0.0.1:41234/demo?sslmode=disable');
    assert.deepEqual(c, { host: '127.0.0.1', port: 41234, user: 'jit_abcdefghij0123456789', password: 's/e@cret', database: 'demo' });
    assert.deepEqual(parseUrl(urlOf(c)), c);
    assert.throws(() => parseUrl('tcp://127.0.0.1:5'), /not a PostgreSQL URL/);
  });
});

describe('settings', () => {
  it('has bounded defaults', () => {
    const c = readConfig({});
    assert.equal(c.jitMode, 'separate');
    assert.equal(c.policy, 'inspect');
    assert.equal(c.seconds, 10);
    assert.deepEqual(c.idleSteps, [200, 1000]);
  });
  it('names the variable of a bad value', () => {
    assert.throws(() => readConfig({ BENCH_SECONDS: '10s' }), /BENCH_SECONDS="10s": expected a whole number from 1 to 600/);
    assert.throws(() => readConfig({ BENCH_SECONDS: '0' }), /BENCH_SECONDS/);
    assert.throws(() => readConfig({ BENCH_JIT: 'ssh' }), /BENCH_JIT="ssh": expected separate, dev or off/);
    assert.throws(() => readConfig({ BENCH_IDLE: '1000,200' }), /ascending/);
    assert.throws(() => readConfig({ BENCH_POLICY: 'all' }), /BENCH_POLICY="all": expected inspect, none or detectors/);
  });
});

function sample() {
  return {
    meta: {
      date: '2026-01-01T00:00:00Z',
      cpus: 2,
      cpuModel: 'test',
      memGiB: '1.0',
      node: 'v24',
      pgServer: '18',
      psql: 'psql 15',
      ssh: 'OpenSSH',
      jitDescription: 'separate',
      seconds: 10,
      rounds: 2,
      bulkRows: 1000,
      bulkRepeats: 3,
      selectRuns: 20,
      readyRuns: 5,
      idleSteps: [200, 1000],
    },
    metrics: {
      bulk: { direct: { mbps: 400 }, ssh: { mbps: 200 }, jit: { mbps: 250 } },
      pgbench1: { direct: { tps: 10000, latencyMs: 0.1 }, ssh: { tps: 3000, latencyMs: 0.33 }, jit: { tps: 2900, latencyMs: 0.34 } },
      pgbench8: {
        direct: { tps: 28000, latencyMs: 0.28 },
        ssh: { tps: 9000, latencyMs: 0.9, relayCpu: 90, 'cpu:ssh client': 40, 'cpu:sshd': 50 },
        jit: { error: 'pgbench -c 8: exit 2' },
      },
      select1: { direct: { ms: 50 }, ssh: { ms: 55 }, jit: { ms: 60 } },
      portReady: { ssh: { ms: 210, runs: [{ ms: 210 }] }, jit: { ms: 301, runs: [{ ms: 300 }, { ms: 301 }, { ms: 302 }] } },
    },
    memory: {
      baseline: { 'control plane': 100_000, agent: 80_000, 'jit connect (CLI)': 70_000 },
      points: [
        {
          n: 1000,
          rss: { 'control plane': 140_000, agent: 150_000, 'jit connect (CLI)': 100_000 },
          perConnKiB: { 'control plane': 40, agent: 70, 'jit connect (CLI)': 30 },
        },
      ],
      opened: 1000,
      selectOk: 1000,
      selectErrors: 0,
    },
    errors: ['pgbench -S -c 8 -j 2 via jit: pgbench -c 8: exit 2'],
  };
}

describe('targets', () => {
  it('passes and misses each target on the measured numbers, and says n/a when a path failed', () => {
    const t = Object.fromEntries(targets(sample()).map((x) => [x.label, x]));
    assert.equal(t['bulk throughput: jit ≥ ssh -L'].status, 'PASS');
    assert.equal(t['pgbench -S, 1 client: jit ≥ ssh -L'].status, 'MISS');
    assert.equal(t['pgbench -S, 8 clients: jit ≥ ssh -L'].status, 'n/a');
    assert.match(t['pgbench -S, 8 clients: jit ≥ ssh -L'].detail, /exit 2/);
    assert.equal(t['port ready ≤ 300 ms'].status, 'MISS');
    assert.equal(t['≤ 64 KiB per idle connection, control plane'].status, 'PASS');
    assert.equal(t['≤ 64 KiB per idle connection, agent'].status, 'MISS');
    assert.equal(t['1000 idle connections held without errors'].status, 'PASS');
    // The CLI's memory is shown but is not one of the targets.
    assert.equal(
      Object.keys(t).some((k) => k.includes('CLI')),
      false,
    );
  });
  it('misses the 1,000-connection check when one select fails, and is n/a when fewer could be opened', () => {
    const r = sample();
    r.memory.selectOk = 999;
    r.memory.selectErrors = 1;
    assert.equal(targets(r).at(-1).status, 'MISS');
    r.memory.opened = 80;
    r.memory.selectOk = 80;
    r.memory.note = 'PostgreSQL allows max_connections=100';
    assert.equal(targets(r).at(-1).status, 'n/a');
    assert.match(targets(r).at(-1).detail, /max_connections=100/);
  });
  it('gives a combined process (jit dev) the budget of both parts', () => {
    const r = sample();
    r.memory.baseline = { 'jit dev (control plane + agent)': 1 };
    r.memory.points[0].perConnKiB = { 'jit dev (control plane + agent)': 100 };
    r.memory.combinedParts = 2;
    const t = targets(r).find((x) => x.label.startsWith('≤ 64 KiB'));
    assert.equal(t.status, 'PASS');
    assert.match(t.label, /2 parts: ≤ 128/);
  });
});

describe('jit vs ssh -L', () => {
  it('never gives NaN when runs lack the field (regression: port ready printed NaN× with one run each)', () => {
    const r = sample();
    r.metrics.portReady = { ssh: { ms: 200, runs: [200] }, jit: { ms: 300, runs: [300] } };
    assert.equal(
      jitVsSsh(r, 'portReady', (m) => m.ms),
      1.5,
    );
  });
  it('uses the median of per-round ratios when both paths have runs (same moment, same load)', () => {
    const r = sample();
    // Round 2 ran while the machine was busy: both paths slowed, jit beat ssh in both rounds.
    r.metrics.pgbench1.jit = { tps: 2100, runs: [{ tps: 3100 }, { tps: 1100 }] };
    r.metrics.pgbench1.ssh = { tps: 2500, runs: [{ tps: 3000 }, { tps: 1000 }] };
    const t = targets(r).find((x) => x.label.startsWith('pgbench -S, 1 client'));
    assert.equal(t.status, 'PASS');
    assert.match(t.detail, /jit 2100 vs ssh -L 2500 tps; jit\/ssh 1\.07×/);
  });
});

describe('report', () => {
  it('prints every path with its ratio to direct, the jit/ssh ratio, failures and targets', () => {
    const text = renderReport(sample());
    assert.match(text, /bulk COPY TO STDOUT, MB\/s \(higher is better\) +400\.0 +200\.0 \(0\.50×\) +250\.0 \(0\.63×\) +1\.25×/);
    assert.match(text, /pgbench -S, 8 clients: tps .* failed/);
    assert.match(text, /PASS {2}bulk throughput: jit ≥ ssh -L/);
    // Different run counts (5 jit runs, 1 ssh run): the ratio of the medians, never NaN.
    assert.match(text, /port ready ms \(median\) \(lower is better\) +— +210 +301 +1\.43×/);
    assert.doesNotMatch(text, /NaN/);
    assert.match(text, /Failures\n {2}pgbench -S -c 8 -j 2 via jit/);
    assert.match(text, /relay CPU, pgbench 8 clients: µs per tx \(lower is better\) +— +90 +failed/);
    assert.match(text, /relay CPU by process \(µs per tx, pgbench 8 clients\): ssh -L: ssh client 40, sshd 50\n/);
    assert.match(text, /opened 1000 idle connections through one jit session; select 1 ok on 1000, errors 0/);
  });
});

describe('protocol modes and masking', () => {
  it('runs -M extended and -M prepared and a 1M-row masking fetch by default; each can be skipped', () => {
    const c = readConfig({});
    assert.deepEqual(c.protocolModes, ['extended', 'prepared']);
    assert.equal(c.protocolSeconds, 5);
    assert.equal(c.maskRows, 1_000_000);
    assert.deepEqual(readConfig({ BENCH_PROTOCOLS: 'none', BENCH_MASK_ROWS: '0' }).protocolModes, []);
    assert.equal(readConfig({ BENCH_MASK_ROWS: '0' }).maskRows, 0);
    assert.throws(() => readConfig({ BENCH_PROTOCOLS: 'simple' }), /BENCH_PROTOCOLS="simple": expected extended, prepared/);
    assert.throws(() => readConfig({ BENCH_MASK_ROWS: '-1' }), /BENCH_MASK_ROWS/);
  });

  const masking = (ratio) => ({
    rows: 1_000_000,
    bytes: 50_000_000,
    query: 'SELECT id, email FROM bench_contacts',
    direct: { ms: 500, rowsPerSec: 2_000_000, mbps: 100, runs: [{}, {}, {}] },
    plain: { ms: 2000, rowsPerSec: 500_000, mbps: 25, runs: [{}, {}, {}] },
    masked: { ms: 2000 / ratio, rowsPerSec: 500_000 * ratio, mbps: 25 * ratio, runs: [{}, {}, {}] },
    ratio,
    rssBefore: { agent: 100 * 1024, 'control plane': 150 * 1024 },
    rssPeak: { plain: { agent: 120 * 1024, 'control plane': 160 * 1024 }, masked: { agent: 125 * 1024, 'control plane': 161 * 1024 } },
  });
  const label = 'masking a large result: masked ≥ 0.8× unmasked';

  it('passes at ≥ 0.8× of the unmasked rate, misses below, and is n/a when skipped', () => {
    const r = sample();
    r.masking = masking(0.85);
    assert.equal(targets(r).find((t) => t.label === label).status, 'PASS');
    r.masking = masking(0.79);
    assert.equal(targets(r).find((t) => t.label === label).status, 'MISS');
    r.masking = { skipped: 'needs BENCH_JIT=separate' };
    assert.match(targets(r).find((t) => t.label === label).detail, /needs BENCH_JIT=separate/);
    delete r.masking;
    assert.equal(targets(r).find((t) => t.label === label).status, 'n/a');
  });

  it('prints the protocol rows and the masking table with rows/s, MB/s and peak RSS', () => {
    const r = sample();
    r.metrics['pgbench8-prepared'] = {
      direct: { tps: 30000, latencyMs: 0.26 },
      ssh: { tps: 9500, latencyMs: 0.85 },
      jit: { tps: 1500, latencyMs: 5.3 },
    };
    r.masking = masking(0.9);
    const text = renderReport(r);
    assert.match(text, /pgbench -S -M prepared, 8 clients: tps \(higher is better\) +30000 +9500 \(0\.32×\) +1500 \(0\.05×\)/);
    assert.doesNotMatch(text, /-M extended/);
    assert.match(text, /jit, email masked \(partial\) +2\.22 +450000 +22\.5 +125\.0 MiB +161\.0 MiB/);
    assert.match(text, /masked ÷ not masked, rows\/s: 0\.90×/);
    assert.match(text, /PASS {2}masking a large result: masked ≥ 0\.8× unmasked/);
  });
});
