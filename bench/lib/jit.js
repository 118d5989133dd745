/**
 * jit for the benchmark, driven only through the built CLI (`node bin/jit.js`), as a user would:
 *
 *  - `separate` (default): `jit server` and `jit agent` as two processes with configs written
 *    here, the agent serving target `demo-db` on the bench's PostgreSQL. Gives per-process memory
 *    numbers and lets the 1,000-connection check run (the bench's PostgreSQL allows it).
 *  - `dev`: `jit dev` (control plane, IdP and agent in ONE process, plus its own PostgreSQL,
 *    which then is the server of all three paths). Memory is the two parts combined.
 *
 * Login is the real device flow: `jit login` prints the verification URL and the test helper
 * test/helpers/idp-browser.ts plays the browser as alice.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { stringify } from 'yaml';
import { DATABASE, GROUP_ROLE, parseUrl, secret } from './postgres.js';
import { Child, freePort, now, run, sleep } from './proc.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const JIT_BIN = path.join(ROOT, 'bin', 'jit.js');
export const TARGET = 'demo-db';
/** The same database behind a second target whose policy masks bench_contacts.email (masking benchmark). */
export const MASK_TARGET = 'demo-db-masked';
/** The masking benchmark's rule: only on MASK_TARGET, so TARGET's policy stays what BENCH_POLICY says. */
export const MASK_RULE = { name: 'bench-email', targets: [MASK_TARGET], columns: ['bench_contacts.email'], style: 'partial' };
const AGENT_NAME = 'local';
const USER = 'alice';

/**
 * Node options for the long-running jit processes (server, agent, dev, connect): BENCH_PROFILE
 * sets `--cpu-prof` here so that each writes a V8 CPU profile when it exits.
 */
let nodeArgs = [];

/** Set the Node options of the long-running jit processes (see nodeArgs). */
export function setNodeArgs(args) {
  nodeArgs = [...args];
}

/** Run the jit CLI to completion. */
export function jitRun(env, args, opts = {}) {
  return run(process.execPath, [JIT_BIN, ...args], { env, timeoutMs: 30_000, ...opts });
}

