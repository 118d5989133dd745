/**
 * SSH engine for one jit stream of an SSH session (the socket is the CLI's side of the stream).
 *
 * Order (fixed; each step MUST pass before the next):
 *   1. the session carries SSH rules (SessionInfo.ssh) — else refuse: nothing says who to log in as;
 *   2. read the REQUEST frame (bounded, 30 s);
 *   3. pass the SSH gate (src/protocol/ssh/admit.ts: judge → policy → approval → recorder): a
 *      refusal is audited (`command.blocked`) before the user hears of it, and NEVER reaches the host;
 *   4. mint (or reuse) the session's certificate, log in to sshd with it, host key checked;
 *   5. audit `command.started` / `shell.started`, start recording, only then run it;
 *   6. relay frames ↔ the SSH channel; at the end audit `command.executed` with the exit status.
 * `stdio` mode hands the stream to the agent's own SSH server (bridge.ts), which applies 3–6 per
 * channel of the user's OpenSSH client, through the same gate and the same hooks (gate.ts).
 */
import type { HostUsers } from './host-users.js';
import type { Duplex } from 'node:stream';
import type ssh2 from 'ssh2';
import { admitSsh, type SshAsk, type SshOutcome } from '#protocol/ssh/admit.js';
import type { AgentSshTarget } from '#shared/config/agent.js';
import type { SessionInfo, SshSessionRules } from '#shared/contract/agent.js';
import { encodeFrame, FrameDecoder, FrameType, SSH_BLOCKED_STATUS, SshExit, SshRequest } from '#shared/contract/ssh-stream.js';
import { isJitError, JitError } from '#shared/errors/jit-error.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';
import type { SshCa, SshCredentials } from '../../credentials/ssh-ca.js';
import type { AwaitApproval } from '../inspect/approval.js';
import type { EmitEvent } from '../../events.js';
import type { LiveStream, StreamRegistry } from '../../streams.js';
import { runBridge } from './bridge.js';
import { sshGateHooks } from './gate.js';
import type { AgentRecordings } from './recorder.js';
import { connectUpstream, loginFailure } from './upstream.js';

export interface SshTargetRef {
  name: string;
  config: AgentSshTarget;
  hostKeys: Buffer[];
  ca: SshCa;
}

export interface SshEngineDeps {
  credentials: SshCredentials;
  recordings: AgentRecordings;
  registry: StreamRegistry;
  emit: EmitEvent;
  logger: Logger;
  clock: Clock;
  random(n: number): Buffer;
  /** How long the CLI has to send its request (default 30 s). */
  requestTimeoutMs?: number;
  /**
   * The hold point for `require-approval` commands and shells (the agent's StatementApprovals).
   * Without it such a command is refused, as before approvals existed.
   */
  approve?: AwaitApproval;
  /** False while audit events cannot reach the control plane: nothing starts (fail closed). */
  recorderReady?: () => boolean;
  /** Per-session host accounts, for targets configured with hostUsers. */
  hostUsers?: HostUsers;
  /** Endpoints jit guards itself (the agent's database targets): port forwarding never reaches them. */
  guarded?: readonly { host: string; port: number }[];
}

/** Signals the CLI may forward (ssh's own list, RFC 4254 §6.10, minus the exotic). */
const SIGNALS = new Set(['INT', 'TERM', 'HUP', 'QUIT', 'KILL', 'USR1', 'USR2', 'ALRM', 'PIPE']);

/** Run the engine for one stream; resolves when it is over. */
export async function handleSshClient(
  socket: Duplex,
  session: SessionInfo,
  target: SshTargetRef,
  deps: SshEngineDeps,
  opts: { streamId: string },
): Promise<void> {
  let client: ssh2.Client | undefined;
  const stream: LiveStream = {
    id: opts.streamId,
    sessionId: session.id,
    target: target.name,
    destroy() {
      socket.destroy();
      client?.end();
    },
  };
  deps.registry.add(stream);
  socket.on('error', () => stream.destroy());
  // The certificate outlives a connection only until its expiry; sshd does not end open sessions
  // when it expires, so the agent does.
  const left = Date.parse(session.expiresAt) - deps.clock.now();
  const expiry = deps.clock.setTimeout(() => stream.destroy(), Math.max(0, Math.min(left, 2 ** 31 - 1)));
  try {
    const rules = session.ssh;
    if (!rules) {
      sendExit(socket, { error: { code: 'JIT_AGENT_UNAVAILABLE', message: 'The session carries no SSH rules; refusing' } });
      return;
    }
    const first = await readRequest(socket, deps.clock, deps.requestTimeoutMs ?? 30_000);
    if (!first) return;
    const { request, rest } = first;
    if (request.mode === 'stdio') {
      if (rest.length) socket.unshift(rest);
      await runBridge(
        socket,
        session,
        rules,
        target,
        deps,
        (c) => {
          client = c;
        },
        opts.streamId,
      );
      return;
    }
    await runTerminal(socket, session, rules, target, deps, request, rest, opts.streamId, (c) => {
      client = c;
    });
  } catch (err) {
    deps.logger.warn({ err: (err as Error).message, session: session.id }, 'ssh stream failed');
  } finally {
    deps.clock.clearTimeout(expiry);
    deps.registry.remove(stream);
    client?.end();
    if (!socket.destroyed) socket.end();
  }
}

