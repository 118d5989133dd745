/**
 * ProxyCommand mode (`jit ssh --stdio`): the stream carries the user's own OpenSSH client's
 * connection, and the agent is its SSH server. Each channel the client opens is judged like a
 * `jit ssh` request (exec → command guard, shell → interactive rules, subsystem → its name as a
 * command), recorded, and bridged to the real sshd, where the agent logs in with the session's
 * certificate. So scp, sftp, rsync and editors' remote modes work, and guardrails and recording
 * still apply.
 *
 * The client authenticates with anything (`none` is accepted): the stream is already bound to the
 * user by the session grant and their access token, and only their `jit ssh --stdio` process holds
 * it. The user name MUST be the session's login. The server's host key is derived from the CA key
 * and the target's name, so it is the same for every session (known_hosts stays valid). Every
 * channel and request passes the SSH gate (src/protocol/ssh/admit.ts) with the same hooks as the
 * jit ssh frames (gate.ts): commands held for approval wait here too; agent, X11 and remote
 * forwarding are refused and recorded; port forwarding (direct-tcpip) only when policy allows it.
 */
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import { admitSsh, type SshAsk, type SshGateHooks } from '#protocol/ssh/admit.js';
import type { SessionInfo, SshSessionRules } from '#shared/contract/agent.js';
import { SSH_BLOCKED_STATUS } from '#shared/contract/ssh-stream.js';
import { isJitError, JitError } from '#shared/errors/jit-error.js';
import type { SshEngineDeps, SshTargetRef } from './engine.js';
import { sshGateHooks } from './gate.js';
import { connectUpstream, loginFailure } from './upstream.js';

type Pty = { term: string; cols: number; rows: number; width: number; height: number };

/** Serve one OpenSSH client connection; resolves when it closes. */
export async function runBridge(
  socket: Duplex,
  session: SessionInfo,
  rules: SshSessionRules,
  target: SshTargetRef,
  deps: SshEngineDeps,
  onClient: (c: ssh2.Client) => void,
  streamId: string,
): Promise<void> {
  const server = new ssh2.Server({ hostKeys: [target.ca.bridgeHostKey(target.name)], ident: 'jit' });
  let upstream: Promise<ssh2.Client> | undefined;
  const login = (): Promise<ssh2.Client> => {
    upstream ??= (async () => {
      const as = deps.hostUsers ? await deps.hostUsers.prepare(target, session, rules) : rules;
      const cert = deps.credentials.forSession(target.ca, session, as);
      const c = await connectUpstream({ target: target.config, hostKeys: target.hostKeys, login: as.login, cert });
      onClient(c);
      return c;
    })();
    return upstream;
  };
  const done = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  // For asks that are never held (forwarding, X11, agent): they are allowed or refused at once.
  const refusals = sshGateHooks(deps, session, { tell: () => {}, gone: new AbortController().signal, streamId });

  server.on('connection', (conn) => {
    conn.on('error', (err) => deps.logger.debug({ err: err.message }, 'bridge client error'));
    conn.on('authentication', (ctx) => {
      if (ctx.username !== rules.login) {
        deps.emit({
          event: 'ssh.login-refused',
          session: session.id,
          target: session.target,
          outcome: 'failure',
          data: { asked: ctx.username.slice(0, 64), login: rules.login },
        });
        return ctx.reject([]);
      }
      // Any method: the jit stream already proves who this is (see the file comment).
      ctx.accept();
    });
    conn.on('ready', () => {
      login().catch((err) => {
        const e = isJitError(err) ? err : new JitError('JIT_TARGET_UNREACHABLE');
        deps.logger.warn({ session: session.id, code: e.code, detail: e.detail }, 'ssh login to the target failed');
        deps.emit({
          event: 'ssh.login-failed',
          session: session.id,
          target: session.target,
          outcome: 'failure',
          data: loginFailure(rules.login, e),
        });
        conn.end();
      });
      conn.on('session', (accept) => serveSession(accept(), session, rules, deps, login, streamId, refusals));
      conn.on('tcpip', (accept, reject, info) => {
        // Not holdable: forwarding is allowed by policy or refused (and recorded) at once.
        const out = admitSsh(
          { kind: 'port-forward', host: info.destIP, port: info.destPort },
          { ...rules, guarded: deps.guarded ?? [] },
          refusals,
        );
        if (out instanceof Promise || !out.run) return reject();
        login()
          .then((c) =>
            c.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, up) => {
              if (err) return reject();
              deps.emit({
                event: 'port.forwarded',
                session: session.id,
                target: session.target,
                outcome: 'info',
                data: { host: info.destIP, port: info.destPort },
              });
              const ch = accept();
              ch.pipe(up).pipe(ch);
            }),
          )
          .catch(() => reject());
      });
      // Global requests: remote forwarding (tcpip-forward, streamlocal-forward…) and the like.
      conn.on('request', (_accept, reject, name) => {
        if (/forward/.test(name)) void admitSsh({ kind: 'remote-forward', request: name.slice(0, 64) }, rules, refusals);
        reject?.();
      });
    });
  });
  server.injectSocket(socket as never);
  socket.resume();
  await done;
  const c = await upstream?.catch(() => undefined);
  c?.end();
}