function checked(what, r) {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim().split('\n').slice(-4).join(' | ')}`);
  return r;
}

/** Environment of the CLI: its own config folder, tokens in a 0600 file, plain output. */
function cliEnv(dir, serverUrl) {
  const home = path.join(dir, 'home');
  mkdirSync(home, { recursive: true, mode: 0o700 });
  return {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, 'config'),
    JIT_KEYRING: 'file',
    JIT_SERVER: serverUrl,
    NO_COLOR: '1',
  };
}

/**
 * The Layer 7 rules of the bench's policy. DESIGN: jit must beat ssh -L *with inspection on*, so
 * by default the session carries guardrails and column masking, none of which changes what the
 * benchmark queries return (pgbench reads abalance; the bulk query reads no table) but all of
 * which the agent must evaluate. `detectors` adds content detectors that scan every text value.
 */
export function inspectionPolicy(level) {
  if (level === 'none') return {};
  const rules = {
    guardrails: [
      {
        name: 'no-drop-or-truncate',
        match: { kinds: ['drop', 'truncate'] },
        action: 'block',
        message: 'DROP and TRUNCATE are not allowed here',
      },
      { name: 'no-unbounded-writes', match: { kinds: ['update', 'delete'], withoutWhere: true }, action: 'block' },
      { name: 'no-backend-kills', match: { functions: ['pg_terminate_backend', 'pg_cancel_backend'] }, action: 'block' },
    ],
    masking: [{ name: 'filler', columns: ['pgbench_accounts.filler', 'pgbench_tellers.filler'], style: 'full' }],
  };
  if (level === 'detectors') rules.masking.push({ name: 'contact-and-cards', detectors: ['email', 'credit-card'], style: 'partial' });
  return rules;
}

function withMaskRule(rules) {
  return { ...rules, masking: [...(rules.masking ?? []), MASK_RULE] };
}

/**
 * Start `jit server` + `jit agent` against PostgreSQL at `pgPort` (roles from provision()), with
 * the inspection rules of `policyLevel`. Returns a JitSetup.
 */
export async function startSeparate({ procs, dir, pgPort, adminPassword, policyLevel }) {
  const jitDir = path.join(dir, 'jit');
  mkdirSync(jitDir, { mode: 0o700 });
  const baseEnv = { ...process.env, NO_COLOR: '1' };
  const tokens = JSON.parse(checked('jit agent-token', await jitRun(baseEnv, ['agent-token', '--json'])).stdout);
  const password = secret();
  const hash = checked('jit hash-password', await jitRun(baseEnv, ['hash-password'], { input: password })).stdout.trim();

  const port = await freePort();
  const serverUrl = `http://127.0.0.1:${port}`;
  writeFileSync(
    path.join(jitDir, 'policy.yaml'),
    stringify({
      targets: [
        { name: TARGET, type: 'postgres', agent: AGENT_NAME, database: DATABASE, description: 'benchmark' },
        { name: MASK_TARGET, type: 'postgres', agent: AGENT_NAME, database: DATABASE, description: 'benchmark, email masked' },
      ],
      access: [{ name: 'bench', targets: [TARGET, MASK_TARGET], groups: ['engineers'], grantRoles: [GROUP_ROLE], maxDuration: '8h' }],
      ...withMaskRule(inspectionPolicy(policyLevel)),
    }),
    { mode: 0o600 },
  );
  writeFileSync(
    path.join(jitDir, 'server.yaml'),
    stringify({
      listen: `127.0.0.1:${port}`,
      dataDir: './server',
      policy: './policy.yaml',
      identity: { builtin: { users: [{ username: USER, email: 'alice@jit.example', groups: ['engineers'], passwordHash: hash }] } },
      agents: [{ name: AGENT_NAME, tokenHash: tokens.tokenHash }],
    }),
    { mode: 0o600 },
  );
  writeFileSync(
    path.join(jitDir, 'agent.yaml'),
    stringify({
      name: AGENT_NAME,
      controlPlane: serverUrl,
      targets: {
        [TARGET]: {
          type: 'postgres',
          host: '127.0.0.1',
          port: pgPort,
          database: DATABASE,
          adminUrlEnv: 'JIT_BENCH_ADMIN_URL',
          // The bench opens up to 1000 idle connections through one session.
          maxConnectionsPerSession: 2000,
          sslmode: 'disable',
        },
        [MASK_TARGET]: {
          type: 'postgres',
          host: '127.0.0.1',
          port: pgPort,
          database: DATABASE,
          adminUrlEnv: 'JIT_BENCH_ADMIN_URL',
          // The bench opens up to 1000 idle connections through one session.
          maxConnectionsPerSession: 2000,
          sslmode: 'disable',
        },
      },
    }),
    { mode: 0o600 },
  );

  const server = procs.spawn(
    'jit server',
    process.execPath,
    [...nodeArgs, JIT_BIN, 'server', '--config', path.join(jitDir, 'server.yaml'), '--log-level', 'warn'],
    {
      cwd: jitDir,
      env: baseEnv,
      stopSignal: 'SIGINT',
    },
  );
  await server.waitFor(/listening on/, 20_000);
  const agent = procs.spawn(
    'jit agent',
    process.execPath,
    [...nodeArgs, JIT_BIN, 'agent', '--config', path.join(jitDir, 'agent.yaml'), '--log-level', 'warn'],
    {
      cwd: jitDir,
      env: {
        ...baseEnv,
        JIT_AGENT_TOKEN: tokens.token,
        JIT_BENCH_ADMIN_URL: `postgresql://jit_admin:${encodeURIComponent(adminPassword)}@127.0.0.1:${pgPort}/${DATABASE}?sslmode=disable`,
      },
      stopSignal: 'SIGINT',
    },
  );
  await agent.waitFor(/started/, 20_000);
  const env = cliEnv(jitDir, serverUrl);
  await login(env, password);
  await waitOnline(env, agent);
  return {
    mode: 'separate',
    serverUrl,
    env,
    processes: { 'control plane': server.pid, agent: agent.pid },
  };
}

/**
 * Start `jit dev` in `<dir>/dev` on free ports. Returns a JitSetup plus `superuser` (its
 * PostgreSQL, which then serves all three paths) and `maxConnections` of that PostgreSQL.
 */
