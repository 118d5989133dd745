/**
 * `jit server`: wires the store, identity, policy, sessions and relay together and listens.
 */

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import type { FastifyServerFactory } from 'fastify';
import type { Kysely } from 'kysely';
import { checkCustomPattern } from '#protocol/postgres/detectors.js';
import { loadYamlConfigFile } from '#shared/config/load.js';
import { Policy } from '#shared/config/policy.js';
import type { ServerConfig } from '#shared/config/server.js';
import type { Discovery } from '#shared/contract/http.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import { type Clock, systemClock } from '#shared/runtime/ctx.js';
import { VERSION } from '#shared/version.js';
import { buildApp } from './app.js';
import { ApprovalService } from './approvals/approval-service.js';
import { Webhooks } from './approvals/webhooks.js';
import { startAuditWorkers } from './audit/workers.js';
import type { TokenVerifier } from './auth.js';
import { createBuiltinIdp } from './identity/builtin-idp.js';
import { pinIdentities } from './identity/pinned.js';
import { createTokenVerifier } from './identity/verifier.js';
import { MachineIdentity, withMachineTokens } from './identity/workload.js';
import { PolicyEngine } from './policy/policy.js';
import { RecordingStore } from './recordings/store.js';
import { RelayHub } from './relay/hub.js';
import { GrantSigner } from './sessions/grants.js';
import { SessionService } from './sessions/session-service.js';
import { openSqliteStore } from './store/db.js';

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface StartServerOptions {
  config: ServerConfig;
  /** Folder that relative paths in the config are resolved against. */
  configDir: string;
  logger: Logger;
  clock?: Clock;
  random?: (n: number) => Buffer;
  /** Environment for secrets named in the config (webhooks' secretEnv); default: the process's. */
  env?: Readonly<Record<string, string | undefined>>;
  /** HTTP client for webhooks; default: the global fetch. */
  fetch?: typeof fetch;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Split `host:port` (IPv6 in brackets). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9a-f:]+\]|[^:]+):(\d{1,5})$/i.exec(listen);
  if (!m) throw new JitError('JIT_CONFIG_INVALID', { message: `listen: "${listen}" is not host:port` });
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/**
 * The built-in IdP's keys are fetched from this server's own URL. Behind TLS with a private or
 * self-signed certificate that URL is not trusted by default, so trust this server's own
 * certificate (in addition to the system roots) for those requests only.
 */