function sendExit(socket: Duplex, exit: SshExit): void {
  if (socket.destroyed || socket.writableEnded) return;
  socket.write(encodeFrame(FrameType.exit, JSON.stringify(SshExit.parse(exit))));
  socket.end();
}

/** The first frame: must be REQUEST. Undefined (and the socket closed) otherwise. */
function readRequest(socket: Duplex, clock: Clock, timeoutMs: number): Promise<{ request: SshRequest; rest: Buffer } | undefined> {
  return new Promise((resolve) => {
    const dec = new FrameDecoder();
    const finish = (v: { request: SshRequest; rest: Buffer } | undefined) => {
      clock.clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      if (!v) socket.destroy();
      resolve(v);
    };
    const onClose = () => finish(undefined);
    const onData = (chunk: Buffer) => {
      let frames: ReturnType<FrameDecoder['push']>;
      try {
        // One frame only: in stdio mode the bytes after it are SSH, not frames.
        frames = dec.push(chunk, 1);
      } catch {
        return finish(undefined);
      }
      if (frames.length === 0) return;
      const f = frames[0]!;
      let request: SshRequest;
      try {
        if (f.type !== FrameType.request) throw new Error('request first');
        request = SshRequest.parse(JSON.parse(f.payload.toString('utf8')));
        if (request.mode === 'exec' && !request.command) throw new Error('exec without a command');
      } catch {
        sendExit(socket, { error: { code: 'JIT_PROTOCOL_ERROR', message: 'The SSH request was malformed' } });
        return finish(undefined);
      }
      // Bytes after REQUEST (typed-ahead frames, or SSH in stdio mode) go to whoever reads next.
      finish({ request, rest: dec.rest() });
    };
    const timer = clock.setTimeout(() => finish(undefined), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

/** exec / shell over frames. */
async function runTerminal(
  socket: Duplex,
  session: SessionInfo,
  rules: SshSessionRules,
  target: SshTargetRef,
  deps: SshEngineDeps,
  req: SshRequest,
  rest: Buffer,
  streamId: string,
  onClient: (c: ssh2.Client) => void,
): Promise<void> {
  const command = req.mode === 'exec' ? req.command! : undefined;
  const ask: SshAsk = command !== undefined ? { kind: 'exec', command } : { kind: 'shell' };
  // A raw terminal needs the carriage return; a pipe does not.
  const eol = req.pty ? '\r\n' : '\n';
  const gone = new AbortController();
  const onClose = () => gone.abort();
  socket.once('close', onClose);
  let outcome: SshOutcome;
  try {
    outcome = await admitSsh(
      ask,
      rules,
      sshGateHooks(deps, session, {
        tell: (line) => socket.write(encodeFrame(FrameType.stderr, `${line}${eol}`)),
        gone: gone.signal,
        streamId,
      }),
    );
  } finally {
    socket.off('close', onClose);
  }
  const { verdict } = outcome;
  if (!outcome.run) {
    if (socket.destroyed) return;
    socket.write(encodeFrame(FrameType.stderr, `${outcome.line}${eol}`));
    sendExit(socket, {
      status: SSH_BLOCKED_STATUS,
      blocked: { rule: verdict.rule ?? 'jit', action: verdict.action === 'require-approval' ? 'require-approval' : 'block' },
    });
    return;
  }
  const approval = outcome.approved;
  let client: ssh2.Client;
  try {
    const login = deps.hostUsers ? await deps.hostUsers.prepare(target, session, rules) : rules;
    const cert = deps.credentials.forSession(target.ca, session, login);
    client = await connectUpstream({ target: target.config, hostKeys: target.hostKeys, login: login.login, cert });
  } catch (err) {
    const e = isJitError(err) ? err : new JitError('JIT_TARGET_UNREACHABLE', { detail: (err as Error).message });
    deps.logger.warn({ session: session.id, code: e.code, detail: e.detail }, 'ssh login to the target failed');
    deps.emit({
      event: 'ssh.login-failed',
      session: session.id,
      target: session.target,
      outcome: 'failure',
      data: loginFailure(rules.login, e),
    });
    sendExit(socket, { error: { code: e.code, message: e.message } });
    return;
  }
  onClient(client);
  if (socket.destroyed) return;
  const started = deps.clock.now();
  deps.emit({
    event: command !== undefined ? 'command.started' : 'shell.started',
    session: session.id,
    target: session.target,
    outcome: 'info',
    data: {
      login: rules.login,
      ...(command !== undefined ? { command } : {}),
      pty: req.pty,
      ...(req.pty ? { term: req.term } : {}),
      ...(approval
        ? {
            approval: {
              rule: verdict.rule,
              ...(approval.request ? { request: approval.request } : {}),
              ...(approval.by ? { by: approval.by } : {}),
            },
          }
        : {}),
    },
  });
  const recording = deps.recordings.attach(session.id, () => ({
    width: req.cols,
    height: req.rows,
    timestamp: Math.floor(started / 1000),
    title: `${rules.login}@${session.target}`,
    ...(command !== undefined ? { command } : {}),
    env: { TERM: req.term },
  }));
  const rec = recording.rec;
  const ptyOpts = req.pty ? { term: req.term, cols: req.cols, rows: req.rows, width: 0, height: 0 } : undefined;
  const channel = await new Promise<ssh2.ClientChannel | JitError>((resolve) => {
    const cb = (err: Error | undefined, ch: ssh2.ClientChannel) =>
      resolve(
        err
          ? new JitError('JIT_TARGET_UNREACHABLE', {
              message: `sshd refused the ${command !== undefined ? 'command' : 'shell'}`,
              detail: err.message,
            })
          : ch,
      );
    if (command !== undefined) client.exec(command, { ...(ptyOpts ? { pty: ptyOpts } : {}), env: req.env }, cb);
    else client.shell(ptyOpts ?? false, { env: req.env }, cb);
  });
  if (channel instanceof JitError) {
    recording.release();
    sendExit(socket, { error: { code: channel.code, message: channel.message } });
    return;
  }
  let exit: SshExit = {};
  channel.on('exit', (code: number | null, signal?: string) => {
    exit = typeof code === 'number' ? { status: code } : { signal: signal ?? 'KILL' };
  });
  // Output: channel → frames (pause the channel while the stream is full).
  const toClient = (type: FrameType) => (chunk: Buffer) => {
    rec.output(chunk);
    for (let i = 0; i < chunk.length; i += 32 * 1024) {
      if (!socket.write(encodeFrame(type, chunk.subarray(i, i + 32 * 1024)))) {
        channel.pause();
        channel.stderr.pause();
        socket.once('drain', () => {
          channel.resume();
          channel.stderr.resume();
        });
      }
    }
  };
  channel.on('data', toClient(FrameType.stdout));
  channel.stderr.on('data', toClient(FrameType.stderr));
  // Input: frames → channel.
  const dec = new FrameDecoder();
  const onFrame = (f: { type: number; payload: Buffer }) => {
    switch (f.type) {
      case FrameType.stdin:
        if (rules.recordInput) rec.input(f.payload);
        if (!channel.write(f.payload)) {
          socket.pause();
          channel.once('drain', () => socket.resume());
        }
        return;
      case FrameType.resize:
        if (f.payload.length === 4) {
          const cols = f.payload.readUInt16BE(0);
          const rows = f.payload.readUInt16BE(2);
          channel.setWindow(rows, cols, 0, 0);
          rec.resize(cols, rows);
        }
        return;
      case FrameType.signal: {
        const name = f.payload.toString('latin1');
        if (SIGNALS.has(name)) channel.signal(name);
        return;
      }
      case FrameType.eof:
        channel.end();
        return;
      default:
        throw new Error('unexpected frame');
    }
  };
  const onData = (chunk: Buffer) => {
    try {
      for (const f of dec.push(chunk)) onFrame(f);
    } catch {
      socket.destroy();
    }
  };
  socket.on('data', onData);
  if (rest.length) onData(rest);
  socket.resume();
  await new Promise<void>((resolve) => {
    let over = false;
    const end = () => {
      if (over) return;
      over = true;
      resolve();
    };
    channel.on('close', end);
    socket.once('close', () => {
      channel.close();
      end();
    });
    client.once('close', end);
  });
  const durationMs = deps.clock.now() - started;
  if (!socket.destroyed && exit.status === undefined && exit.signal === undefined) {
    exit = { error: { code: 'JIT_TARGET_UNREACHABLE', message: 'The connection to the host was lost' } };
  }
  deps.emit({
    event: command !== undefined ? 'command.executed' : 'shell.ended',
    session: session.id,
    target: session.target,
    outcome: exit.status === 0 ? 'success' : 'info',
    data: {
      ...(command !== undefined ? { command } : {}),
      ...(exit.status !== undefined ? { exitStatus: exit.status } : {}),
      ...(exit.signal ? { signal: exit.signal } : {}),
      ...(socket.destroyed ? { interrupted: true } : {}),
      durationMs,
    },
  });
  recording.release();
  sendExit(socket, exit);
  client.end();
}
