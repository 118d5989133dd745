/**
 * The agent's ProxyCommand bridge against a real sshd, driven by the real OpenSSH client and scp:
 * the "stream" is a local TCP connection whose first bytes are the REQUEST frame (what
 * `jit ssh --stdio` sends), so this isolates the bridge from the relay and the CLI.
 */

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshCa, SshCredentials } from '#agent/credentials/ssh-ca.js';
import { handleSshClient, type SshTargetRef } from '#agent/engines/ssh/engine.js';
import { AgentRecordings } from '#agent/engines/ssh/recorder.js';
import { knownHostKeys } from '#agent/engines/ssh/upstream.js';
import type { AgentEventInput } from '#agent/events.js';
import { StreamRegistry } from '#agent/streams.js';
import { loadShellParser } from '#protocol/ssh/shell.js';
import { AgentSshTarget } from '#shared/config/agent.js';
import { Guardrail } from '#shared/config/policy.js';
import type { SessionInfo } from '#shared/contract/agent.js';
import { encodeFrame, FrameType } from '#shared/contract/ssh-stream.js';
import { createLogger } from '#shared/log.js';
import { systemClock } from '#shared/runtime/ctx.js';
import { echoServer, probeTunnel } from '../helpers/tcp.js';
import { sshdAvailable, startSshd, type TestSshd } from '../helpers/sshd.js';

const run = promisify(execFile);
const logger = createLogger({ level: process.env['AGENT_TEST_LOG'] ?? 'silent' });

