/**
 * The relay hub: agents' control channels, and the streams that join a CLI connection to an
 * agent connection for one session.
 *
 * Order for a relay stream (fixed; each step MUST pass before the next):
 *   1. the grant verifies (signature, audience, issuer, expiry)          → else 401
 *   2. the user's access token verifies and names the grant's subject     → else 401
 *   3. the session row exists, is active and belongs to that subject      → else 401 / 410
 *   4. the session's agent is connected                                   → else 503
 *   5. the agent dials back the stream within the timeout                 → else 503 / 504
 *   6. only then both sides get `101` and bytes flow.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import {
  AGENT_MAX_CONTROL_MESSAGE,
  type AgentApprovalCancel,
  type AgentApprovalRequest,
  AgentToServer,
  type ServerApprovalDecision,
  type ServerToAgent,
  type SessionInfo,
} from '#shared/contract/agent.js';
import { isErrorCode } from '#shared/errors/codes.js';
import { JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { TokenVerifier } from '../auth.js';
import type { PolicyEngine } from '../policy/policy.js';
import type { RecordingStore } from '../recordings/store.js';
import type { GrantSigner } from '../sessions/grants.js';
import { endedError, type SessionService } from '../sessions/session-service.js';
import type { SessionsTable } from '../store/db.js';
import { RELAY_ACCESS_TOKEN_HEADER } from '#shared/contract/http.js';
import { acceptStreamUpgrade, bearerToken, rejectUpgrade, wantsStreamUpgrade } from './raw-http.js';
import { type Spliced, splice } from './splice.js';
import { ID_PATTERN } from '#shared/contract/ids.js';

export interface HubDeps {
  agents: { name: string; tokenHash: string }[];
  sessions: SessionService;
  grants: GrantSigner;
  /** Verifies the user's access token that accompanies every relay request. */
  verifier: TokenVerifier;
  policy: PolicyEngine;
  audit: AuditLog;
  logger: Logger;
  clock: Clock;
  random(bytes: number): Buffer;
  /** How long the agent has to dial back a stream. */
  streamTimeoutMs?: number;
  /** Interval of websocket pings to agents; an agent that misses two is dropped. */
  pingIntervalMs?: number;
  /** Where agents' recording.chunk messages are stored (SSH sessions). */
  recordings?: Pick<RecordingStore, 'append'>;
  /** Statement approvals: where the agents' approval.request / approval.cancel go (approvals/). */
  approvals?: {
    fileStatement(agent: string, msg: AgentApprovalRequest, session: SessionsTable | undefined): Promise<void>;
    cancelStatement(agent: string, msg: AgentApprovalCancel): Promise<void>;
  };
}

interface ConnectedAgent {
  name: string;
  ws: WebSocket;
  version: string;
  capabilities: string[];
  targets: Set<string>;
  alive: boolean;
  remote: string;
}

interface PendingStream {
  agent: string;
  sessionId: string;
  resolve(v: { socket: Socket; head: Buffer }): void;
  reject(e: JitError): void;
  timer: NodeJS.Timeout;
}

const AGENT_CONNECT = '/v1/agent/connect';
/** Capability an agent advertises when it inspects PostgreSQL sessions (issue 3). */
export const INSPECT_CAPABILITY = 'postgres.inspect';
/** Capability an agent advertises when it serves SSH targets (certificates, guardrails, recording). */
export const SSH_CAPABILITY = 'ssh';
const AGENT_STREAM = /^\/v1\/agent\/streams\/([A-Za-z0-9_-]{16,64})$/;
const RELAY = new RegExp(`^/v1/relay/(${ID_PATTERN.source.slice(1, -1)})$`);

export class RelayHub {
  private readonly agents = new Map<string, ConnectedAgent>();
  private readonly pending = new Map<string, PendingStream>();
  private readonly owners = new Map<string, { agent: string; username: string; target: string }>();
  private readonly streams = new Map<string, Set<Spliced>>();
  private readonly wss: WebSocketServer;
  private readonly pinger: NodeJS.Timeout;
  private readonly tokenHashes: { name: string; hash: Buffer }[];

