/**
 * The bench's settings, from BENCH_* environment variables; each is checked against a range so
 * a typo fails at once with the variable's name instead of an hour-long or zero-length run.
 */
import path from 'node:path';

function int(env, name, def, min, max) {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new Error(`${name}=${JSON.stringify(raw.slice(0, 40))}: expected a whole number from ${min} to ${max}`);
  }
  return Number(raw);
}

/** Read and check the settings. Throws an Error naming the variable on a bad value. */
export function readConfig(env) {
  const jitMode = env.BENCH_JIT || 'separate';
  if (!['separate', 'dev', 'off'].includes(jitMode)) {
    throw new Error(`BENCH_JIT=${JSON.stringify(jitMode.slice(0, 40))}: expected separate, dev or off`);
  }
  const policy = env.BENCH_POLICY || 'inspect';
  if (!['inspect', 'none', 'detectors'].includes(policy)) {
    throw new Error(`BENCH_POLICY=${JSON.stringify(policy.slice(0, 40))}: expected inspect, none or detectors`);
  }
  const idleRaw = env.BENCH_IDLE || '200,1000';
  if (!/^\d+(,\d+)*$/.test(idleRaw)) throw new Error(`BENCH_IDLE=${JSON.stringify(idleRaw.slice(0, 40))}: expected counts like 200,1000`);
  const idleSteps = idleRaw.split(',').map(Number);
  if (idleSteps.some((n, i) => n < 1 || n > 5000 || (i > 0 && n <= idleSteps[i - 1]))) {
    throw new Error('BENCH_IDLE: counts must be ascending, each from 1 to 5000');
  }
  // Extra pgbench -S protocol modes (the main rows use -M simple); BENCH_PROTOCOLS=none skips them.
  const protoRaw = env.BENCH_PROTOCOLS ?? 'extended,prepared';
  const protocolModes = protoRaw === '' || protoRaw === 'none' ? [] : protoRaw.split(',');
  if (protocolModes.some((m) => !['extended', 'prepared'].includes(m)) || new Set(protocolModes).size !== protocolModes.length) {
    throw new Error(
      `BENCH_PROTOCOLS=${JSON.stringify(protoRaw.slice(0, 40))}: expected extended, prepared, both (comma-separated) or none`,
    );
  }
  return {
    jitMode,
    protocolModes,
    protocolSeconds: int(env, 'BENCH_PROTOCOL_SECONDS', 5, 1, 600),
    // Rows of the masking benchmark's table; 0 skips it.
    maskRows: int(env, 'BENCH_MASK_ROWS', 1_000_000, 0, 10_000_000),
    maskRepeats: int(env, 'BENCH_MASK_REPEATS', 3, 1, 20),
    policy,
    seconds: int(env, 'BENCH_SECONDS', 10, 1, 600),
    rounds: int(env, 'BENCH_ROUNDS', 2, 1, 20),
    warmupSeconds: int(env, 'BENCH_WARMUP_SECONDS', 2, 1, 60),
    scale: int(env, 'BENCH_SCALE', 5, 1, 100),
    bulkRows: int(env, 'BENCH_BULK_ROWS', 250_000, 1_000, 10_000_000),
    bulkRepeats: int(env, 'BENCH_BULK_REPEATS', 3, 1, 20),
    selectRuns: int(env, 'BENCH_SELECT_RUNS', 20, 1, 500),
    readyRuns: int(env, 'BENCH_READY_RUNS', 5, 1, 50),
    idleSteps,
    sshIdle: env.BENCH_SSH_IDLE !== '0',
    jsonFile: env.BENCH_JSON || undefined,
    // CPU profiles change the timings: a profiling run is for finding hot spots, not for the table.
    profileDir: env.BENCH_PROFILE ? path.resolve(env.BENCH_PROFILE) : undefined,
  };
}
