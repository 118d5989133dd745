/**
 * The agent's outbound connections to the control plane: the control WebSocket (hello, events,
 * pings, reconnect with backoff) and data streams (HTTP upgrade to jit-stream/1).
 *
 * Every incoming control message is validated with the contract's schema; anything else is
 * logged (type only, never the payload) and ignored. The agent token goes only into the
 * Authorization header and is never logged.
 */
import { randomBytes, randomInt } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { type RawData, WebSocket } from 'ws';
import { AGENT_MAX_CONTROL_MESSAGE, AgentEvent, type AgentToServer, ServerToAgent } from '#shared/contract/agent.js';
import { STREAM_UPGRADE_PROTOCOL } from '#shared/contract/http.js';
import { errorFromBody, JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { AgentEventInput } from './events.js';
import { readJsonBody } from '#shared/http/read-json-body.js';

/** Close code the control plane uses when it refuses the agent token. */
export const CLOSE_TOKEN_REFUSED = 4401;

/** `<base>/<path>` keeping any path prefix of the base URL; http→ws, https→wss when `ws` is set. */
export function controlPlaneUrl(base: string, path: string, ws = false): URL {
  const u = new URL(base);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}${path}`;
  u.search = '';
  u.hash = '';
  if (ws) u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u;
}

export interface ControlChannelOptions {
  controlPlane: string;
  token: string;
  /** Extra CA (PEM) to trust for the control plane's TLS. */
  ca?: Buffer;
  /** The hello to send on every (re)connection. */
  hello: Extract<AgentToServer, { type: 'hello' }>;
  /** stream.open and session.end (ping, welcome and sessions.live are handled here). */
  onMessage(msg: ServerToAgent): void;
  /** Called after each successful connection (hello sent). */
  onConnected?(): void;
  /** Called when an open connection is lost (statements held for approval are refused then). */
  onDisconnected?(): void;
  logger: Logger;
  clock: Clock;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A connection open this long resets the backoff. */
  stableAfterMs?: number;
  /** Events kept while disconnected; the oldest are dropped beyond this. */
  maxQueuedEvents?: number;
}

type LiveWaiter = { resolve(v: string[] | undefined): void; timer: NodeJS.Timeout };

/** The control WebSocket, kept connected until close(). */
export class ControlChannel {
  private ws: WebSocket | undefined;
  /** The TCP/TLS socket each WebSocket runs on (corked to batch event writes). */
  private readonly wsSocket = new WeakMap<WebSocket, Socket>();
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private lastSeen = 0;
  private heartbeatMs = 0;
  private openedAt = 0;
  private readonly queue: AgentToServer[] = [];
  private droppedEvents = 0;
  private readonly liveWaiters = new Map<string, LiveWaiter>();
  private connectedWaiters: (() => void)[] = [];
  private corked: Socket | undefined;

  constructor(private readonly opts: ControlChannelOptions) {}

  /** Start connecting (returns at once; reconnects forever until close()). */
  start(): void {
    this.connect();
  }

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Resolves once the channel is connected (now, or the next time it connects). */
  whenConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  /** Send now if connected; returns false otherwise. */
  send(msg: AgentToServer): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    this.batchWrites(ws);
    ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Statement events come in bursts (executed + completed per statement, many statements per
   * chunk): they leave in one socket write per burst instead of one each. The socket is corked
   * on the first send and uncorked by flush() (the engine calls it before it forwards anything,
   * so audit bytes reach the kernel first) or at the end of the current task at the latest.
   */
  private batchWrites(ws: WebSocket): void {
    if (this.corked) return;
    const sock = this.wsSocket.get(ws);
    if (!sock) return;
    sock.cork();
    this.corked = sock;
    queueMicrotask(() => this.flush());
  }

  /** Write out events batched so far (see batchWrites). */
  flush(): void {
    const sock = this.corked;
    if (!sock) return;
    this.corked = undefined;
    sock.uncork();
  }

  /** Report an audit event; queued (bounded) while disconnected. */
  emit(e: AgentEventInput): void {
    const parsed = AgentEvent.safeParse({ type: 'event', ...e, data: e.data ?? {} });
    if (!parsed.success) {
      this.opts.logger.warn({ event: e.event }, 'dropping an event that does not fit the contract');
      return;
    }
    if (this.send(parsed.data)) return;
    this.queue.push(parsed.data);
    const max = this.opts.maxQueuedEvents ?? 1000;
    while (this.queue.length > max) {
      this.queue.shift();
      this.droppedEvents++;
    }
  }

  /** Ask which sessions are live; undefined when not connected or no answer in time. */
  askLive(sessions: string[], timeoutMs = 10_000): Promise<string[] | undefined> {
    if (!this.connected) return Promise.resolve(undefined);
    const chunks: string[][] = [];
    for (let i = 0; i < sessions.length; i += 10_000) chunks.push(sessions.slice(i, i + 10_000));
    return Promise.all(chunks.map((c) => this.askLiveChunk(c, timeoutMs))).then((answers) =>
      answers.some((a) => a === undefined) ? undefined : answers.flatMap((a) => a ?? []),
    );
  }

  private askLiveChunk(sessions: string[], timeoutMs: number): Promise<string[] | undefined> {
    const requestId = randomBytes(9).toString('base64url');
    return new Promise((resolve) => {
      const timer = this.opts.clock.setTimeout(() => {
        this.liveWaiters.delete(requestId);
        resolve(undefined);
      }, timeoutMs);
      this.liveWaiters.set(requestId, { resolve, timer });
      if (!this.send({ type: 'sessions.live?', requestId, sessions })) {
        this.opts.clock.clearTimeout(timer);
        this.liveWaiters.delete(requestId);
        resolve(undefined);
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.opts.clock.clearTimeout(this.reconnectTimer);
    this.opts.clock.clearInterval(this.watchdog);
    for (const [id, w] of this.liveWaiters) {
      this.opts.clock.clearTimeout(w.timer);
      w.resolve(undefined);
      this.liveWaiters.delete(id);
    }
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.OPEN) ws.close(1001, 'agent shutting down');
      else ws.terminate();
      const t = this.opts.clock.setTimeout(() => {
        ws.terminate();
        resolve();
      }, 2_000);
      t.unref?.();
    });
  }

  private connect(): void {
    if (this.closed) return;
    const { logger } = this.opts;
    const url = controlPlaneUrl(this.opts.controlPlane, '/v1/agent/connect', true);
    let status: number | undefined;
    const ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${this.opts.token}` },
      maxPayload: AGENT_MAX_CONTROL_MESSAGE,
      ca: this.opts.ca,
      handshakeTimeout: 10_000,
      perMessageDeflate: false,
    });
    this.ws = ws;
    // The socket under the WebSocket, from ws's public 'upgrade' event (the HTTP response's socket).
    ws.on('upgrade', (res) => {
      if (res.socket) this.wsSocket.set(ws, res.socket as Socket);
    });
    ws.on('unexpected-response', (_req, res) => {
      status = res.statusCode;
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => logger.debug({ err: err.message }, 'control connection error'));
    ws.on('open', () => {
      this.openedAt = this.opts.clock.now();
      this.lastSeen = this.openedAt;
      ws.send(JSON.stringify(this.opts.hello));
      for (const m of this.queue.splice(0)) ws.send(JSON.stringify(m));
      if (this.droppedEvents > 0) {
        logger.warn({ dropped: this.droppedEvents }, 'events were dropped while the control plane was unreachable');
        this.droppedEvents = 0;
      }
      logger.info({ url: url.origin }, 'connected to the control plane');
      for (const w of this.connectedWaiters.splice(0)) w();
      this.opts.onConnected?.();
    });
    ws.on('ping', () => {
      this.lastSeen = this.opts.clock.now();
    });
    ws.on('message', (data: RawData, isBinary: boolean) => this.onRaw(data, isBinary));
    ws.on('close', (code: number) => {
      if (this.ws !== ws) return;
      this.opts.clock.clearInterval(this.watchdog);
      this.watchdog = undefined;
      const wasOpen = this.openedAt > 0;
      if (wasOpen) this.opts.onDisconnected?.();
      const stable = wasOpen && this.opts.clock.now() - this.openedAt >= (this.opts.stableAfterMs ?? 10_000);
      this.openedAt = 0;
      if (stable) this.attempt = 0;
      for (const [id, w] of this.liveWaiters) {
        this.opts.clock.clearTimeout(w.timer);
        w.resolve(undefined);
        this.liveWaiters.delete(id);
      }
      if (this.closed) return;
      const refused = code === CLOSE_TOKEN_REFUSED || status === 401;
      if (refused) logger.error({ url: url.origin }, 'the control plane refused the agent token; retrying');
      else if (wasOpen) logger.warn({ code }, 'control connection closed; reconnecting');
      this.scheduleReconnect(refused);
    });
  }

  private scheduleReconnect(atCap: boolean): void {
    const base = this.opts.baseDelayMs ?? 250;
    const cap = this.opts.maxDelayMs ?? 10_000;
    const ceiling = atCap ? cap : Math.min(cap, base * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    // Equal jitter: half fixed, half random, so a fleet of agents does not reconnect in lockstep.
    const delay = Math.round(ceiling / 2 + randomInt(0, Math.max(1, Math.floor(ceiling / 2))));
    this.reconnectTimer = this.opts.clock.setTimeout(() => this.connect(), delay);
  }

  private onRaw(data: RawData, isBinary: boolean): void {
    this.lastSeen = this.opts.clock.now();
    if (isBinary) {
      this.opts.logger.warn('ignoring a binary control message');
      return;
    }
    let parsed: ReturnType<typeof ServerToAgent.safeParse>;
    try {
      parsed = ServerToAgent.safeParse(JSON.parse(data.toString()));
    } catch {
      this.opts.logger.warn('ignoring a control message that is not JSON');
      return;
    }
    if (!parsed.success) {
      this.opts.logger.warn('ignoring a control message that does not fit the contract');
      return;
    }
    const msg = parsed.data;
    switch (msg.type) {
      case 'ping':
        this.send({ type: 'pong', t: msg.t });
        return;
      case 'welcome':
        this.armWatchdog(msg.heartbeatSeconds * 1000);
        return;
      case 'sessions.live': {
        const w = this.liveWaiters.get(msg.requestId);
        if (!w) return;
        this.liveWaiters.delete(msg.requestId);
        this.opts.clock.clearTimeout(w.timer);
        w.resolve(msg.live);
        return;
      }
      default:
        this.opts.onMessage(msg);
    }
  }

  /** Drop a connection that has gone silent for three heartbeats (half-open TCP). */
  private armWatchdog(heartbeatMs: number): void {
    this.heartbeatMs = heartbeatMs;
    this.opts.clock.clearInterval(this.watchdog);
    this.watchdog = this.opts.clock.setInterval(() => {
      if (this.opts.clock.now() - this.lastSeen > 3 * this.heartbeatMs) {
        this.opts.logger.warn('control connection silent for three heartbeats; reconnecting');
        this.ws?.terminate();
      }
    }, heartbeatMs);
    this.watchdog.unref?.();
  }
}

