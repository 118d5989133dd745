/**
 * `jit dev`: the whole system in one process tree on this machine — a demo PostgreSQL, the
 * control plane with its built-in IdP, and an agent — with dev users and a demo policy.
 *
 * Start order: PostgreSQL → control plane → agent. Stop order is the reverse, each step bounded
 * in time: the agent first (it ends sessions and drops their roles while PostgreSQL is still
 * up), then the control plane, then PostgreSQL.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { AgentConfig } from '#shared/config/agent.js';
import type { ServerConfig } from '#shared/config/server.js';
import { JitError, isJitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock, Ctx } from '#shared/runtime/ctx.js';
import { bannerText } from './banner.js';
import { agentTokenHash, devAgentConfig, writeDevConfig } from './config.js';
import { provisionDemoDb } from './demo-db.js';
import { anyFreePort, type DevPostgres, portIsFree, startDevPostgres, stopLeftoverPostgres } from './postgres.js';
import { type DevSshd, SSHD_PATH, startDevSshd } from './sshd.js';
import { assertDevFolder, type DevUser, openDevFolder, removeDevFolder } from './state.js';

export interface DevOptions {
  /** Absolute path of the dev folder. */
  dir: string;
  /** Control plane port on 127.0.0.1; 0 = any free port. */
  port: number;
  /** PostgreSQL port; 0 = the port of the last run if free, else any free port. */
  pgPort: number;
  heartbeatTimeoutSeconds: number;
  reset: boolean;
}

/** The other parts of jit, loaded on demand (and replaceable in tests). */
export interface DevParts {
  startServer(opts: {
    config: ServerConfig;
    configDir: string;
    logger: Logger;
  }): Promise<{ url: string; port: number; close(): Promise<void> }>;
  startAgent(opts: {
    config: AgentConfig;
    token: string;
    logger: Logger;
  }): Promise<{ close(): Promise<void>; whenConnected(): Promise<void> }>;
  hashPassword(pw: string): Promise<string>;
}

/** Load the control plane and the agent: dynamic imports keep them out of every other command's start-up. */
export async function loadParts(): Promise<DevParts> {
  const [server, agent, password] = await Promise.all([
    import('#control-plane/main.js'),
    import('#agent/main.js'),
    import('#control-plane/identity/password.js'),
  ]);
  return { startServer: server.startServer, startAgent: agent.startAgent, hashPassword: password.hashPassword };
}

export interface DevDeps {
  ctx: Pick<Ctx, 'clock' | 'env' | 'logger' | 'random'>;
  /** A progress line on stderr. */
  status(line: string): void;
  parts?: () => Promise<DevParts>;
}

export interface RunningDevInfo {
  serverUrl: string;
  serverPort: number;
  pgPort: number;
  users: DevUser[];
  agentConnected: boolean;
  /** The demo-host sshd's port, when this machine has an OpenSSH server. */
  sshPort?: number;
}

/** Thrown when a signal arrived while starting; everything started so far has been stopped. */
export class DevAborted extends Error {
  constructor() {
    super('jit dev was interrupted while starting');
  }
}

const AGENT_CONNECT_WAIT_MS = 10_000;
const STOP_AGENT_MS = 5_000;
const STOP_SERVER_MS = 5_000;
const STOP_PG_MS = 13_000;

/** Resolve true when `p` settles within `ms`, false otherwise (the work is then abandoned). */
async function within(clock: Clock, ms: number, p: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = clock.setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clock.clearTimeout(timer);
  }
}

