#!/usr/bin/env node
/**
 * `npm run bench`: direct PostgreSQL vs an OpenSSH `ssh -L` forward vs `jit connect`, measured
 * side by side in one run on this machine, against ONE PostgreSQL server. Prints a table with
 * ratios to direct and PASS/MISS per target of the issue. See docs/benchmarks.md.
 *
 * Everything binds to 127.0.0.1 on ports chosen at run time, every step has a time limit, and
 * every process started here is stopped at the end — also on failure and on Ctrl-C.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readConfig } from './lib/config.js';
import { idleConnections } from './lib/idle.js';
import { connect, disconnect, MASK_RULE, MASK_TARGET, ROOT, setNodeArgs, startDev, startSeparate } from './lib/jit.js';
import { aggregate, BULK_ROW_BYTES, bulk, fetchResult, pgbench, psqlValue, selectOne } from './lib/measure.js';
import { DATABASE, GROUP_ROLE, provision, secret, sql, startPostgres } from './lib/postgres.js';
import { cpuMs, now, Procs, rssKiB, run, treeCpuMs, treeRssKiB } from './lib/proc.js';
import { renderReport } from './lib/report.js';
import { startSshForward } from './lib/ssh.js';

// Set on Ctrl-C/SIGTERM: the measurement loop then stops and its errors are no longer news.
let stopping = false;
const log = (line) => {
  if (!stopping) process.stderr.write(`bench: ${line}\n`);
};
const POLICY_TEXT = {
  inspect: 'guardrails + column masking (BENCH_POLICY=inspect)',
  none: 'no guardrails, no masking (BENCH_POLICY=none)',
  detectors: 'guardrails + column masking + email/credit-card detectors on every value (BENCH_POLICY=detectors)',
};
const message = (err) => (err instanceof Error ? err.message : String(err));

async function toolVersion(cmd, args) {
  try {
    const r = await run(cmd, args, { timeoutMs: 5_000 });
    return `${r.stdout}${r.stderr}`.trim().split('\n')[0];
  } catch {
    return `${cmd}: not found`;
  }
}

/** The commit the jit under test was built from, and whether the tree had local changes. */
async function gitDescribe() {
  try {
    const head = await run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { timeoutMs: 5_000 });
    if (head.code !== 0) return 'unknown (not a git checkout)';
    const status = await run('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { timeoutMs: 5_000 });
    const dirty = status.stdout.trim() ? ` + ${status.stdout.trim().split('\n').length} changed files` : '';
    return `${head.stdout.trim()}${dirty}`;
  } catch {
    return 'unknown';
  }
}

