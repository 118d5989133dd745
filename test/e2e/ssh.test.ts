/**
 * `jit ssh` end to end, every part a real process from the built binary: jit server, jit agent,
 * a real sshd trusting the agent's CA, and the CLI logged in as alice. Commands with their exit
 * status, stdin, guardrails, an interactive shell through a real PTY (script), scp and ssh through
 * the ProxyCommand mode, the recording replayed equal to what was shown, and the agent killed
 * mid-session.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { TerminalFilter } from '#cli/ssh/terminal-filter.js';
import { completeDeviceLogin } from '../helpers/idp-browser.js';
import { freePort } from '../helpers/postgres.js';
import { type ServerFixture, startControlPlane, USERS } from '../helpers/control-plane.js';
import { cliLogin, eventually } from '../helpers/e2e-stack.js';
import { JIT_BIN, makeHome, runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { sshdAvailable, startSshd, type TestSshd } from '../helpers/sshd.js';

const run = promisify(execFile);
const alicePassword = USERS.find((u) => u.username === 'alice')!.password;
const bobPassword = USERS.find((u) => u.username === 'bob')!.password;

describe.skipIf(!sshdAvailable())('jit ssh (e2e)', () => {
  let sshd: TestSshd;
  let cp: ServerFixture;
  let server: SpawnedJit;
  let agent: SpawnedJit;
  let agentConfig: string;
  let home: string;
  let bobHome: string;
  const ssh = (args: string[], input?: string, timeoutMs = 30_000) =>
    runJit(['ssh', '--server', cp.url, ...args], { home, ...(input !== undefined ? { input } : {}), timeoutMs });
  const startAgent = async () => {
    agent = spawnJit(['agent', '--config', agentConfig, '--log-level', 'warn'], {
      home: makeHome(),
      env: { JIT_AGENT_TOKEN: cp.agentToken, SSH_CA_KEY: sshd.caPrivateText },
    });
    await agent.waitForLine('stderr', /agent local started/, 30_000);
  };

  beforeAll(async () => {
    sshd = await startSshd();
    cp = await startControlPlane({
      writeOnly: true,
      policy: {
        targets: [{ name: 'web-1', type: 'ssh', agent: 'local', description: 'e2e host', recordInput: true }],
        access: [{ name: 'engineers', targets: ['web-1'], groups: ['engineers'], logins: [sshd.login] }],
        guardrails: [
          { name: 'no-reboot', targets: ['web-1'], match: { commands: ['reboot', 'shutdown'] }, action: 'block' },
          {
            name: 'restarts-need-bob',
            targets: ['web-1'],
            match: { commands: ['echo approve-me'] },
            action: 'require-approval',
            approvers: { users: ['bob'], timeout: '10m' },
          },
        ],
      },
      sessions: { heartbeatTimeout: '5s', heartbeatInterval: '1s' },
    });
    agentConfig = path.join(cp.dir, 'agent.yaml');
    writeFileSync(
      agentConfig,
      stringify({
        name: 'local',
        controlPlane: cp.url,
        targets: { 'web-1': { type: 'ssh', host: sshd.host, port: sshd.port, hostKeys: [sshd.hostKeyLine], caKeyEnv: 'SSH_CA_KEY' } },
      }),
    );
    server = spawnJit(['server', '--config', cp.serverConfigPath, '--log-level', 'warn'], { home: makeHome() });
    await server.waitForLine('stderr', /listening on/, 30_000);
    await startAgent();
    [home, bobHome] = await Promise.all([cliLogin(cp.url, 'alice', alicePassword), cliLogin(cp.url, 'bob', bobPassword)]);
  });

  afterAll(async () => {
    for (const p of [agent, server]) {
      p?.kill('SIGTERM');
      await p?.exited(10_000).catch(() => p.kill('SIGKILL'));
    }
    await cp?.stop();
    await sshd?.stop();
  });

  const lastSession = async (): Promise<string> => {
    const r = await runJit(['sessions', '--json', '--server', cp.url], { home });
    return (JSON.parse(r.stdout) as { sessions: { id: string }[] }).sessions[0]!.id;
  };

  it('runs a command: stdout and stderr kept apart, the remote exit status is jit’s', async () => {
    const r = await ssh(['web-1', '--', 'echo hello; echo oops >&2; exit 7']);
    expect(r.stdout).toBe('hello\n');
    expect(r.stderr).toBe('oops\n');
    expect(r.code).toBe(7);
    const id = await lastSession();
    const ev = await runJit(['replay', id, '--events', '--server', cp.url], { home });
    expect(ev.stdout).toMatch(/credential\.created\s+ssh certificate jit:alice:/);
    expect(ev.stdout).toMatch(/command\.executed\s+echo hello; echo oops >&2; exit 7 {2}→ exit 7/);
    expect(ev.stdout).toMatch(/credential\.destroyed/);
  });

  it('pipes stdin to the command', async () => {
    const r = await ssh(['web-1', '--', 'tr', 'a-z', 'A-Z'], 'from stdin\n');
    expect(r).toMatchObject({ code: 0, stdout: 'FROM STDIN\n', stderr: '' });
  });

  it('blocks a guarded command with one stderr line and exit code 4', async () => {
    const r = await ssh(['web-1', '--', 'uptime && sudo /sbin/reboot']);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('jit: blocked by rule no-reboot: `reboot`\n');
    expect(r.code).toBe(4);
  });

  /** The id of bob's pending request holding exactly `command` (waits for the agent to file it). */
  const heldCommand = async (command: string): Promise<string> => {
    let id: string | undefined;
    const found = await eventually(async () => {
      const r = await runJit(['requests', '--to-review', '--json', '--server', cp.url], { home: bobHome });
      const parsed = JSON.parse(r.stdout);
      const list = (Array.isArray(parsed) ? parsed : parsed.requests) as any[];
      id = list.find((x) => x.kind === 'statement' && x.state === 'pending' && x.statement?.sql === command)?.id;
      return id !== undefined;
    }, 20_000);
    expect(found, `no pending request for ${command}`).toBe(true);
    return id!;
  };

  it('holds a require-approval command until bob approves it, then runs exactly it', async () => {
    const command = 'echo approve-me && echo ran; exit 5';
    const child = spawnJit(['ssh', '--server', cp.url, 'web-1', '--', command], { home });
    await child.waitForLine(
      'stderr',
      /^jit: waiting for approval of: echo approve-me && echo ran; exit 5 \(rule restarts-need-bob; approvers: bob\)$/,
      20_000,
    );
    const id = await heldCommand(command);
    expect(child.stdout()).toBe('');
    expect((await runJit(['approve', id, '--server', cp.url], { home: bobHome })).code).toBe(0);
    const { code } = await child.exited(20_000);
    expect(child.stdout()).toBe('approve-me\nran\n');
    expect(code).toBe(5);
    const ev = await runJit(['replay', await lastSession(), '--events', '--server', cp.url], { home });
    expect(ev.stdout).toMatch(/command\.executed\s+echo approve-me && echo ran; exit 5 {2}→ exit 5/);
  });

  it('refuses a require-approval command bob denies, with his reason and exit code 4', async () => {
    const command = 'echo approve-me --no';
    const child = spawnJit(['ssh', '--server', cp.url, 'web-1', '--', command], { home });
    const id = await heldCommand(command);
    expect((await runJit(['deny', id, '--reason', 'not during the freeze', '--server', cp.url], { home: bobHome })).code).toBe(0);
    const { code } = await child.exited(20_000);
    expect(code).toBe(4);
    expect(child.stdout()).toBe('');
    expect(child.stderr()).toBe(
      'jit: waiting for approval of: echo approve-me --no (rule restarts-need-bob; approvers: bob)\n' +
        'jit: `echo approve-me --no` needs approval (rule restarts-need-bob) and bob denied it: not during the freeze\n',
    );
  });

  it('refuses a login policy does not allow', async () => {
    const r = await ssh(['web-1', '--login', 'root', '--', 'true']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`You may not log in to web-1 as root; policy allows ${sshd.login}`);
  });

  it('runs an interactive shell in a real terminal, and jit replay plays back what was shown', async () => {
    // script(1) gives jit a real PTY; its stdin feeds the keystrokes.
    const cmd = `${process.execPath} ${JIT_BIN} ssh --server ${cp.url} web-1`;
    const child = spawn('script', ['-qefc', cmd, '/dev/null'], {
      env: {
        PATH: process.env['PATH'],
        HOME: home,
        XDG_CONFIG_HOME: path.join(home, '.config'),
        JIT_KEYRING: 'file',
        TERM: 'xterm',
        LANG: 'C.UTF-8',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let shown = '';
    child.stdout.on('data', (d: Buffer) => {
      shown += d.toString('utf8');
    });
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    expect(await eventually(async () => /\$ $/.test(shown), 20_000, 50)).toBe(true);
    child.stdin.write('echo "answer $((6*7))"; tty\r');
    expect(await eventually(async () => shown.includes('answer 42'), 10_000, 50)).toBe(true);
    child.stdin.write('exit 3\r');
    expect(await exited).toBe(3);
    expect(shown).toMatch(/\/dev\/pts\/\d+/);
    const id = await lastSession();
    const replay = await runJit(['replay', id, '--server', cp.url], { home });
    expect(replay.code).toBe(0);
    // The local terminal turns each "\n" into "\r\n" on output (libuv's raw mode keeps ONLCR), so
    // compare line by line; every byte of text is the same.
    const lines = (s: string) => s.replace(/\r+\n/g, '\n');
    // what was shown, less what the replay filter keeps from the viewer's terminal (bash's title OSC)
    const filter = new TerminalFilter();
    expect(lines(replay.stdout)).toBe(lines(filter.push(shown)));
    const raw = await runJit(['replay', id, '--raw', '--server', cp.url], { home });
    expect(lines(raw.stdout)).toBe(lines(shown));
    expect(replay.stdout).toContain('answer 42');
    const cast = await runJit(['replay', id, '--events', '--server', cp.url], { home });
    expect(cast.stdout).toMatch(/shell\.started/);
    expect(cast.stdout).toMatch(/recording\.started\s+.*recordings\/[a-z0-9]{20}\.cast/);
    expect(cast.stdout).toMatch(/recording\.finished/);
  });

  /** OpenSSH's own client through `jit ssh --stdio` as ProxyCommand, as alice. */
  const proxied = () => ({
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), JIT_KEYRING: 'file', JIT_SERVER: cp.url },
    opts: [
      '-o',
      `ProxyCommand=${process.execPath} ${JIT_BIN} ssh --stdio --login %r %n`,
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'LogLevel=ERROR',
      '-o',
      'BatchMode=yes',
    ],
  });

  it('carries OpenSSH through ProxyCommand: scp both ways, ssh commands judged by the same guardrails', async () => {
    const { env, opts } = proxied();
    const local = path.join(home, 'payload.bin');
    const payload = randomBytes(300_000);
    writeFileSync(local, payload);
    const name = `jit-scp-${randomBytes(4).toString('hex')}.bin`;
    await run('scp', [...opts, local, `${sshd.login}@web-1:${name}`], { env, timeout: 30_000 }).catch((e) => {
      throw new Error(`scp failed: ${e.stderr}\n${agent.stderr()}`);
    });
    expect(readFileSync(`/home/${sshd.login}/${name}`).equals(payload)).toBe(true);
    const back = path.join(home, 'back.bin');
    await run('scp', [...opts, `${sshd.login}@web-1:${name}`, back], { env, timeout: 30_000 });
    expect(readFileSync(back).equals(payload)).toBe(true);

    const ok = await run('ssh', [...opts, `${sshd.login}@web-1`, 'echo via-proxy'], { env, timeout: 30_000 });
    expect(ok.stdout).toBe('via-proxy\n');
    const blocked = await run('ssh', [...opts, `${sshd.login}@web-1`, 'reboot'], { env, timeout: 30_000 }).catch((e) => e);
    expect(blocked.code).toBe(126);
    expect(blocked.stderr).toContain('jit: blocked by rule no-reboot: `reboot`');
  });

  it('through ProxyCommand too, a require-approval command waits for bob and runs exactly it; X11 and agent forwarding are refused and recorded', async () => {
    const { env, opts } = proxied();
    // OpenSSH asks for agent forwarding only with an agent to forward, and for X11 only with a DISPLAY.
    const agentSock = path.join(home, 'agent.sock');
    const sshAgent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
    expect(await eventually(async () => existsSync(agentSock), 5_000)).toBe(true);
    const command = 'echo approve-me && echo via-proxy-approved';
    const child = spawn('ssh', [...opts, '-A', '-X', `${sshd.login}@web-1`, command], {
      env: { ...env, SSH_AUTH_SOCK: agentSock, DISPLAY: 'localhost:99' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => void sshAgent.kill());
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const id = await heldCommand(command);
    expect(out).toBe('');
    expect((await runJit(['approve', id, '--server', cp.url], { home: bobHome })).code).toBe(0);
    expect(await exited, err).toBe(0);
    expect(out).toBe('approve-me\nvia-proxy-approved\n');
    expect(err).toMatch(
      /jit: waiting for approval of: echo approve-me && echo via-proxy-approved \(rule restarts-need-bob; approvers: bob\)/,
    );
    const ev = await runJit(['replay', await lastSession(), '--json', '--server', cp.url], { home });
    const list = (JSON.parse(ev.stdout) as { events: { type: string; data: Record<string, unknown> }[] }).events;
    expect(list.filter((e) => e.type === 'command.blocked').map((e) => e.data['rule'])).toEqual(
      expect.arrayContaining(['jit.x11', 'jit.agent-forwarding']),
    );
    expect(list.find((e) => e.type === 'command.started')?.data).toMatchObject({
      command,
      approval: { rule: 'restarts-need-bob', request: id },
    });
  });

  it('tells the user when the agent dies mid-session, and keeps the recording so far', async () => {
    const child = spawnJit(['ssh', '--server', cp.url, 'web-1', '--', 'echo started-work; sleep 30; echo never'], { home });
    await child.waitForLine('stdout', /started-work/, 20_000);
    const id = await lastSession();
    await new Promise((r) => setTimeout(r, 600)); // a recording flush
    agent.kill('SIGKILL');
    const { code } = await child.exited(20_000);
    expect(code).toBe(7);
    expect(child.stderr()).toContain('The connection to web-1 was lost before the remote side finished');
    expect(child.stdout()).not.toContain('never');
    await startAgent();
    const replay = await runJit(['replay', id, '--server', cp.url], { home });
    expect(replay.stdout).toBe('started-work\n');
  });
});

describe.skipIf(!sshdAvailable())("jit dev's demo-host", () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'jit-dev-ssh-'));
  // The dev PostgreSQL runs as the postgres OS user when jit dev runs as root.
  chmodSync(work, 0o755);
  const procs: SpawnedJit[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) {
      if (p.child.exitCode === null) {
        p.kill('SIGINT');
        await p.exited(30_000).catch(() => p.kill('SIGKILL'));
      }
    }
    rmSync(work, { recursive: true, force: true });
  });

  it('serves the machine’s own sshd as demo-host, with reboot blocked', async () => {
    const port = await freePort();
    const server = `http://127.0.0.1:${port}`;
    const dev = spawnJit(['dev', '--dir', path.join(work, '.jit-dev'), '--port', String(port)], { cwd: work });
    procs.push(dev);
    await dev.waitForLine('stderr', /Ctrl-C stops everything/, 90_000);
    expect(dev.stderr()).toMatch(/SSH\s+127\.0\.0\.1:\d+\s+target demo-host/);
    const pw = /\balice\s+([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})\s/.exec(dev.stderr())?.[1] ?? '';
    const home = makeHome();
    const login = spawnJit(['login', '--server', server], { home });
    procs.push(login);
    const [, url] = (await login.waitForLine('stderr', /^\s+(http:\/\/\S+)$/, 20_000)) as RegExpMatchArray;
    await completeDeviceLogin({ verificationUriComplete: url!, username: 'alice', password: pw });
    expect((await login.exited(30_000)).code).toBe(0);

    const who = await runJit(['ssh', '--server', server, 'demo-host', '--', 'whoami'], { home });
    expect(who).toMatchObject({ code: 0, stdout: `${os.userInfo().username}\n` });
    const reboot = await runJit(['ssh', '--server', server, 'demo-host', '--', 'sudo', 'reboot'], { home });
    expect(reboot.code).toBe(4);
    expect(reboot.stderr).toBe('jit: blocked by rule no-reboot: rebooting or shutting down the demo host is not allowed\n');
  });
});