  constructor(private readonly deps: HubDeps) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: AGENT_MAX_CONTROL_MESSAGE });
    this.tokenHashes = deps.agents.map((a) => ({
      name: a.name,
      hash: Buffer.from(a.tokenHash.slice('sha256:'.length), 'hex'),
    }));
    this.pinger = deps.clock.setInterval(() => this.pingAgents(), deps.pingIntervalMs ?? 15_000);
    this.pinger.unref?.();
  }

  /** Whether an agent serving this target is connected. */
  isOnline(agent: string): boolean {
    return this.agents.has(agent);
  }

  /** Handle an HTTP upgrade; returns false when the path is not ours. */
  handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): boolean {
    const url = (req.url ?? '').split('?')[0] ?? '';
    socket.on('error', () => socket.destroy());
    if (url === AGENT_CONNECT) {
      void this.onAgentConnect(req, socket, head);
      return true;
    }
    const s = AGENT_STREAM.exec(url);
    if (s) {
      void this.onAgentStream(req, socket, head, s[1]!);
      return true;
    }
    const r = RELAY.exec(url);
    if (r) {
      void this.onRelay(req, socket, head, r[1]!).catch((err) => rejectUpgrade(socket, err));
      return true;
    }
    return false;
  }

  /** A session ended: close its streams here and tell its agent to destroy the credential. */
  sessionEnded(row: SessionsTable): void {
    for (const s of this.streams.get(row.id) ?? []) s.destroy();
    this.streams.delete(row.id);
    this.send(row.agent, {
      type: 'session.end',
      session: row.id,
      target: row.target,
      reason: row.end_reason ?? 'exit',
    });
  }

  /** Send a statement decision to the agent holding the statement; false when it is not connected. */
  sendApprovalDecision(agent: string, decision: ServerApprovalDecision): boolean {
    return this.send(agent, decision);
  }

  /** Open stream counts (for status and tests). */
  streamCount(sessionId?: string): number {
    if (sessionId) return this.streams.get(sessionId)?.size ?? 0;
    let n = 0;
    for (const set of this.streams.values()) n += set.size;
    return n;
  }

  async close(): Promise<void> {
    this.deps.clock.clearInterval(this.pinger);
    for (const p of this.pending.values()) p.reject(new JitError('JIT_TARGET_UNREACHABLE'));
    for (const set of this.streams.values()) for (const s of set) s.destroy();
    for (const a of this.agents.values()) a.ws.close(1001, 'control plane shutting down');
    this.wss.close();
  }

  // ---- agents

  private authenticateAgent(req: IncomingMessage): string | undefined {
    const token = bearerToken(req);
    if (!token) return undefined;
    const h = createHash('sha256').update(token).digest();
    let found: string | undefined;
    // Compare with every configured hash so timing does not reveal which one matched.
    for (const t of this.tokenHashes) {
      if (t.hash.length === h.length && timingSafeEqual(t.hash, h)) found = t.name;
    }
    return found;
  }

  private async onAgentConnect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const name = this.authenticateAgent(req);
    const remote = req.socket.remoteAddress ?? '';
    if (!name) {
      await this.deps.audit.append({ type: 'agent.auth-failed', outcome: 'failure', data: { remote } });
      this.deps.logger.warn({ remote }, 'agent connection refused: bad token');
      rejectUpgrade(socket, new JitError('JIT_AGENT_AUTH_FAILED'));
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onAgentSocket(name, ws, remote));
  }

  private onAgentSocket(name: string, ws: WebSocket, remote: string): void {
    let agent: ConnectedAgent | undefined;
    const helloTimer = this.deps.clock.setTimeout(() => {
      if (!agent) ws.close(4400, 'no hello');
    }, 10_000);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) return void ws.close(4400, 'binary control frame');
      let msg: AgentToServer;
      try {
        msg = AgentToServer.parse(JSON.parse(data.toString()));
      } catch {
        this.deps.logger.warn({ agent: name }, 'agent sent an invalid control message; closing');
        return void ws.close(4400, 'invalid message');
      }
      if (!agent) {
        if (msg.type !== 'hello') return void ws.close(4400, 'hello first');
        this.deps.clock.clearTimeout(helloTimer);
        agent = this.registerAgent(name, ws, remote, msg);
        return;
      }
      void this.onAgentMessage(agent, msg).catch((err) => this.deps.logger.error({ err, agent: name }, 'handling agent message failed'));
    });
    ws.on('pong', () => {
      if (agent) agent.alive = true;
    });
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      this.deps.clock.clearTimeout(helloTimer);
      if (agent && this.agents.get(name) === agent) {
        this.agents.delete(name);
        for (const [id, p] of this.pending) {
          if (p.agent === name) {
            this.pending.delete(id);
            p.reject(new JitError('JIT_AGENT_UNAVAILABLE'));
          }
        }
        void this.deps.audit.append({ type: 'agent.disconnected', actor: `agent:${name}`, data: { remote } });
      }
    });
  }

  private registerAgent(name: string, ws: WebSocket, remote: string, hello: Extract<AgentToServer, { type: 'hello' }>): ConnectedAgent {
    const allowed = new Set(this.deps.policy.targetsOfAgent(name).map((t) => t.name));
    const targets = new Set(hello.targets.map((t) => t.name).filter((t) => allowed.has(t)));
    const previous = this.agents.get(name);
    if (previous) previous.ws.close(4409, 'replaced by a new connection');
    const agent: ConnectedAgent = {
      name,
      ws,
      version: hello.version,
      capabilities: hello.capabilities,
      targets,
      alive: true,
      remote,
    };
    this.agents.set(name, agent);
    this.sendTo(agent, { type: 'welcome', agent: name, heartbeatSeconds: 15 });
    void this.deps.audit.append({
      type: 'agent.connected',
      actor: `agent:${name}`,
      outcome: 'success',
      data: { remote, version: hello.version, targets: [...targets], ignoredTargets: hello.targets.length - targets.size },
    });
    return agent;
  }

  private async onAgentMessage(agent: ConnectedAgent, msg: AgentToServer): Promise<void> {
    switch (msg.type) {
      case 'hello':
        return;
      case 'pong':
        agent.alive = true;
        return;
      case 'stream.failed': {
        const p = this.pending.get(msg.streamId);
        if (!p || p.agent !== agent.name) return;
        this.pending.delete(msg.streamId);
        const code = isErrorCode(msg.code) ? msg.code : 'JIT_TARGET_UNREACHABLE';
        p.reject(new JitError(code, { message: msg.message.slice(0, 300) || undefined }));
        return;
      }
      case 'approval.request': {
        if (!this.deps.approvals) {
          // No approvals workflow here: refuse at once rather than leave the statement held.
          this.sendTo(agent, {
            type: 'approval.decision',
            requestId: msg.requestId,
            decision: 'denied',
            digest: msg.digest,
            reason: 'approvals are not available on this control plane',
          });
          return;
        }
        await this.deps.approvals.fileStatement(agent.name, msg, await this.deps.sessions.get(msg.session));
        return;
      }
      case 'approval.cancel':
        await this.deps.approvals?.cancelStatement(agent.name, msg);
        return;
      case 'recording.chunk': {
        const row = await this.deps.sessions.get(msg.session);
        // An agent may only record its own sessions.
        if (!row || row.agent !== agent.name || !this.deps.recordings) {
          this.deps.logger.warn({ agent: agent.name }, 'recording chunk refused');
          return;
        }
        await this.deps.recordings.append(msg, { agent: agent.name, actor: row.username, target: row.target });
        return;
      }
      case 'sessions.live?': {
        const live = await this.deps.sessions.liveOf(msg.sessions, agent.name);
        this.sendTo(agent, { type: 'sessions.live', requestId: msg.requestId, live });
        return;
      }
      case 'event': {
        let actor: string | undefined;
        let target = msg.target;
        if (msg.session) {
          const owner = await this.sessionOwner(msg.session);
          // An agent may only speak about its own sessions.
          if (!owner || owner.agent !== agent.name) {
            this.deps.logger.warn({ agent: agent.name, event: msg.event }, 'agent event for a session it does not serve');
            return;
          }
          actor = owner.username;
          target = owner.target;
        }
        await this.deps.audit.append({
          type: msg.event,
          actor,
          target,
          session: msg.session,
          outcome: msg.outcome,
          data: { ...msg.data, agent: agent.name },
        });
        return;
      }
    }
  }

  /**
   * Who a session belongs to, for attributing agent events. These fields never change, so they
   * are cached: agents report every statement, and a store lookup per event would cost more than
   * the event itself.
   */
  private async sessionOwner(id: string): Promise<{ agent: string; username: string; target: string } | undefined> {
    const hit = this.owners.get(id);
    if (hit) return hit;
    const row = await this.deps.sessions.get(id);
    if (!row) return undefined;
    const owner = { agent: row.agent, username: row.username, target: row.target };
    if (this.owners.size >= 10_000) this.owners.delete(this.owners.keys().next().value as string);
    this.owners.set(id, owner);
    return owner;
  }

  private pingAgents(): void {
    for (const a of this.agents.values()) {
      if (!a.alive) {
        a.ws.terminate();
        continue;
      }
      a.alive = false;
      a.ws.ping();
    }
  }

  private send(agentName: string, msg: ServerToAgent): boolean {
    const a = this.agents.get(agentName);
    if (!a) return false;
    this.sendTo(a, msg);
    return true;
  }

  private sendTo(a: ConnectedAgent, msg: ServerToAgent): void {
    if (a.ws.readyState === WebSocket.OPEN) a.ws.send(JSON.stringify(msg));
  }

  // ---- streams

  private async onAgentStream(req: IncomingMessage, socket: Socket, head: Buffer, streamId: string): Promise<void> {
    const name = this.authenticateAgent(req);
    if (!name || !wantsStreamUpgrade(req)) {
      rejectUpgrade(socket, new JitError(name ? 'JIT_USAGE' : 'JIT_AGENT_AUTH_FAILED'));
      return;
    }
    const p = this.pending.get(streamId);
    if (!p || p.agent !== name) {
      rejectUpgrade(socket, new JitError('JIT_SESSION_NOT_FOUND', { message: 'No such stream' }));
      return;
    }
    this.pending.delete(streamId);
    this.deps.clock.clearTimeout(p.timer);
    acceptStreamUpgrade(socket);
    p.resolve({ socket, head });
  }

  private openStream(agent: ConnectedAgent, session: SessionInfo): Promise<{ socket: Socket; head: Buffer }> {
    const streamId = this.deps.random(18).toString('base64url');
    return new Promise((resolve, reject) => {
      const timer = this.deps.clock.setTimeout(() => {
        this.pending.delete(streamId);
        reject(
          new JitError('JIT_TARGET_UNREACHABLE', {
            message: `The agent for ${session.target} did not open the connection in time`,
          }),
        );
      }, this.deps.streamTimeoutMs ?? 15_000);
      this.pending.set(streamId, { agent: agent.name, sessionId: session.id, resolve, reject, timer });
      this.sendTo(agent, { type: 'stream.open', streamId, session });
    });
  }

  private async onRelay(req: IncomingMessage, socket: Socket, head: Buffer, sessionId: string): Promise<void> {
    if (!wantsStreamUpgrade(req)) throw new JitError('JIT_USAGE', { message: 'Expected Upgrade: jit-stream/1' });
    const token = bearerToken(req);
    if (!token) throw new JitError('JIT_GRANT_INVALID');
    const claims = await this.deps.grants.verify(token);
    const accessToken = req.headers[RELAY_ACCESS_TOKEN_HEADER];
    if (typeof accessToken !== 'string' || accessToken.length === 0) throw new JitError('JIT_AUTH_REQUIRED');
    const principal = await this.deps.verifier.verify(accessToken);
    const row = await this.deps.sessions.get(sessionId);
    if (
      !row ||
      claims.sid !== sessionId ||
      row.subject !== claims.sub ||
      principal.subject !== row.subject ||
      principal.issuer !== row.issuer
    ) {
      await this.deps.audit.append({
        type: 'relay.refused',
        actor: principal.username,
        session: sessionId,
        outcome: 'failure',
        data: { reason: 'grant does not match the session' },
      });
      throw new JitError('JIT_GRANT_INVALID');
    }
    if (row.state !== 'active' || Number(row.expires_at) <= this.deps.clock.now()) throw endedError(row);
    const agent = this.agents.get(row.agent);
    if (!agent || !agent.targets.has(row.target)) {
      throw new JitError('JIT_AGENT_UNAVAILABLE', {
        message: `The agent serving ${row.target} is not connected`,
      });
    }
    let closedEarly = false;
    socket.once('close', () => {
      closedEarly = true;
    });
    const info = this.deps.sessions.sessionInfo(row);
    if (info.inspection) {
      const rules = info.inspection;
      const hasRules = rules.guardrails.length + rules.masking.length > 0;
      if (!agent.capabilities.includes(INSPECT_CAPABILITY)) {
        // An agent that cannot enforce the session's rules must not carry it: fail closed.
        if (hasRules) {
          throw new JitError('JIT_AGENT_UNAVAILABLE', {
            message: `The agent serving ${row.target} is too old to enforce this session's guardrails and masking`,
            hint: 'upgrade the jit agent',
          });
        }
        delete info.inspection;
      }
    }
    if (row.target_type === 'ssh' && (!info.ssh || !agent.capabilities.includes(SSH_CAPABILITY))) {
      // Without its rules, or on an agent that cannot enforce them, an SSH session must not run.
      throw new JitError('JIT_AGENT_UNAVAILABLE', {
        message: `The agent serving ${row.target} cannot serve SSH sessions with certificates, guardrails and recording`,
        hint: 'upgrade the jit agent',
      });
    }
    const upstream = await this.openStream(agent, info);
    if (closedEarly) {
      upstream.socket.destroy();
      return;
    }
    acceptStreamUpgrade(socket);
    const spliced = splice(socket, upstream.socket, head, upstream.head);
    let set = this.streams.get(sessionId);
    if (!set) {
      set = new Set();
      this.streams.set(sessionId, set);
    }
    set.add(spliced);
    void spliced.closed.then(() => {
      set.delete(spliced);
      if (set.size === 0 && this.streams.get(sessionId) === set) this.streams.delete(sessionId);
    });
  }
}