async function main(cfg, procs, results) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-bench-'));
  procs.onCleanup('temp folder', () => rmSync(dir, { recursive: true, force: true }));
  const fail = (what, err) => {
    const text = `${what}: ${message(err)}`;
    results.errors.push(text);
    log(text);
  };

  // 1. The one PostgreSQL all paths use, and jit around it.
  let jit;
  let superuser;
  let maxConnections;
  let adminPassword;
  if (cfg.jitMode === 'dev') {
    log('starting jit dev (its PostgreSQL serves all three paths)…');
    try {
      jit = await startDev({ procs, dir });
      superuser = jit.superuser;
      maxConnections = jit.maxConnections;
    } catch (err) {
      fail('jit dev', err);
    }
  }
  if (!superuser) {
    maxConnections = Math.max(...cfg.idleSteps) + 100;
    log(`starting PostgreSQL (max_connections=${maxConnections})…`);
    const pgInfo = await startPostgres({ procs, dir, maxConnections });
    superuser = pgInfo.superuser;
    adminPassword = secret();
  }
  const [version] = await sql(superuser, ['SHOW server_version']);
  results.meta.pgServer = version.rows[0].server_version;
  log(`loading pgbench at scale ${cfg.scale}…`);
  const direct = await provision(superuser, { scale: cfg.scale, adminPassword });

  if (cfg.jitMode === 'separate') {
    log('starting jit server and jit agent, logging in as alice…');
    try {
      jit = await startSeparate({ procs, dir, pgPort: superuser.port, adminPassword, policyLevel: cfg.policy });
    } catch (err) {
      fail('jit server/agent', err);
    }
  }

  log('starting sshd and ssh -L…');
  const conns = { direct };
  let ssh;
  try {
    ssh = await startSshForward({ procs, dir, targetPort: superuser.port });
    conns.ssh = { ...direct, port: ssh.port };
    results.metrics.portReady = { ssh: { ms: ssh.readyMs, runs: [{ ms: ssh.readyMs }] } };
  } catch (err) {
    fail('ssh -L', err);
  }

  // 2. Port ready: fresh `jit connect` runs with the cached token; first query on each.
  let session;
  if (jit) {
    log(`jit connect to port ready × ${cfg.readyRuns}…`);
    const ready = [];
    const first = [];
    try {
      for (let i = 0; i < cfg.readyRuns; i++) {
        const s = await connect(procs, jit);
        ready.push(s.readyMs);
        const t0 = now();
        await sql(s.conn, ['select 1']);
        first.push(now() - t0);
        if (!(await disconnect(s))) throw new Error(`jit connect did not exit cleanly:\n${s.child.tail()}`);
      }
      results.metrics.portReady = { ...results.metrics.portReady, jit: aggregate(ready.map((ms) => ({ ms }))) };
      results.metrics.firstQuery = { jit: aggregate(first.map((ms) => ({ ms }))) };
    } catch (err) {
      fail('jit port ready', err);
      results.metrics.portReady = { ...results.metrics.portReady, jit: { error: message(err) } };
    }
    try {
      session = await connect(procs, jit);
      conns.jit = session.conn;
      results.meta.pids = { ...jit.processes, 'jit connect (CLI)': session.child.pid };
    } catch (err) {
      fail('jit connect', err);
    }
  }

  // 3. Memory per idle connection, while the jit processes are fresh: after the throughput runs
  //    their heaps have grown and absorb new connections without RSS moving.
  let steps = cfg.idleSteps;
  let note;
  const room = maxConnections - 20;
  if (Math.max(...steps) > room) {
    steps = [...new Set(steps.map((n) => Math.min(n, room)))];
    note = `PostgreSQL allows max_connections=${maxConnections}, so at most ${room} were opened (BENCH_JIT=separate runs its own PostgreSQL with room for ${Math.max(...cfg.idleSteps)})`;
  }
  if (session) {
    log(`idle connections ${steps.join(' → ')} through one jit session…`);
    try {
      const probes = {};
      for (const [name, pid] of Object.entries(jit.processes)) probes[name] = () => rssKiB(pid);
      probes['jit connect (CLI)'] = () => rssKiB(session.child.pid);
      results.memory = await idleConnections(session.conn, { steps, probes });
      if (note) results.memory.note = note;
      if (jit.mode === 'dev') results.memory.combinedParts = 2;
    } catch (err) {
      fail('idle connections via jit', err);
      results.memory = { error: message(err) };
    }
  } else if (cfg.jitMode !== 'off') {
    results.memory = { error: 'no jit session' };
  }
  if (ssh && cfg.sshIdle) {
    log(`idle connections ${steps.join(' → ')} through ssh -L (for comparison)…`);
    try {
      results.sshMemory = await idleConnections(conns.ssh, {
        steps,
        probes: { 'ssh client': () => rssKiB(ssh.sshPid), 'sshd (all its processes)': () => treeRssKiB(ssh.sshdPid) },
      });
    } catch (err) {
      fail('idle connections via ssh -L', err);
    }
  }

  // 4. The same measurements on every path that is up, interleaved (round 1: direct, ssh, jit;
  //    round 2: …) so that a burst of other load on the machine hits all paths alike.
  const paths = ['direct', 'ssh', 'jit'].filter((p) => conns[p]);
  const measure = async (key, label, rounds, fn) => {
    const runs = Object.fromEntries(paths.map((p) => [p, []]));
    const failed = {};
    for (let r = 0; r < rounds; r++) {
      if (rounds > 1 && rounds <= 5) log(`${label}, round ${r + 1} of ${rounds}…`);
      for (const p of paths) {
        if (stopping) throw new Error('interrupted');
        if (failed[p]) continue;
        if (rounds <= 5) log(`${label} via ${p}…`);
        try {
          runs[p].push(await fn(conns[p], p));
        } catch (err) {
          failed[p] = message(err);
          fail(`${label} via ${p}`, err);
        }
      }
    }
    results.metrics[key] = Object.fromEntries(paths.map((p) => [p, failed[p] ? { error: failed[p] } : aggregate(runs[p])]));
  };
  await measure('warmup', 'warm-up', 1, async (c) => {
    await pgbench(c, { clients: 2, threads: 2, seconds: cfg.warmupSeconds });
    return bulk(c, { rows: Math.ceil(cfg.bulkRows / 10) });
  });
  delete results.metrics.warmup;
  // CPU the relay processes of each path spend per unit of work: on two shared cores this is what
  // decides throughput (DESIGN.md, "The hot path"), and it points at the process to optimise.
  const relays = { direct: {} };
  if (ssh) relays.ssh = { 'ssh client': () => cpuMs(ssh.sshPid), sshd: () => treeCpuMs(ssh.sshdPid) };
  if (session) {
    relays.jit = { 'jit connect (CLI)': () => cpuMs(session.child.pid) };
    for (const [name, pid] of Object.entries(jit.processes)) relays.jit[name] = () => cpuMs(pid);
  }
  const withCpu = async (p, per, fn) => {
    const probes = relays[p] ?? {};
    const before = Object.fromEntries(Object.entries(probes).map(([n, f]) => [n, f()]));
    const r = await fn();
    const units = per(r);
    let total = 0;
    for (const [n, f] of Object.entries(probes)) {
      const used = (f() ?? Number.NaN) - (before[n] ?? Number.NaN);
      r[`cpu:${n}`] = used / units;
      total += used;
    }
    if (Object.keys(probes).length) r.relayCpu = total / units;
    return r;
  };
  // bulk: relay CPU ms per MB; pgbench: relay CPU µs per transaction.
  await measure('bulk', 'bulk COPY', cfg.bulkRepeats, (c, p) =>
    withCpu(
      p,
      () => (cfg.bulkRows * BULK_ROW_BYTES) / 1e6,
      () => bulk(c, { rows: cfg.bulkRows }),
    ),
  );
  const perTx = (r) => r.transactions / 1000;
  await measure('pgbench1', 'pgbench -S -c 1', cfg.rounds, (c, p) =>
    withCpu(p, perTx, () => pgbench(c, { clients: 1, threads: 1, seconds: cfg.seconds })),
  );
  await measure('pgbench8', 'pgbench -S -c 8 -j 2', cfg.rounds, (c, p) =>
    withCpu(p, perTx, () => pgbench(c, { clients: 8, threads: 2, seconds: cfg.seconds })),
  );
  for (const mode of cfg.protocolModes) {
    await measure(`pgbench8-${mode}`, `pgbench -S -M ${mode} -c 8 -j 2`, cfg.rounds, (c, p) =>
      withCpu(p, perTx, () => pgbench(c, { clients: 8, threads: 2, seconds: cfg.protocolSeconds, mode })),
    );
  }
  log(`psql select 1 × ${cfg.selectRuns} per path…`);
  await measure('select1', 'psql select 1', cfg.selectRuns, (c) => selectOne(c));

  // 5. The cost of masking a large result: the same SELECT through two jit sessions whose
  //    policies differ only in a mask on the email column, plus direct for reference.
  if (cfg.maskRows > 0) {
    if (cfg.jitMode !== 'separate')
      results.masking = { skipped: `needs BENCH_JIT=separate (its policy carries the mask rule; mode is ${cfg.jitMode})` };
    else if (!session) results.masking = { skipped: 'no jit session' };
    else {
      try {
        results.masking = await maskingCost({ cfg, procs, jit, superuser, direct, plain: session.conn, log });
      } catch (err) {
        fail('masking a large result', err);
        results.masking = { error: message(err) };
      }
    }
  }
  if (session && !(await disconnect(session))) fail('jit connect', new Error(`did not exit cleanly:\n${session.child.tail()}`));
}

