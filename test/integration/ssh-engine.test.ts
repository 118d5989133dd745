/**
 * The agent's SSH engine against a real sshd: certificate login, exec with exit codes and
 * separate stderr, stdin, a PTY shell, guardrails that never reach the host, recordings, host
 * key checks, and certificates that sshd refuses once they have expired.
 */

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshCa, SshCredentials } from '#agent/credentials/ssh-ca.js';
import { HostUsers } from '#agent/engines/ssh/host-users.js';
import { handleSshClient, type SshEngineDeps, type SshTargetRef } from '#agent/engines/ssh/engine.js';
import { AgentRecordings } from '#agent/engines/ssh/recorder.js';
import { connectUpstream, knownHostKeys } from '#agent/engines/ssh/upstream.js';
import type { AgentEventInput } from '#agent/events.js';
import { StreamRegistry } from '#agent/streams.js';
import { loadShellParser } from '#protocol/ssh/shell.js';
import { AgentSshTarget } from '#shared/config/agent.js';
import { Guardrail } from '#shared/config/policy.js';
import type { AgentRecordingChunk, SessionInfo } from '#shared/contract/agent.js';
import { encodeFrame, FrameDecoder, FrameType, resizePayload, SshExit, type SshRequest } from '#shared/contract/ssh-stream.js';
import { isJitError } from '#shared/errors/jit-error.js';
import { createLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { makeEd25519, sshdAvailable, startSshd, type TestSshd } from '../helpers/sshd.js';

const logger = createLogger({ level: process.env['AGENT_TEST_LOG'] ?? 'silent' });

describe.skipIf(!sshdAvailable())('SSH engine against a real sshd', () => {
  let sshd: TestSshd;
  let target: SshTargetRef;
  const events: AgentEventInput[] = [];
  const chunks: AgentRecordingChunk[] = [];
  const registry = new StreamRegistry();
  const emit = (e: AgentEventInput) => void events.push(e);
  const credentials = new SshCredentials({ emit, clock: systemClock, random: randomBytes });
  const recordings = new AgentRecordings({
    send: (m) => {
      chunks.push(m);
      return true;
    },
    clock: systemClock,
    logger,
    flushMs: 20,
  });
  const deps = { credentials, recordings, registry, emit, logger, clock: systemClock, random: randomBytes };

  const guardrails = [
    Guardrail.parse({ name: 'no-reboot', action: 'block', match: { commands: ['reboot', 'shutdown'] } }),
    Guardrail.parse({ name: 'restart', action: 'require-approval', match: { commands: ['systemctl restart'] } }),
  ];

  const sessionOf = (over: Partial<SessionInfo> = {}): SessionInfo => ({
    id: randomBytes(10).toString('hex'),
    user: 'alice',
    target: 'web-1',
    grantRoles: [],
    expiresAt: new Date(Date.now() + 10 * 60_000).toISOString(),
    localVerifier: { iterations: 4096, salt: '', storedKey: '', serverKey: '' },
    ssh: {
      login: sshd.login,
      principals: [sshd.login],
      allowForwarding: false,
      forwardTo: [],
      guardrails,
      recordInput: true,
      commandMode: 'denylist',
      unlisted: 'block',
    },
    ...over,
  });

  beforeAll(async () => {
    await loadShellParser();
    sshd = await startSshd();
    const config = AgentSshTarget.parse({
      type: 'ssh',
      host: sshd.host,
      port: sshd.port,
      hostKeys: [sshd.hostKeyLine],
      caKeyEnv: 'UNUSED',
    });
    target = { name: 'web-1', config, hostKeys: knownHostKeys('web-1', config), ca: SshCa.fromText(sshd.caPrivateText, 'test CA') };
  });
  afterAll(async () => {
    if (process.env['SSHD_LOG']) console.log(sshd?.log());
    await sshd?.stop();
  });

  /** Run the engine on one side of a real TCP pair; drive the other like `jit ssh` would. */
  async function run(
    session: SessionInfo,
    req: Partial<SshRequest>,
    drive?: (send: (t: FrameType, p?: Buffer | string) => void, out: () => string) => Promise<void>,
    over: Partial<SshEngineDeps> = {},
  ) {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const cli = net.connect(port, '127.0.0.1');
    const agentSide = await accepted;
    server.close();
    const engine = handleSshClient(agentSide, session, target, { ...deps, ...over }, { streamId: randomBytes(9).toString('hex') });
    let stdout = '';
    let stderr = '';
    let exit: SshExit | undefined;
    const dec = new FrameDecoder();
    cli.on('data', (c: Buffer) => {
      for (const f of dec.push(c)) {
        if (f.type === FrameType.stdout) stdout += f.payload.toString();
        else if (f.type === FrameType.stderr) stderr += f.payload.toString();
        else if (f.type === FrameType.exit) exit = SshExit.parse(JSON.parse(f.payload.toString()));
      }
    });
    const closed = new Promise<void>((r) => cli.once('close', () => r()));
    const send = (t: FrameType, p?: Buffer | string) => cli.write(encodeFrame(t, p));
    send(FrameType.request, JSON.stringify({ v: 1, mode: 'exec', ...req }));
    if (drive) await drive(send, () => stdout);
    else send(FrameType.eof);
    await closed;
    await engine;
    return { stdout, stderr, exit };
  }

  it('runs a command with the certificate: stdout and stderr apart, the remote exit status, audited', async () => {
    const s = sessionOf();
    const r = await run(s, { command: 'echo hello; echo oops >&2; whoami >&2; exit 3' });
    expect(r.stdout).toBe('hello\n');
    expect(r.stderr).toBe(`oops\n${sshd.login}\n`);
    expect(r.exit).toEqual({ status: 3 });
    const mine = events.filter((e) => e.session === s.id);
    expect(mine.map((e) => e.event)).toEqual(['credential.created', 'command.started', 'command.executed']);
    expect(mine[0]!.data).toMatchObject({ kind: 'ssh-certificate', principals: [sshd.login], extensions: ['permit-pty'] });
    expect(mine[2]!.data).toMatchObject({ command: 'echo hello; echo oops >&2; whoami >&2; exit 3', exitStatus: 3 });
    expect(sshd.log()).toMatch(new RegExp(`Accepted publickey for ${sshd.login} .*ED25519-CERT .*ID jit:alice:${s.id}`));
  });

  it('pipes stdin through and ends it with EOF', async () => {
    const r = await run(sessionOf(), { command: 'tr a-z A-Z' }, async (send) => {
      send(FrameType.stdin, 'piped text\n');
      send(FrameType.eof);
    });
    expect(r.stdout).toBe('PIPED TEXT\n');
    expect(r.exit).toEqual({ status: 0 });
  });

  it('blocks a guarded command before anything reaches the host, with one stderr line and exit 126', async () => {
    const s = sessionOf();
    const before = sshd.log().length;
    const r = await run(s, { command: "uptime; bash -c 'sudo /sbin/reboot'" });
    expect(r.stderr).toBe('jit: blocked by rule no-reboot: `reboot`\n');
    expect(r.exit).toEqual({ status: 126, blocked: { rule: 'no-reboot', action: 'block' } });
    expect(r.stdout).toBe('');
    expect(sshd.log().slice(before)).not.toMatch(/Accepted/);
    expect(credentials.has(s.id)).toBe(false);
    expect(events.filter((e) => e.session === s.id)).toEqual([
      expect.objectContaining({
        event: 'command.blocked',
        data: expect.objectContaining({ rule: 'no-reboot', command: "uptime; bash -c 'sudo /sbin/reboot'" }),
      }),
    ]);
    const r2 = await run(sessionOf(), { command: 'sudo systemctl restart nginx' });
    expect(r2.stderr).toBe(
      'jit: `systemctl restart nginx` needs approval (rule restart) and no approval workflow is available on this agent\n',
    );
    expect(r2.exit?.blocked).toEqual({ rule: 'restart', action: 'require-approval' });
  });

  it('runs an interactive PTY shell: typed input, resize, output recorded as asciicast', async () => {
    const s = sessionOf();
    const r = await run(s, { mode: 'shell', pty: true, cols: 100, rows: 30, term: 'xterm' }, async (send, out) => {
      send(FrameType.stdin, 'stty size; echo $((6*7))\r');
      const until = Date.now() + 10_000;
      while (!out().includes('42') && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
      send(FrameType.resize, resizePayload(120, 40));
      send(FrameType.stdin, 'stty size; exit 5\r');
    });
    expect(r.stdout).toContain('30 100');
    expect(r.stdout).toContain('42');
    expect(r.stdout).toContain('40 120');
    expect(r.exit).toEqual({ status: 5 });
    const cast = chunks
      .filter((c) => c.session === s.id)
      .sort((a, b) => a.seq - b.seq)
      .map((c) => c.data)
      .join('');
    const [header, ...lines] = cast.trim().split('\n');
    expect(JSON.parse(header!)).toMatchObject({ version: 2, width: 100, height: 30, title: `${sshd.login}@web-1`, env: { TERM: 'xterm' } });
    const evs = lines.map((l) => JSON.parse(l) as [number, string, string]);
    expect(
      evs
        .filter((e) => e[1] === 'o')
        .map((e) => e[2])
        .join(''),
    ).toBe(r.stdout);
    expect(
      evs
        .filter((e) => e[1] === 'i')
        .map((e) => e[2])
        .join(''),
    ).toContain('echo $((6*7))');
    expect(evs.some((e) => e[1] === 'r' && e[2] === '120x40')).toBe(true);
    expect(chunks.filter((c) => c.session === s.id).at(-1)?.final).toBe(true);
    expect(events.filter((e) => e.session === s.id).map((e) => e.event)).toEqual(['credential.created', 'shell.started', 'shell.ended']);
  });

  it('refuses a host whose key is not configured (no trust on first use)', async () => {
    const other = AgentSshTarget.parse({
      type: 'ssh',
      host: sshd.host,
      port: sshd.port,
      hostKeys: [makeEd25519().publicLine],
      caKeyEnv: 'X',
    });
    const s = sessionOf();
    const r = await run(s, { command: 'true' }, undefined);
    expect(r.exit).toEqual({ status: 0 });
    const cert = credentials.forSession(target.ca, s, s.ssh!);
    const err = await connectUpstream({ target: other, hostKeys: knownHostKeys('x', other), login: sshd.login, cert }).catch((e) => e);
    expect(isJitError(err) && err.code).toBe('JIT_TARGET_UNREACHABLE');
    expect(err.message).toMatch(/host key the agent does not know/);
    // through the engine: the user gets the error, the audit records the mismatch, nothing runs
    const plain = target;
    target = { ...plain, config: other, hostKeys: knownHostKeys('web-1', other) };
    try {
      const s2 = sessionOf();
      const refused = await run(s2, { command: 'touch /tmp/jit-should-not-exist' });
      expect(refused.exit?.error?.code).toBe('JIT_TARGET_UNREACHABLE');
      const ev = events.find((e) => e.session === s2.id && e.event === 'ssh.login-failed');
      expect(ev?.data).toMatchObject({ reason: 'host-key-mismatch' });
    } finally {
      target = plain;
    }
  });

  it("sshd refuses the session's certificate once it has expired", async () => {
    const s = sessionOf({ expiresAt: new Date(Date.now() + 1500).toISOString() });
    const cert = credentials.forSession(target.ca, s, s.ssh!);
    const ok = await connectUpstream({ target: target.config, hostKeys: target.hostKeys, login: sshd.login, cert });
    ok.end();
    await new Promise((r) => setTimeout(r, Math.max(0, cert.validBefore.getTime() - Date.now()) + 1200));
    const err = await connectUpstream({ target: target.config, hostKeys: target.hostKeys, login: sshd.login, cert }).catch((e) => e);
    expect(isJitError(err) && err.code).toBe('JIT_CREDENTIAL_FAILED');
    expect(sshd.log()).toMatch(/[Cc]ertificate invalid: expired/);
  });

  it('a certificate is good for its login only: a copy of it and its key opens nothing once its short window has passed, while the session runs or after it ended', async () => {
    // the agent's own credentials mint with the default window; this copy of the engine's deps uses 2 s
    const shortLived = new SshCredentials({ emit, clock: systemClock, random: randomBytes, loginWindowSec: 2 });
    const used: ReturnType<SshCredentials['forSession']>[] = [];
    const spy = {
      forSession: (...a: Parameters<SshCredentials['forSession']>) => {
        const c = shortLived.forSession(...a);
        used.push(c);
        return c;
      },
      forget: (id: string, why: string) => shortLived.forget(id, why),
      has: (id: string) => shortLived.has(id),
    } as unknown as SshCredentials;
    const s = sessionOf();
    const r = await run(s, { command: 'true' }, undefined, { credentials: spy });
    expect(r.exit?.status).toBe(0);
    const copy = used[0]!;
    expect(copy.validBefore.getTime() - Date.now()).toBeLessThanOrEqual(2_000);
    shortLived.forget(s.id, 'test: session ended');
    await new Promise((r) => setTimeout(r, Math.max(0, copy.validBefore.getTime() - Date.now()) + 1200));
    const err = await connectUpstream({ target: target.config, hostKeys: target.hostKeys, login: sshd.login, cert: copy }).catch((e) => e);
    expect(isJitError(err) && err.code).toBe('JIT_CREDENTIAL_FAILED');
    // a later login of a live session gets a fresh certificate, with a new serial
    const s2 = sessionOf();
    const first = shortLived.forSession(target.ca, s2, s2.ssh!);
    const second = shortLived.forSession(target.ca, s2, s2.ssh!);
    expect(second.serial).not.toBe(first.serial);
  });

  it('nothing outlives the session: with host users, every process the session started (background, nohup, setsid, double fork, disown) is gone and its account deleted when it ends', async () => {
    const hostUsers = new HostUsers({ credentials, emit, logger });
    const plain = target;
    target = { ...plain, config: { ...plain.config, hostUsers: { adminLogin: 'root', shell: '/bin/bash' } } };
    const s = sessionOf();
    const user = `jit_${s.id}`;
    const pids = (): string[] => {
      try {
        return execFileSync('pgrep', ['-u', user]).toString().trim().split('\n').filter(Boolean);
      } catch {
        return [];
      }
    };
    try {
      const line =
        'nohup sleep 300 >/dev/null 2>&1 & setsid sleep 301 >/dev/null 2>&1 < /dev/null & (sleep 302 >/dev/null 2>&1 &); sleep 303 >/dev/null 2>&1 & disown; id -un';
      const r = await run(s, { command: line }, undefined, { hostUsers });
      expect(r.exit?.status, `${r.stderr} ${JSON.stringify(r.exit)} ${JSON.stringify(events.filter((e) => e.session === s.id))}`).toBe(0);
      expect(r.stdout).toBe(`${user}\n`);
      expect(pids().length).toBeGreaterThanOrEqual(4); // they outlived the command, as they would the session
      await hostUsers.remove(s.id, 'test: session ended');
      expect(pids()).toEqual([]);
      expect(() => execFileSync('id', ['-u', user], { stdio: 'ignore' })).toThrow();
      const removed = events.find((e) => e.session === s.id && e.event === 'host-user.removed');
      expect(removed).toMatchObject({ outcome: 'success', data: { user } });
      expect(Number(removed!.data?.['processesKilled'])).toBeGreaterThanOrEqual(4);
      expect(events.find((e) => e.session === s.id && e.event === 'host-user.created')).toBeDefined();
    } finally {
      target = plain;
      execFileSync('sh', ['-c', `pkill -KILL -u ${user} 2>/dev/null; userdel -r -f ${user} 2>/dev/null; true`]);
    }
  });

  it('refuses a login the certificate does not name', async () => {
    const s = sessionOf();
    const cert = credentials.forSession(target.ca, s, s.ssh!);
    const err = await connectUpstream({ target: target.config, hostKeys: target.hostKeys, login: 'root', cert }).catch((e) => e);
    expect(isJitError(err) && err.code).toBe('JIT_CREDENTIAL_FAILED');
  });
});