export interface DialStreamOptions {
  controlPlane: string;
  token: string;
  streamId: string;
  ca?: Buffer;
  clock: Clock;
  timeoutMs?: number;
}

/** Dial `GET /v1/agent/streams/<id>` with `Upgrade: jit-stream/1`; resolves with the raw socket after 101. */
export function dialStream(opts: DialStreamOptions): Promise<Socket> {
  const url = controlPlaneUrl(opts.controlPlane, `/v1/agent/streams/${encodeURIComponent(opts.streamId)}`);
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: JitError) => {
      if (settled) return;
      settled = true;
      opts.clock.clearTimeout(timer);
      reject(e);
    };
    const req = mod.request(url, {
      method: 'GET',
      headers: {
        Authorization: `Bearer ${opts.token}`,
        Connection: 'Upgrade',
        Upgrade: STREAM_UPGRADE_PROTOCOL,
      },
      ca: opts.ca,
      agent: false,
    });
    const timer = opts.clock.setTimeout(() => {
      fail(new JitError('JIT_TARGET_UNREACHABLE', { detail: 'stream dial timed out' }));
      req.destroy();
    }, opts.timeoutMs ?? 10_000);
    req.on('upgrade', (res, socket, head) => {
      if (settled || res.statusCode !== 101) {
        socket.destroy();
        fail(new JitError('JIT_TARGET_UNREACHABLE', { detail: `stream upgrade answered ${res.statusCode}` }));
        return;
      }
      settled = true;
      opts.clock.clearTimeout(timer);
      socket.setNoDelay(true);
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.on('response', (res) => {
      void readJsonBody(res, 16 * 1024).then((body) =>
        fail(errorFromBody(body, res.statusCode === 401 ? 'JIT_AGENT_AUTH_FAILED' : 'JIT_TARGET_UNREACHABLE')),
      );
    });
    req.on('error', (err) => fail(new JitError('JIT_TARGET_UNREACHABLE', { detail: err.message, cause: err })));
    req.end();
  });
}