export async function startDev({ procs, dir }) {
  const devDir = path.join(dir, 'dev');
  // As root, jit dev's PostgreSQL runs as the postgres OS user, who must traverse our folder.
  chmodSync(dir, 0o711);
  const dev = procs.spawn('jit dev', process.execPath, [...nodeArgs, JIT_BIN, 'dev', '--dir', devDir, '--port', '0', '--pg-port', '0'], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: '1' },
    stopSignal: 'SIGINT',
  });
  await dev.waitFor(/jit dev is running/, 90_000);
  await sleep(100);
  const serverUrl = /Control plane\s+(http\S+)/.exec(dev.err)?.[1];
  const pgPort = Number(/PostgreSQL\s+127\.0\.0\.1:(\d+)/.exec(dev.err)?.[1]);
  if (!serverUrl || !pgPort) throw new Error(`could not read the jit dev banner:\n${dev.tail(20)}`);
  if (/agent has not connected/.test(dev.err)) throw new Error(`jit dev: the agent did not connect:\n${dev.tail(20)}`);
  const state = JSON.parse(readFileSync(path.join(devDir, 'state.json'), 'utf8'));
  const users = JSON.parse(readFileSync(path.join(devDir, 'dev-users.json'), 'utf8'));
  const alice = users.find((u) => u.username === USER);
  if (!alice) throw new Error('dev-users.json has no alice');
  const superuser = { host: '127.0.0.1', port: pgPort, user: 'postgres', password: state.pgSuperPassword, database: 'postgres' };
  const env = cliEnv(dir, serverUrl);
  await login(env, alice.password);
  await waitOnline(env, dev);
  const [r] = await sqlRows(superuser, 'SHOW max_connections');
  return {
    mode: 'dev',
    serverUrl,
    env,
    superuser,
    maxConnections: Number(r.max_connections),
    processes: { 'jit dev (control plane + agent)': dev.pid },
  };
}

async function sqlRows(c, text) {
  const client = new pg.Client({ ...c, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** `jit login` as alice: the CLI prints the URL, the scripted browser completes the device flow. */
async function login(env, password) {
  let completeDeviceLogin;
  try {
    // Node 24 strips the types of this dependency-free helper at import.
    ({ completeDeviceLogin } = await import('../../test/helpers/idp-browser.ts'));
  } catch (err) {
    throw new Error(`cannot load test/helpers/idp-browser.ts (the scripted browser): ${err.message}`);
  }
  // Not in `procs`: login ends here, one way or the other.
  const child = new Child('jit login', spawn(process.execPath, [JIT_BIN, 'login'], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  try {
    const m = await child.waitFor(/^ {2}(http\S+)$/m, 20_000, 'err');
    await completeDeviceLogin({ verificationUriComplete: m[1], username: USER, password });
    const end = await Promise.race([child.exited, sleep(20_000).then(() => ({ code: 'timeout' }))]);
    if (end.code !== 0) throw new Error(`jit login did not finish (exit ${end.code ?? end.signal}):\n${child.tail()}`);
  } finally {
    await child.stop(2_000);
  }
}

/** Wait until the target shows its agent online (`jit targets --json`). */
async function waitOnline(env, agentChild) {
  const end = now() + 20_000;
  let last = '';
  while (now() < end) {
    const r = await jitRun(env, ['targets', '--json']);
    if (r.code === 0) {
      const t = JSON.parse(r.stdout).targets?.find((x) => x.name === TARGET);
      if (t?.online) return;
      last = t ? 'target listed, agent offline' : 'target not listed';
    } else {
      last = r.stderr.trim();
    }
    if (!agentChild.running) break;
    await sleep(200);
  }
  throw new Error(`target ${TARGET} did not come online: ${last}\n${agentChild.tail()}`);
}

/**
 * `jit connect demo-db` (or `target`) in the background. Resolves once the URL is printed (the session exists
 * and the port listens): `{ child, url, conn, readyMs }`. Stop it with disconnect().
 */
export async function connect(procs, setup, target = TARGET) {
  const started = now();
  const child = procs.spawn('jit connect', process.execPath, [...nodeArgs, JIT_BIN, 'connect', target, '--reason', 'benchmark'], {
    env: setup.env,
    stopSignal: 'SIGINT',
  });
  const m = await child.waitFor(/^(postgres(?:ql)?:\/\/\S+)$/m, 20_000, 'out');
  const readyMs = now() - started;
  return { child, url: m[1], conn: parseUrl(m[1]), readyMs };
}

/** Ctrl-C for `jit connect` (ends the session), bounded; true if it exited 0. */
export async function disconnect(session) {
  await session.child.stop(10_000);
  const r = await session.child.exited;
  return r.code === 0;
}