/** Sample RSS of each probe every `everyMs` until the returned function is called; it returns the peaks (KiB). */
function rssPeaks(probes, everyMs = 20) {
  const peak = {};
  const sample = () => {
    for (const [name, f] of Object.entries(probes)) {
      const v = f();
      if (v !== undefined && !(peak[name] >= v)) peak[name] = v;
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return () => {
    clearInterval(timer);
    sample();
    return peak;
  };
}

/**
 * `SELECT id, email FROM bench_contacts` (cfg.maskRows rows) fetched with psql through: direct
 * (reference), the bench's jit session (target demo-db: no mask on email), and a second session
 * on demo-db-masked (the same policy plus a partial mask on bench_contacts.email). Interleaved
 * rounds; the agent's (and control plane's) RSS is sampled during each jit fetch.
 */
async function maskingCost({ cfg, procs, jit, superuser, direct, plain, log }) {
  const rows = cfg.maskRows;
  const demoSuper = { ...superuser, database: DATABASE };
  log(`masking: loading bench_contacts (${rows} rows)…`);
  await sql(demoSuper, [
    'DROP TABLE IF EXISTS bench_contacts',
    'CREATE TABLE bench_contacts (id int NOT NULL, email text NOT NULL)',
    `INSERT INTO bench_contacts SELECT i, 'user' || i || '@mail' || (i % 97) || '.example.com' FROM generate_series(1, ${rows}) AS i`,
    'VACUUM ANALYZE bench_contacts',
    `GRANT SELECT ON bench_contacts TO ${GROUP_ROLE}`,
  ]);
  // What the result weighs on the wire, unmasked: per DataRow 1 type byte, int32 length, int16
  // column count, and an int32 length + the text of each of the two values.
  const [w] = await sql(demoSuper, ['SELECT (sum(length(id::text)) + sum(octet_length(email)))::float8 AS v FROM bench_contacts']);
  const bytes = rows * (1 + 4 + 2 + 4 + 4) + Number(w.rows[0].v);
  const query = 'SELECT id, email FROM bench_contacts';

  const masked = await connect(procs, jit, MASK_TARGET);
  try {
    // The comparison only means something if one session masks and the other does not.
    const probe = 'SELECT email FROM bench_contacts WHERE id = 1';
    const [seenPlain, seenMasked] = [await psqlValue(plain, probe), await psqlValue(masked.conn, probe)];
    if (seenPlain !== 'user1@mail1.example.com') throw new Error(`unmasked session returned ${JSON.stringify(seenPlain)}`);
    if (!seenMasked.includes('***') || seenMasked.includes('user1@'))
      throw new Error(`masked session returned ${JSON.stringify(seenMasked)}`);

    const probes = { agent: () => rssKiB(jit.processes.agent), 'control plane': () => rssKiB(jit.processes['control plane']) };
    const before = Object.fromEntries(Object.entries(probes).map(([n, f]) => [n, f()]));
    const paths = { direct, plain, masked: masked.conn };
    const runs = { direct: [], plain: [], masked: [] };
    const peaks = { plain: {}, masked: {} };
    // A first, unrecorded fetch on each path (caches, JIT compilers, the agent's catalog lookups).
    for (const c of Object.values(paths)) await fetchResult(c, { query: `${query} LIMIT ${Math.ceil(rows / 10)}`, rows: 1, bytes: 1 });
    for (let r = 0; r < cfg.maskRepeats; r++) {
      for (const [name, c] of Object.entries(paths)) {
        log(
          `masking: ${rows} rows via ${name === 'direct' ? 'direct' : `jit (${name === 'plain' ? 'no mask' : 'email masked'})`}, round ${r + 1} of ${cfg.maskRepeats}…`,
        );
        const stop = name === 'direct' ? undefined : rssPeaks(probes);
        const m = await fetchResult(c, { query, rows, bytes });
        if (stop) {
          const p = stop();
          for (const [n, v] of Object.entries(p)) if (!(peaks[name][n] >= v)) peaks[name][n] = v;
        }
        runs[name].push(m);
      }
    }
    const ratios = runs.masked.map((m, i) => m.rowsPerSec / runs.plain[i].rowsPerSec).sort((a, b) => a - b);
    const mid = ratios.length >> 1;
    return {
      rows,
      bytes,
      query,
      rule: MASK_RULE,
      direct: aggregate(runs.direct),
      plain: aggregate(runs.plain),
      masked: aggregate(runs.masked),
      ratio: ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2,
      rssBefore: before,
      rssPeak: peaks,
    };
  } finally {
    if (!(await disconnect(masked))) log('masking: the second jit connect did not exit cleanly');
  }
}

async function entry() {
  let cfg;
  try {
    cfg = readConfig(process.env);
  } catch (err) {
    process.stderr.write(`bench: ${message(err)}\n`);
    return 2;
  }
  const procs = new Procs();
  if (cfg.profileDir) {
    mkdirSync(cfg.profileDir, { recursive: true });
    setNodeArgs(['--cpu-prof', `--cpu-prof-dir=${cfg.profileDir}`]);
  }
  const results = {
    meta: {
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
      memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
      // Other work on the machine shares the 2 cores with every path: say how busy it was.
      loadAtStart: os.loadavg()[0].toFixed(2),
      node: process.version,
      psql: await toolVersion('psql', ['--version']),
      ssh: await toolVersion('ssh', ['-V']),
      pgServer: '?',
      commit: await gitDescribe(),
      jitMode: cfg.jitMode,
      jitDescription: {
        separate: `jit server and jit agent as two processes (built bin/jit.js); psql → jit connect → control plane → agent → PostgreSQL; policy: ${POLICY_TEXT[cfg.policy]}`,
        dev: "jit dev (control plane, IdP and agent in ONE process); psql → jit connect → jit dev → PostgreSQL; policy: jit dev's demo policy",
        off: 'not measured (BENCH_JIT=off)',
      }[cfg.jitMode],
      seconds: cfg.seconds,
      rounds: cfg.rounds,
      bulkRows: cfg.bulkRows,
      bulkRepeats: cfg.bulkRepeats,
      protocolModes: cfg.protocolModes,
      protocolSeconds: cfg.protocolSeconds,
      maskRows: cfg.maskRows,
      maskRepeats: cfg.maskRepeats,
      selectRuns: cfg.selectRuns,
      readyRuns: cfg.readyRuns,
      idleSteps: cfg.idleSteps,
    },
    metrics: {},
    errors: [],
  };
  let interrupted = false;
  const onSignal = (sig) => {
    if (interrupted) return;
    log(`${sig}: stopping everything…`);
    interrupted = true;
    stopping = true;
    procs.stopAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const started = now();
  let code = 0;
  try {
    await main(cfg, procs, results);
  } catch (err) {
    results.errors.push(`bench stopped: ${message(err)}`);
    log(`stopped: ${err?.stack ?? err}`);
    code = 1;
  } finally {
    log('stopping everything…');
    await procs.stopAll();
  }
  if (interrupted) return 130;
  results.meta.durationSeconds = Math.round((now() - started) / 1000);
  results.meta.loadAtEnd = os.loadavg()[0].toFixed(2);
  process.stdout.write(`\n${renderReport(results)}`);
  process.stdout.write(`(bench took ${results.meta.durationSeconds} s)\n`);
  if (cfg.profileDir) {
    const pids = Object.entries(results.meta.pids ?? {}).map(([name, pid]) => `${name} ${pid}`);
    process.stdout.write(
      `CPU profiles in ${cfg.profileDir} (file names carry the pid: ${pids.join(', ')}); read one with node bench/profile-top.js <file>\n`,
    );
  }
  if (cfg.jsonFile) writeFileSync(cfg.jsonFile, `${JSON.stringify(results, null, 2)}\n`);
  return code || (results.errors.length ? 1 : 0);
}

process.exitCode = await entry();
