/**
 * Turns the results object of a bench run into the printed report: the side-by-side table with
 * ratios to direct, the idle-connection memory table, and PASS/MISS per target from the issue.
 * Pure functions over data, so the wording and the target logic are unit-tested.
 */

export const PATHS = [
  ['direct', 'direct'],
  ['ssh', 'ssh -L'],
  ['jit', 'jit connect'],
];

export const TARGETS = {
  portReadyMs: 300,
  idleKiB: 64,
  idleConnections: 1000,
  /** masked rows/s ÷ unmasked rows/s for a large result */
  maskedVsUnmasked: 0.8,
};

const fmt = (v, digits) => (v === undefined || v === null || Number.isNaN(v) ? '—' : v.toFixed(digits));
const ratio = (v, base) => (v === undefined || base === undefined || !base ? undefined : v / base);
const fmtRatio = (r) => (r === undefined ? '' : `${r.toFixed(2)}×`);
const pad = (s, n) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const padStart = (s, n) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);

/**
 * The rows of the main table: label, how to read it, and the value per path picked from a
 * measurement (`undefined` when that path has none or failed).
 */
export const ROWS = [
  { key: 'bulk', label: 'bulk COPY TO STDOUT, MB/s', better: 'higher', digits: 1, pick: (m) => m.mbps },
  { key: 'pgbench1', label: 'pgbench -S, 1 client: tps', better: 'higher', digits: 0, pick: (m) => m.tps },
  { key: 'pgbench1', label: 'pgbench -S, 1 client: latency ms', better: 'lower', digits: 3, pick: (m) => m.latencyMs },
  { key: 'pgbench8', label: 'pgbench -S, 8 clients: tps', better: 'higher', digits: 0, pick: (m) => m.tps },
  { key: 'pgbench8', label: 'pgbench -S, 8 clients: latency ms', better: 'lower', digits: 3, pick: (m) => m.latencyMs },
  { key: 'bulk', label: 'relay CPU, bulk: ms per MB', better: 'lower', digits: 2, pick: (m) => m.relayCpu },
  { key: 'pgbench1', label: 'relay CPU, pgbench 1 client: µs per tx', better: 'lower', digits: 0, pick: (m) => m.relayCpu },
  { key: 'pgbench8', label: 'relay CPU, pgbench 8 clients: µs per tx', better: 'lower', digits: 0, pick: (m) => m.relayCpu },
  ...['extended', 'prepared'].flatMap((mode) => [
    { key: `pgbench8-${mode}`, label: `pgbench -S -M ${mode}, 8 clients: tps`, better: 'higher', digits: 0, pick: (m) => m.tps },
    {
      key: `pgbench8-${mode}`,
      label: `pgbench -S -M ${mode}, 8 clients: latency ms`,
      better: 'lower',
      digits: 3,
      pick: (m) => m.latencyMs,
    },
    { key: `pgbench8-${mode}`, label: `relay CPU, -M ${mode} 8 clients: µs per tx`, better: 'lower', digits: 0, pick: (m) => m.relayCpu },
  ]),
  { key: 'select1', label: "psql -c 'select 1' wall ms (median)", better: 'lower', digits: 1, pick: (m) => m.ms },
  { key: 'portReady', label: 'port ready ms (median)', better: 'lower', digits: 0, pick: (m) => m.ms },
  { key: 'firstQuery', label: 'first query after ready ms (median)', better: 'lower', digits: 0, pick: (m) => m.ms },
];

/**
 * jit divided by ssh -L. The paths ran interleaved, so run i of jit and run i of ssh saw the same
 * moment's load: the median of those paired ratios is steadier than the ratio of the medians
 * when the machine is busy. Falls back to the ratio of the values.
 */
export function jitVsSsh(results, key, pick) {
  const jit = results.metrics[key]?.jit;
  const ssh = results.metrics[key]?.ssh;
  if (!jit || !ssh || jit.error || ssh.error) return undefined;
  const jr = jit.runs ?? [];
  const sr = ssh.runs ?? [];
  const ratios = jr.length > 0 && jr.length === sr.length ? jr.map((r, i) => pick(r) / pick(sr[i])).sort((a, b) => a - b) : [];
  if (ratios.length && ratios.every(Number.isFinite)) {
    const mid = ratios.length >> 1;
    return ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
  }
  return ratio(pick(jit), pick(ssh));
}