/** One `jit dev` run: start() brings the parts up, stop() takes them down in reverse order. */
export class DevEnvironment {
  private pg: DevPostgres | undefined;
  private sshd: DevSshd | undefined;
  private server: { url: string; port: number; close(): Promise<void> } | undefined;
  private agent: { close(): Promise<void>; whenConnected(): Promise<void> } | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly deps: DevDeps,
    private readonly opts: DevOptions,
  ) {}

  /** Bring everything up; on failure or abort, stop what was started and rethrow. */
  async start(signal?: AbortSignal): Promise<RunningDevInfo> {
    try {
      return await this.startInner(signal);
    } catch (err) {
      await this.stop();
      throw signal?.aborted ? new DevAborted() : err;
    }
  }

  private async startInner(signal?: AbortSignal): Promise<RunningDevInfo> {
    const { ctx, status } = this.deps;
    const o = this.opts;
    const check = () => {
      if (signal?.aborted) throw new DevAborted();
    };

    // Fail fast on a taken control plane port, before touching files or starting PostgreSQL.
    if (o.port !== 0 && !(await portIsFree(o.port))) throw portInUse(o.port);
    if (o.reset) {
      assertDevFolder(o.dir);
      await stopLeftoverPostgres(o.dir, ctx.clock);
      removeDevFolder(o.dir);
      status(`--reset: removed ${o.dir}`);
    }
    const folder = openDevFolder(o.dir, ctx.random);
    if (folder.created) status(`created ${o.dir} with new dev users and secrets`);

    if (await stopLeftoverPostgres(o.dir, ctx.clock)) status('stopped a PostgreSQL left running by an earlier jit dev');
    let pgPort = o.pgPort;
    if (pgPort !== 0) {
      if (!(await portIsFree(pgPort))) {
        throw new JitError('JIT_PORT_IN_USE', {
          message: `Port ${pgPort} on 127.0.0.1 is already in use`,
          hint: 'pass another --pg-port, or --pg-port 0 for any free port',
        });
      }
    } else {
      const last = folder.state.pgPort;
      pgPort = last && (await portIsFree(last)) ? last : await anyFreePort();
    }
    if (folder.state.pgPort !== pgPort) folder.saveState({ ...folder.state, pgPort });
    check();

    // Load the parts and hash the passwords while PostgreSQL starts.
    const partsP = (this.deps.parts ?? loadParts)();
    const usersP = partsP.then((parts) =>
      Promise.all(folder.users.map(async (u) => ({ ...u, passwordHash: await parts.hashPassword(u.password) }))),
    );
    // Keep an early rejection from going unhandled while we wait for PostgreSQL.
    usersP.catch(() => {});
    this.pg = await startDevPostgres({
      dir: o.dir,
      port: pgPort,
      superPassword: folder.state.pgSuperPassword,
      clock: ctx.clock,
      env: ctx.env,
      status,
    });
    check();
    const { adminUrl } = await provisionDemoDb({
      superUrl: this.pg.superUrl,
      port: pgPort,
      adminPassword: ctx.random(24).toString('base64url'),
    });
    check();

    try {
      this.sshd = await startDevSshd({ dir: o.dir, clock: ctx.clock });
      if (!this.sshd) status(`no OpenSSH server at ${SSHD_PATH}: the demo-host SSH target is left out`);
    } catch (err) {
      status(`the demo sshd did not start, so demo-host is left out: ${(err as Error).message.split('\n')[0]}`);
    }
    check();

    const parts = await partsP;
    // A new agent token at every start: its hash goes to server.yaml, the token only to the agent.
    const agentToken = `jat_${ctx.random(32).toString('base64url')}`;
    const config = writeDevConfig(o.dir, {
      port: o.port,
      users: await usersP,
      agentTokenHash: agentTokenHash(agentToken),
      heartbeatTimeoutSeconds: o.heartbeatTimeoutSeconds,
      ...(this.sshd ? { sshLogin: this.sshd.login } : {}),
    });
    try {
      this.server = await parts.startServer({ config, configDir: o.dir, logger: ctx.logger });
    } catch (err) {
      if (isJitError(err) && err.code === 'JIT_PORT_IN_USE') throw portInUse(o.port, err);
      throw err;
    }
    check();

    this.agent = await parts.startAgent({
      config: devAgentConfig({
        controlPlane: this.server.url,
        pgPort,
        adminUrl,
        ...(this.sshd ? { ssh: { port: this.sshd.port, hostKeyLine: this.sshd.hostKeyLine, caKeyFile: this.sshd.caKeyFile } } : {}),
      }),
      token: agentToken,
      logger: ctx.logger,
    });
    const agentConnected = await within(ctx.clock, AGENT_CONNECT_WAIT_MS, this.agent.whenConnected());
    check();
    return {
      serverUrl: this.server.url,
      serverPort: this.server.port,
      pgPort,
      users: folder.users,
      agentConnected,
      ...(this.sshd ? { sshPort: this.sshd.port } : {}),
    };
  }

  /** Stop agent, control plane, PostgreSQL — in that order, each bounded in time. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const { ctx } = this.deps;
      const steps: Array<[string, (() => Promise<void>) | undefined, number]> = [
        ['agent', this.agent && (() => this.agent!.close()), STOP_AGENT_MS],
        ['control plane', this.server && (() => this.server!.close()), STOP_SERVER_MS],
        ['PostgreSQL', this.pg && (() => this.pg!.stop()), STOP_PG_MS],
        ['demo sshd', this.sshd && (() => this.sshd!.stop()), STOP_AGENT_MS],
      ];
      for (const [name, close, ms] of steps) {
        if (!close) continue;
        const done = await within(
          ctx.clock,
          ms,
          close().catch((err) => ctx.logger.warn({ err }, `stopping the ${name} failed`)),
        );
        if (!done) this.deps.status(`! the ${name} did not stop within ${ms / 1000}s; moving on`);
      }
    })();
    return this.stopping;
  }
}

function portInUse(port: number, cause?: unknown): JitError {
  const next = port === 8443 ? 8444 : port + 1;
  return new JitError('JIT_PORT_IN_USE', {
    message: `Port ${port} on 127.0.0.1 is already in use (is another jit dev running?)`,
    hint: `stop the other process, or pick another port: jit dev --port ${next} (npm start -- --port ${next}), then jit login --server http://127.0.0.1:${next}`,
    cause,
  });
}

export interface RunDevDeps extends DevDeps {
  ctx: Pick<Ctx, 'clock' | 'env' | 'logger' | 'random' | 'io' | 'onSignal' | 'cwd'>;
  /** The hard exit for a second Ctrl-C, or a shutdown that leaves something holding the process. */
  forceExit(code: number): void;
}