function serveSession(
  s: ssh2.Session,
  session: SessionInfo,
  rules: SshSessionRules,
  deps: SshEngineDeps,
  login: () => Promise<ssh2.Client>,
  streamId: string,
  refusals: SshGateHooks,
): void {
  let pty: Pty | undefined;
  const env: Record<string, string> = {};
  let up: ssh2.ClientChannel | undefined;
  let rec: ReturnType<SshEngineDeps['recordings']['attach']> | undefined;
  s.on('pty', (accept, _reject, info) => {
    pty = { term: info.term, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
    accept?.();
  });
  s.on('window-change', (accept, _reject, info) => {
    up?.setWindow(info.rows, info.cols, info.height, info.width);
    rec?.rec.resize(info.cols, info.rows);
    accept?.();
  });
  s.on('env', (accept, _reject, info) => {
    if (/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(info.key) && info.val.length <= 1024) env[info.key] = info.val;
    accept?.();
  });
  s.on('signal', (accept, _reject, info) => {
    up?.signal(info.name);
    accept?.();
  });
  const eol = () => (pty ? '\r\n' : '\n');
  // Never served: refused by the gate (and recorded) whatever policy says.
  s.on('auth-agent', (_accept, reject) => {
    void admitSsh({ kind: 'agent-forward' }, rules, refusals);
    reject?.();
  });
  s.on('x11', (_accept, reject) => {
    void admitSsh({ kind: 'x11' }, rules, refusals);
    reject?.();
  });

  const run = async (accept: () => ssh2.ServerChannel, _reject: (() => void) | undefined, ask: SshAsk) => {
    const what: { command?: string; subsystem?: string } =
      ask.kind === 'exec' ? { command: ask.command } : ask.kind === 'subsystem' ? { subsystem: ask.name } : {};
    // Accept at once: OpenSSH sends a subsystem's first bytes without waiting for the answer, and
    // ssh2 drops data for a channel not yet accepted. The bytes wait in the channel meanwhile
    // (also while the gate holds the command for approval).
    const ch = accept();
    ch.pause();
    const held = new AbortController();
    ch.once('close', () => held.abort());
    const outcome = await admitSsh(
      ask,
      rules,
      sshGateHooks(deps, session, { tell: (line) => ch.stderr.write(`${line}${eol()}`), gone: held.signal, streamId }),
    );
    if (!outcome.run) {
      ch.stderr.write(`${outcome.line}${eol()}`);
      ch.exit(SSH_BLOCKED_STATUS);
      ch.end();
      return;
    }
    const fail = (message: string) => {
      ch.stderr.write(`jit: ${message}${eol()}`);
      ch.exit(255);
      ch.end();
    };
    let client: ssh2.Client;
    try {
      client = await login();
    } catch (err) {
      return fail(isJitError(err) ? err.message : 'the host cannot be reached');
    }
    const started = deps.clock.now();
    deps.emit({
      event: what.command !== undefined ? 'command.started' : what.subsystem ? 'subsystem.started' : 'shell.started',
      session: session.id,
      target: session.target,
      outcome: 'info',
      data: {
        login: rules.login,
        ...what,
        pty: Boolean(pty),
        via: 'proxycommand',
        ...(outcome.approved
          ? { approval: { rule: outcome.verdict.rule, ...(outcome.approved.request ? { request: outcome.approved.request } : {}) } }
          : {}),
      },
    });
    const cb = (err: Error | undefined, channel: ssh2.ClientChannel) => {
      if (err) return fail(`the host refused the ${what.subsystem ? 'subsystem' : what.command !== undefined ? 'command' : 'shell'}`);
      up = channel;
      // File transfers (subsystems) are not terminal traffic: audited, not recorded.
      if (!what.subsystem) {
        rec = deps.recordings.attach(session.id, () => ({
          width: pty?.cols ?? 80,
          height: pty?.rows ?? 24,
          timestamp: Math.floor(started / 1000),
          title: `${rules.login}@${session.target}`,
          ...(what.command ? { command: what.command } : {}),
          env: { TERM: pty?.term ?? 'dumb' },
        }));
        const r = rec.rec;
        channel.on('data', (d: Buffer) => r.output(d));
        channel.stderr.on('data', (d: Buffer) => r.output(d));
        if (rules.recordInput) ch.on('data', (d: Buffer) => r.input(d));
      }
      // Not `end`ing ch through pipe: ssh2 closes a server channel as soon as it ends, and the exit
      // status must go out before that (OpenSSH reports "Exit status -1" otherwise).
      ch.pipe(channel);
      channel.pipe(ch, { end: false });
      channel.stderr.pipe(ch.stderr, { end: false });
      ch.resume();
      let status: number | undefined;
      let signal: string | undefined;
      channel.on('exit', (code: number | null, sig?: string) => {
        if (typeof code === 'number') {
          status = code;
          ch.exit(code);
        } else {
          signal = sig ?? 'KILL';
          ch.exit(signal, false, '');
        }
      });
      channel.on('close', () => {
        deps.emit({
          event: what.command !== undefined ? 'command.executed' : what.subsystem ? 'subsystem.ended' : 'shell.ended',
          session: session.id,
          target: session.target,
          outcome: status === 0 ? 'success' : 'info',
          data: {
            ...what,
            ...(status !== undefined ? { exitStatus: status } : {}),
            ...(signal ? { signal } : {}),
            durationMs: deps.clock.now() - started,
          },
        });
        rec?.release();
        // All output has been handed to ch once the upstream's readable side has ended.
        if (channel.readableEnded) ch.end();
        else channel.once('end', () => ch.end());
      });
      ch.on('close', () => channel.close());
    };
    if (what.subsystem) client.subsys(what.subsystem, cb);
    else if (what.command !== undefined) client.exec(what.command, { ...(pty ? { pty } : {}), env }, cb);
    else client.shell(pty ?? false, { env }, cb);
  };

  s.on('shell', (accept, reject) => void run(accept, reject, { kind: 'shell' }));
  s.on('exec', (accept, reject, info) => void run(accept, reject, { kind: 'exec', command: info.command }));
  s.on('subsystem', (accept, reject, info) => void run(accept, reject, { kind: 'subsystem', name: info.name }));
}