function value(results, row, path) {
  const m = results.metrics[row.key]?.[path];
  if (!m || m.error) return undefined;
  return row.pick(m);
}

/** The main table as text lines. */
export function mainTable(results) {
  const header = ['metric', ...PATHS.map(([, name]) => name), 'jit / ssh -L'];
  const lines = [];
  const rows = ROWS.filter((r) => results.metrics[r.key]).map((row) => {
    const direct = value(results, row, 'direct');
    const cells = PATHS.map(([path]) => {
      const v = value(results, row, path);
      const m = results.metrics[row.key]?.[path];
      if (m?.error) return 'failed';
      if (v === undefined) return '—';
      const r = path === 'direct' ? undefined : ratio(v, direct);
      return `${fmt(v, row.digits)}${r === undefined ? '' : ` (${fmtRatio(r)})`}`;
    });
    const vsSsh = jitVsSsh(results, row.key, row.pick);
    return [`${row.label} (${row.better} is better)`, ...cells, fmtRatio(vsSsh)];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const render = (cols) => cols.map((c, i) => (i === 0 ? pad(c, widths[i]) : padStart(c, widths[i]))).join('  ');
  lines.push(render(header));
  lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) lines.push(render(r));
  lines.push('(x.xx×) = ratio to direct; "jit / ssh -L" = median over rounds of jit ÷ ssh -L in the same round');
  lines.push(...cpuBreakdown(results));
  return lines;
}

/** Which relay process spent the CPU, per path (pgbench 8 clients, and bulk). */
export function cpuBreakdown(results) {
  const lines = [];
  for (const [key, what, digits] of [
    ['pgbench8', 'µs per tx, pgbench 8 clients', 0],
    ['bulk', 'ms per MB, bulk', 2],
  ]) {
    const parts = PATHS.filter(([path]) => results.metrics[key]?.[path]?.relayCpu !== undefined).map(([path, name]) => {
      const m = results.metrics[key][path];
      const each = Object.entries(m)
        .filter(([k]) => k.startsWith('cpu:'))
        .map(([k, v]) => `${k.slice(4)} ${fmt(v, digits)}`);
      return `${name}: ${each.join(', ')}`;
    });
    if (parts.length) lines.push(`relay CPU by process (${what}): ${parts.join('; ')}`);
  }
  return lines;
}

const mib = (kib) => (kib === undefined ? '—' : `${(kib / 1024).toFixed(1)} MiB`);

/** The idle-connection memory table as text lines. */
export function memoryTable(memory, via = 'one session') {
  if (!memory) return [];
  if (memory.error) return [`idle connections: failed: ${memory.error}`];
  const names = Object.keys(memory.baseline);
  const header = ['process', 'RSS before', ...memory.points.map((p) => `RSS with ${p.n} (KiB/conn)`)];
  const rows = names.map((name) => [
    name,
    mib(memory.baseline[name]),
    ...memory.points.map((p) => `${mib(p.rss[name])} (${fmt(p.perConnKiB[name], 1)})`),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const render = (cols) => cols.map((c, i) => (i === 0 ? pad(c, widths[i]) : padStart(c, widths[i]))).join('  ');
  const lines = [render(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(render)];
  lines.push(
    `opened ${memory.opened} idle connections through ${via}; select 1 ok on ${memory.selectOk}, errors ${memory.selectErrors}` +
      (memory.firstSelectError ? ` (first: ${memory.firstSelectError})` : ''),
  );
  if (memory.openError) lines.push(`opening stopped: ${memory.openError}`);
  if (memory.note) lines.push(memory.note);
  return lines;
}

/** The masking benchmark as text lines: the same large SELECT direct, through jit unmasked, and masked. */
export function maskingTable(masking) {
  if (!masking) return [];
  if (masking.skipped) return [`masking a large result: not measured (${masking.skipped})`];
  if (masking.error) return [`masking a large result: failed: ${masking.error}`];
  const mb = masking.bytes / 1e6;
  const header = ['path', 'seconds', 'rows/s', 'MB/s', 'agent RSS peak', 'control plane RSS peak'];
  const peak = (name, proc) => (masking.rssPeak?.[name]?.[proc] === undefined ? '—' : mib(masking.rssPeak[name][proc]));
  const rows = [
    ['direct (reference)', masking.direct, 'direct'],
    ['jit, email not masked', masking.plain, 'plain'],
    ['jit, email masked (partial)', masking.masked, 'masked'],
  ].map(([label, m, name]) => [
    label,
    fmt(m.ms / 1000, 2),
    fmt(m.rowsPerSec, 0),
    fmt(m.mbps, 1),
    name === 'direct' ? '—' : peak(name, 'agent'),
    name === 'direct' ? '—' : peak(name, 'control plane'),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const render = (cols) => cols.map((c, i) => (i === 0 ? pad(c, widths[i]) : padStart(c, widths[i]))).join('  ');
  return [
    `Masking a ${masking.rows}-row result: \`${masking.query}\` (${mb.toFixed(1)} MB of DataRows unmasked), psql, median of ${masking.masked.runs.length}`,
    render(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(render),
    `masked ÷ not masked, rows/s: ${fmtRatio(masking.ratio)} (median of per-round ratios); RSS before: agent ${mib(masking.rssBefore?.agent)}, control plane ${mib(masking.rssBefore?.['control plane'])}`,
  ];
}

/** PASS/MISS (or n/a when not measured) per target of the issue. */
export function targets(results) {
  const out = [];
  const vsSsh = (label, key, pick, digits, unit) => {
    const jit = results.metrics[key]?.jit;
    const ssh = results.metrics[key]?.ssh;
    const j = jit && !jit.error ? pick(jit) : undefined;
    const s = ssh && !ssh.error ? pick(ssh) : undefined;
    if (j === undefined || s === undefined) {
      out.push({ status: 'n/a', label, detail: `not measured${jit?.error ? ` (jit: ${jit.error})` : ''}` });
      return;
    }
    const r = jitVsSsh(results, key, pick);
    out.push({
      status: r >= 1 ? 'PASS' : 'MISS',
      label,
      detail: `jit ${fmt(j, digits)} vs ssh -L ${fmt(s, digits)} ${unit}; jit/ssh ${fmtRatio(r)}`,
    });
  };
  vsSsh('bulk throughput: jit ≥ ssh -L', 'bulk', (m) => m.mbps, 1, 'MB/s');
  vsSsh('pgbench -S, 1 client: jit ≥ ssh -L', 'pgbench1', (m) => m.tps, 0, 'tps');
  vsSsh('pgbench -S, 8 clients: jit ≥ ssh -L', 'pgbench8', (m) => m.tps, 0, 'tps');

  const ready = results.metrics.portReady?.jit;
  out.push(
    ready && !ready.error
      ? {
          status: ready.ms <= TARGETS.portReadyMs ? 'PASS' : 'MISS',
          label: `port ready ≤ ${TARGETS.portReadyMs} ms`,
          detail: `${fmt(ready.ms, 0)} ms (median of ${ready.runs.length})`,
        }
      : {
          status: 'n/a',
          label: `port ready ≤ ${TARGETS.portReadyMs} ms`,
          detail: `not measured${ready?.error ? ` (${ready.error})` : ''}`,
        },
  );

  const mem = results.memory;
  const last = mem && !mem.error ? mem.points.at(-1) : undefined;
  if (!last) {
    out.push({
      status: 'n/a',
      label: `≤ ${TARGETS.idleKiB} KiB per idle connection`,
      detail: `not measured${mem?.error ? ` (${mem.error})` : ''}`,
    });
  } else {
    for (const [name, kib] of Object.entries(last.perConnKiB)) {
      if (name === 'jit connect (CLI)') continue;
      // jit dev runs both parts in one process: the budget is per part, so two parts share 2×.
      const parts = mem.combinedParts ?? 1;
      const limit = TARGETS.idleKiB * parts;
      out.push({
        status: kib <= limit ? 'PASS' : 'MISS',
        label: `≤ ${TARGETS.idleKiB} KiB per idle connection, ${name}${parts > 1 ? ` (${parts} parts: ≤ ${limit})` : ''}`,
        detail: `${fmt(kib, 1)} KiB/conn at ${last.n} connections`,
      });
    }
  }
  const mk = results.masking;
  const mkLabel = `masking a large result: masked ≥ ${TARGETS.maskedVsUnmasked}× unmasked`;
  if (!mk || mk.skipped || mk.error) {
    out.push({
      status: 'n/a',
      label: mkLabel,
      detail: `not measured${mk?.skipped ? ` (${mk.skipped})` : mk?.error ? ` (${mk.error})` : ' (BENCH_MASK_ROWS=0)'}`,
    });
  } else {
    out.push({
      status: mk.ratio >= TARGETS.maskedVsUnmasked ? 'PASS' : 'MISS',
      label: mkLabel,
      detail: `${fmt(mk.masked.rowsPerSec, 0)} vs ${fmt(mk.plain.rowsPerSec, 0)} rows/s over ${mk.rows} rows; ${fmtRatio(mk.ratio)}`,
    });
  }
  const want = TARGETS.idleConnections;
  if (!mem || mem.error) {
    out.push({
      status: 'n/a',
      label: `${want} idle connections held without errors`,
      detail: `not measured${mem?.error ? ` (${mem.error})` : ''}`,
    });
  } else {
    const ok = mem.opened >= want && mem.selectOk === mem.opened && !mem.openError;
    out.push({
      status: mem.opened < want && !mem.openError ? 'n/a' : ok ? 'PASS' : 'MISS',
      label: `${want} idle connections held without errors`,
      detail: `opened ${mem.opened}, select 1 ok on ${mem.selectOk}${mem.openError ? `; ${mem.openError}` : ''}${mem.note && mem.opened < want ? `; ${mem.note}` : ''}`,
    });
  }
  return out;
}

/** The whole report as one string. */
export function renderReport(results) {
  const m = results.meta;
  const lines = [
    `jit benchmark — ${m.date}`,
    `machine: ${m.cpus} CPU cores (${m.cpuModel}), ${m.memGiB} GiB RAM, 1-min load average ${m.loadAtStart ?? '?'} at start, ${m.loadAtEnd ?? '?'} at end`,
    `software: Node ${m.node}; PostgreSQL server ${m.pgServer}; ${m.psql}; ${m.ssh}`,
    `jit: ${m.jitDescription}`,
    `jit built from: ${m.commit ?? 'unknown'}`,
    `settings: pgbench ${m.rounds} × ${m.seconds} s (BENCH_ROUNDS × BENCH_SECONDS, median), bulk ${m.bulkRows} rows × ${m.bulkRepeats} (median), select 1 × ${m.selectRuns}, port ready × ${m.readyRuns}, idle steps ${m.idleSteps.join('/')}` +
      (m.protocolModes?.length ? `, -M ${m.protocolModes.join('/')} ${m.rounds} × ${m.protocolSeconds} s` : '') +
      (m.maskRows ? `, masking ${m.maskRows} rows × ${m.maskRepeats}` : ''),
    '',
    ...mainTable(results),
    '',
    ...(results.memory ? ['Idle connections through one jit session', ...memoryTable(results.memory, 'one jit session'), ''] : []),
    ...(results.sshMemory
      ? ['Idle connections through ssh -L (for comparison; no target)', ...memoryTable(results.sshMemory, 'one ssh connection'), '']
      : []),
    ...(results.masking ? [...maskingTable(results.masking), ''] : []),
    'Targets (from the issue)',
  ];
  for (const t of targets(results)) lines.push(`  ${pad(t.status, 4)}  ${pad(t.label, 58)}  ${t.detail}`);
  if (results.errors.length) {
    lines.push('', 'Failures');
    for (const e of results.errors) lines.push(`  ${e}`);
  }
  return `${lines.join('\n')}\n`;
}