/**
 * Run `jit dev` until SIGINT/SIGTERM/SIGHUP: start, print the banner, wait, stop.
 * Returns the exit code: 0 after a clean stop, 130 when interrupted while starting.
 */
export async function runDev(deps: RunDevDeps, opts: DevOptions): Promise<number> {
  const { ctx, status } = deps;
  const env = new DevEnvironment(deps, opts);
  const abort = new AbortController();
  let signals = 0;
  let onStop!: () => void;
  const stopRequested = new Promise<void>((resolve) => {
    onStop = resolve;
  });
  const off = ctx.onSignal((sig) => {
    signals += 1;
    if (signals > 1) {
      status('second signal: exiting now (PostgreSQL may keep running; the next jit dev stops it)');
      deps.forceExit(130);
      return;
    }
    status(`${sig}: stopping the agent, the control plane and PostgreSQL… (again to force)`);
    abort.abort();
    onStop();
  });
  try {
    let info: RunningDevInfo;
    try {
      info = await env.start(abort.signal);
    } catch (err) {
      if (err instanceof DevAborted) return 130;
      throw err;
    }
    const rel = path.relative(ctx.cwd, opts.dir);
    ctx.io.stderr.write(
      bannerText({
        ...info,
        dirShown: rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : opts.dir,
        inCheckout: existsSync(path.join(ctx.cwd, 'bin', 'jit.js')),
        color: Boolean(ctx.io.stderr.isTTY) && !ctx.env['NO_COLOR'],
      }),
    );
    await stopRequested;
    await env.stop();
    status('jit dev stopped');
    // Everything we started is closed; if a stray handle still holds the event loop, do not
    // leave the user staring at a terminal that never returns. unref: a clean exit is not delayed.
    ctx.clock.setTimeout(() => deps.forceExit(0), 3_000).unref?.();
    return 0;
  } finally {
    off();
  }
}