describe.skipIf(!sshdAvailable())('ProxyCommand bridge with OpenSSH', () => {
  let sshd: TestSshd;
  let listener: net.Server;
  let port = 0;
  const events: AgentEventInput[] = [];
  let session: SessionInfo;
  const dir = path.join(os.tmpdir(), `jit-bridge-${randomBytes(4).toString('hex')}`);
  let target: SshTargetRef;
  let deps: Parameters<typeof handleSshClient>[3];

  beforeAll(async () => {
    await loadShellParser();
    sshd = await startSshd();
    const config = AgentSshTarget.parse({ type: 'ssh', host: sshd.host, port: sshd.port, hostKeys: [sshd.hostKeyLine], caKeyEnv: 'X' });
    target = {
      name: 'web-1',
      config,
      hostKeys: knownHostKeys('web-1', config),
      ca: SshCa.fromText(sshd.caPrivateText, 'ca'),
    };
    const emit = (e: AgentEventInput) => void events.push(e);
    deps = {
      credentials: new SshCredentials({ emit, clock: systemClock, random: randomBytes }),
      recordings: new AgentRecordings({ send: () => true, clock: systemClock, logger }),
      registry: new StreamRegistry(),
      emit,
      logger,
      clock: systemClock,
      random: randomBytes,
    };
    session = {
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
        commandMode: 'denylist',
        unlisted: 'block',
        guardrails: [Guardrail.parse({ name: 'no-reboot', action: 'block', match: { commands: ['reboot'] } })],
        recordInput: false,
      },
    };
    listener = net.createServer((s) => void handleSshClient(s, session, target, deps, { streamId: randomBytes(9).toString('hex') }));
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    port = (listener.address() as net.AddressInfo).port;
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    // A stand-in for `jit ssh --stdio`: the REQUEST frame, then stdin/stdout ⇄ the stream.
    const frame = encodeFrame(FrameType.request, JSON.stringify({ v: 1, mode: 'stdio' })).toString('base64');
    writeFileSync(
      path.join(dir, 'proxy.cjs'),
      `const s=require('net').connect(${port},'127.0.0.1',()=>{s.write(Buffer.from('${frame}','base64'));process.stdin.pipe(s);s.pipe(process.stdout);});s.on('close',()=>process.exit(0));`,
    );
  });
  afterAll(async () => {
    listener?.close();
    await sshd?.stop();
  });

  const opts = () => [
    '-o',
    `ProxyCommand=${process.execPath} ${path.join(dir, 'proxy.cjs')}`,
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    `LogLevel=${process.env['SSH_LOGLEVEL'] ?? 'ERROR'}`,
    '-o',
    'BatchMode=yes',
  ];

  it('copies files both ways with scp (SFTP subsystem), several times in a row', async () => {
    for (let i = 0; i < 4; i++) {
      const payload = randomBytes(200_000 + i * 150_000);
      const local = path.join(dir, `up-${i}.bin`);
      writeFileSync(local, payload);
      const name = `jit-bridge-${randomBytes(4).toString('hex')}.bin`;
      await run('scp', [...opts(), local, `${sshd.login}@web-1:${name}`], { timeout: 20_000 }).catch((e) => {
        throw new Error(
          `scp up: ${String(e.stderr)
            .split('\n')
            .filter((l: string) => !/debug[23]/.test(l))
            .slice(-40)
            .join('\n')}`,
        );
      });
      expect(readFileSync(`/home/${sshd.login}/${name}`).equals(payload)).toBe(true);
      const back = path.join(dir, `down-${i}.bin`);
      await run('scp', [...opts(), `${sshd.login}@web-1:${name}`, back], { timeout: 20_000 });
      expect(readFileSync(back).equals(payload)).toBe(true);
    }
    expect(events.filter((e) => e.event === 'subsystem.started').length).toBe(8);
  });

  it('runs commands with their exit status and refuses guarded ones with 126', async () => {
    const ok = await run('ssh', [...opts(), `${sshd.login}@web-1`, 'echo hi; exit 0'], { timeout: 20_000 });
    expect(ok.stdout).toBe('hi\n');
    const failed = await run('ssh', [...opts(), `${sshd.login}@web-1`, 'exit 9'], { timeout: 20_000 }).catch((e) => e);
    expect(failed.stderr).toBe('');
    expect(failed.code).toBe(9);
    const blocked = await run('ssh', [...opts(), `${sshd.login}@web-1`, 'sudo reboot'], { timeout: 20_000 }).catch((e) => e);
    expect(blocked.code).toBe(126);
    expect(blocked.stderr).toBe('jit: blocked by rule no-reboot: `reboot`\n');
  });

  it('port forwarding reaches only the destinations policy names, never a database jit guards; each refusal is recorded', async () => {
    const [allowed, other, database] = await Promise.all([echoServer(), echoServer(), echoServer()]);
    const portOf = (e: { port: number }) => e.port;
    const fwdSession: SessionInfo = {
      ...session,
      id: randomBytes(10).toString('hex'),
      ssh: { ...session.ssh!, allowForwarding: true, forwardTo: [`127.0.0.1:${portOf(allowed)}`, `127.0.0.1:${portOf(database)}`] },
    };
    const fwdDeps = { ...deps, guarded: [{ host: 'localhost', port: portOf(database) }] };
    const l2 = net.createServer(
      (sock) => void handleSshClient(sock, fwdSession, target, fwdDeps, { streamId: randomBytes(9).toString('hex') }),
    );
    await new Promise<void>((r) => l2.listen(0, '127.0.0.1', r));
    const frame = encodeFrame(FrameType.request, JSON.stringify({ v: 1, mode: 'stdio' })).toString('base64');
    const proxy = path.join(dir, 'proxy-fwd.cjs');
    writeFileSync(
      proxy,
      `const s=require('net').connect(${(l2.address() as net.AddressInfo).port},'127.0.0.1',()=>{s.write(Buffer.from('${frame}','base64'));process.stdin.pipe(s);s.pipe(process.stdout);});s.on('close',()=>process.exit(0));`,
    );
    const { freePort } = await import('../helpers/postgres.js');
    const [la, lb, lc] = [await freePort(), await freePort(), await freePort()];
    const forwards = [`${la}:127.0.0.1:${portOf(allowed)}`, `${lb}:127.0.0.1:${portOf(other)}`, `${lc}:127.0.0.1:${portOf(database)}`];
    const opts2 = opts().map((o) => (o.startsWith('ProxyCommand=') ? `ProxyCommand=${process.execPath} ${proxy}` : o));
    const child = spawn('ssh', [...opts2, '-N', ...forwards.flatMap((f) => ['-L', f]), `${sshd.login}@web-1`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let sshErr = '';
    child.stderr!.on('data', (d: Buffer) => {
      sshErr += d.toString();
    });
    try {
      const talk = (p: number) => probeTunnel(p, () => sshErr, 50);
      expect(await talk(la)).toBe('ping');
      expect(await talk(lb)).toBe('');
      expect(await talk(lc)).toBe('');
      const blocked = events.filter((e) => e.session === fwdSession.id && e.event === 'command.blocked').map((e) => e.data?.['rule']);
      expect(blocked).toEqual(expect.arrayContaining(['jit.forward-destination', 'jit.guarded-destination']));
      expect(events.filter((e) => e.session === fwdSession.id && e.event === 'port.forwarded')).toHaveLength(1);
    } finally {
      child.kill();
      l2.close();
      for (const e of [allowed, other, database]) e.server.close();
    }
  });

  it('refuses a user name other than the session login', async () => {
    const r = await run('ssh', [...opts(), `root@web-1`, 'true'], { timeout: 20_000 }).catch((e) => e);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
  });
});