async function selfTrustingFetch(certFile: string): Promise<typeof fetch> {
  const { Agent, fetch: undiciFetch } = await import('undici');
  const { rootCertificates } = await import('node:tls');
  const dispatcher = new Agent({ connect: { ca: [...rootCertificates, readFileSync(certFile, 'utf8')] } });
  return ((input: string | URL, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
}

export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? ((n: number) => globalThis.crypto.getRandomValues(Buffer.alloc(n)) as Buffer);
  const resolve = (p: string) => path.resolve(opts.configDir, p);
  const { host, port } = parseListen(config.listen);
  if (!config.tls && !LOOPBACK.has(host)) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `listen: plain HTTP is allowed only on loopback, not on ${host}`,
      hint: 'set tls.cert and tls.key, or listen on 127.0.0.1',
    });
  }
  const policyPath = resolve(config.policy);
  const policy = loadYamlConfigFile(policyPath, Policy);
  for (const t of policy.targets) {
    if (!config.agents.some((a) => a.name === t.agent)) {
      throw new JitError('JIT_CONFIG_INVALID', {
        message: `${policyPath}: target ${t.name} names agent "${t.agent}", which is not in the server config's agents`,
      });
    }
  }
  // Custom masking patterns run on every result row at the agent: refuse ones that can backtrack
  // catastrophically here, where the operator sees the error, rather than at the agent.
  for (const rule of policy.masking) {
    for (const d of rule.detectors) {
      const problem = typeof d === 'object' ? checkCustomPattern(d.regex) : undefined;
      if (problem) {
        throw new JitError('JIT_CONFIG_INVALID', {
          message: `${policyPath}: masking rule ${rule.name}: detector regex: ${problem}`,
          hint: 'simplify the pattern (no nested quantifiers, no backreferences)',
        });
      }
    }
  }
  const dataDir = resolve(config.dataDir);
  const db = await openSqliteStore(dataDir, { synchronous: config.storage.synchronous });

  // Listen first so that port 0 resolves to a real port before the issuer URL is fixed.
  const server = config.tls
    ? https.createServer({ cert: readFileSync(resolve(config.tls.cert)), key: readFileSync(resolve(config.tls.key)) })
    : http.createServer();
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      fail(
        err.code === 'EADDRINUSE'
          ? new JitError('JIT_PORT_IN_USE', { message: `Port ${port} on ${host} is already in use`, hint: 'pick another listen port' })
          : err,
      ),
    );
    server.listen(port, host, () => ok());
  });
  const actualPort = (server.address() as AddressInfo).port;
  const scheme = config.tls ? 'https' : 'http';
  const publicUrl = (config.publicUrl ?? `${scheme}://${host.includes(':') ? `[${host}]` : host}:${actualPort}`).replace(/\/$/, '');

  const auditWorkers = await startAuditWorkers({ config: config.audit, dataDir, db, clock, logger, resolve, env: process.env });
  const audit = auditWorkers.audit;
  const idCfg = config.identity;
  let idp: Awaited<ReturnType<typeof createBuiltinIdp>> | undefined;
  let discovery: Discovery;
  if (idCfg.builtin) {
    const issuer = `${publicUrl}/oidc`;
    idp = await createBuiltinIdp({
      issuer,
      users: idCfg.builtin.users,
      // biome-ignore lint/suspicious/noExplicitAny: the IdP keeps its own table in the same database
      db: db as unknown as Kysely<any>,
      keysFile: path.join(dataDir, 'idp-keys.json'),
      clientId: 'jit-cli',
      audience: publicUrl,
      accessTokenTtl: idCfg.builtin.accessTokenTtl,
      refreshTokenTtl: idCfg.builtin.refreshTokenTtl,
      logger,
      audit: (e) => void audit.append(e),
    });
    discovery = {
      issuer,
      clientId: 'jit-cli',
      audience: publicUrl,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      apiBase: publicUrl,
      version: VERSION,
    };
  } else {
    const o = idCfg.oidc!;
    discovery = { issuer: o.issuer, clientId: o.clientId, audience: o.audience, scopes: o.scopes, apiBase: publicUrl, version: VERSION };
  }
  const userVerifier: TokenVerifier = createTokenVerifier({
    ...(idp && config.tls ? { fetch: await selfTrustingFetch(resolve(config.tls.cert)) } : {}),
    issuer: discovery.issuer,
    audience: discovery.audience,
    algorithms: idCfg.algorithms,
    clockToleranceSeconds: idCfg.clockToleranceSeconds,
    groupsClaim: idCfg.groupsClaim,
    usernameClaim: idCfg.usernameClaim,
    clientId: discovery.clientId,
  });
  // CI jobs and service accounts (POST /v1/token): their jit tokens are accepted wherever user tokens are.
  const machines = await MachineIdentity.load({
    publicUrl,
    audience: discovery.audience,
    keyFile: path.join(dataDir, 'machine-key.json'),
    workloads: config.workloads,
    serviceAccounts: config.serviceAccounts,
    ttlSeconds: config.machineTokenTtl,
    clock,
    clockToleranceSeconds: idCfg.clockToleranceSeconds,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  const verifier: TokenVerifier = withMachineTokens(pinIdentities(userVerifier, db, clock), machines);

  const policyEngine = new PolicyEngine(policy, config.sessions.maxDuration);
  const grants = await GrantSigner.load(path.join(dataDir, 'grant-key.json'), publicUrl, clock);
  let hub!: RelayHub;
  const webhooks = new Webhooks({
    db,
    audit,
    clock,
    logger,
    random,
    config: config.notifications,
    // The composition root: the one place the server's environment and fetch are picked up.
    env: opts.env ?? process.env,
    fetch: opts.fetch ?? globalThis.fetch.bind(globalThis),
    publicUrl,
  });
  const approvals = new ApprovalService({
    db,
    audit,
    policy: policyEngine,
    clock,
    random,
    admins: config.admins,
    defaultDurationSeconds: config.sessions.defaultDuration,
    notifier: webhooks,
    onStatementDecided: (agent, decision) => {
      if (!hub.sendApprovalDecision(agent, decision)) logger.warn({ agent }, 'statement decision not delivered: agent offline');
    },
  });
  const sessions = new SessionService({
    db,
    audit,
    policy: policyEngine,
    grants,
    clock,
    random,
    settings: {
      heartbeatTimeoutSeconds: config.sessions.heartbeatTimeout,
      heartbeatIntervalSeconds: Math.max(1, Math.round(config.sessions.heartbeatInterval)),
      defaultDurationSeconds: config.sessions.defaultDuration,
    },
    onEnded: (row) => hub.sessionEnded(row),
    approvals,
  });
  const recordings = new RecordingStore({ dir: path.join(dataDir, 'recordings'), audit, logger });
  hub = new RelayHub({
    agents: config.agents,
    sessions,
    grants,
    verifier,
    policy: policyEngine,
    audit,
    logger,
    clock,
    random,
    recordings,
    approvals,
  });

  // /oidc goes straight to the IdP (it parses its own bodies); everything else to fastify.
  const serverFactory: FastifyServerFactory = (handler) => {
    server.on('request', (req, res) => {
      if (idp && (req.url === '/oidc' || req.url?.startsWith('/oidc/') || req.url?.startsWith('/oidc?'))) {
        idp.handle(req, res);
      } else {
        handler(req, res);
      }
    });
    return server;
  };
  const app = buildApp({
    discovery,
    verifier,
    sessions,
    audit,
    policy: policyEngine,
    hub,
    db,
    admins: config.admins,
    recordings,
    approvals,
    machines,
    logger,
    serverFactory,
  });
  await app.ready();
  server.on('upgrade', (req, socket: Socket, head) => {
    if (!hub.handleUpgrade(req, socket, head)) socket.destroy();
  });

  // The sweeper ends sessions whose heartbeat stopped or whose time is up.
  const sweepEvery = Math.max(250, Math.min(5000, (config.sessions.heartbeatTimeout * 1000) / 4));
  const sweeper = clock.setInterval(() => {
    sessions.sweep().catch((err) => logger.error({ err }, 'session sweep failed'));
  }, sweepEvery);
  sweeper.unref?.();
  // Requests expire on read as well; this catches the ones nobody looks at (and tells webhooks).
  let requestSweep: Promise<void> | undefined;
  const requestSweeper = clock.setInterval(() => {
    requestSweep ??= approvals
      .sweep()
      .catch((err) => logger.error({ err }, 'request sweep failed'))
      .finally(() => {
        requestSweep = undefined;
      });
  }, 1000);
  requestSweeper.unref?.();
  await sessions.sweep();
  await approvals.sweep();
  // Notifications left undelivered by a previous run resume here.
  webhooks.start();
  await audit.append({ type: 'server.started', outcome: 'info', data: { url: publicUrl, version: VERSION } });
  // Checkpoint timer, retention and forwarding (from the durable cursors).
  await auditWorkers.start();
  logger.info({ url: publicUrl }, 'control plane listening');

  let closing: Promise<void> | undefined;
  return {
    url: publicUrl,
    port: actualPort,
    close() {
      closing ??= (async () => {
        clock.clearInterval(sweeper);
        clock.clearInterval(requestSweeper);
        await requestSweep;
        await webhooks.close();
        await hub.close();
        await app.close().catch(() => {});
        // Forwarding stops, queued events commit and a last checkpoint seals the chain.
        await auditWorkers.close();
        server.closeAllConnections?.();
        await new Promise<void>((r) => server.close(() => r()));
        await idp?.close().catch(() => {});
        await db.destroy();
      })();
      return closing;
    },
  };
}
