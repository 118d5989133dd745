/**
 * SSH commands judged as they will run (issue 13, item 1), end to end from the built binary: jit
 * server, jit agent and a real sshd. Each attack tries to create a marker file on the host through
 * a construct a word-splitting guard misses; the host's file system is the ground truth that
 * nothing ran. A second target is in allowlist mode.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerFixture, startControlPlane, USERS } from '../helpers/control-plane.js';
import { cliLogin, eventually } from '../helpers/e2e-stack.js';
import { JIT_BIN, makeHome, runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';
import { freePort } from '../helpers/postgres.js';
import { echoServer, probeTunnel } from '../helpers/tcp.js';
import { makeEd25519, sshdAvailable, startSshd, type TestSshd } from '../helpers/sshd.js';

const run = promisify(execFile);

describe.skipIf(!sshdAvailable())('SSH commands are judged as they will run (e2e)', () => {
  let sshd: TestSshd;
  let cp: ServerFixture;
  let server: SpawnedJit;
  let agent: SpawnedJit;
  let home: string;
  /** A directory the test login can write to; markers land here only if a refused command ran. */
  const dir = `/tmp/jit-e2e-guard-${randomBytes(4).toString('hex')}`;

  const ssh = (target: string, line: string) => runJit(['ssh', '--server', cp.url, target, '--', line], { home, timeoutMs: 30_000 });

  let echoAllowed: Awaited<ReturnType<typeof echoServer>>;
  let echoOther: Awaited<ReturnType<typeof echoServer>>;
  const portOf = (e: { port: number }) => e.port;

  beforeAll(async () => {
    [echoAllowed, echoOther] = await Promise.all([echoServer(), echoServer()]);
    sshd = await startSshd();
    await run('install', ['-d', '-m', '0777', dir]);
    cp = await startControlPlane({
      writeOnly: true,
      policy: {
        targets: [
          { name: 'deny-1', type: 'ssh', agent: 'local', description: 'denylist host' },
          { name: 'allow-1', type: 'ssh', agent: 'local', description: 'allowlist host', commandMode: 'allowlist' },
          { name: 'drop-1', type: 'ssh', agent: 'local', description: 'a host account per session' },
          { name: 'fwd-1', type: 'ssh', agent: 'local', description: 'forwarding to one destination' },
          { name: 'badkey-1', type: 'ssh', agent: 'local', description: 'a host whose key the agent does not know' },
        ],
        access: [
          { name: 'engineers', targets: ['deny-1', 'allow-1', 'drop-1', 'badkey-1'], groups: ['engineers'], logins: [sshd.login] },
          {
            name: 'tunnels',
            targets: ['fwd-1'],
            groups: ['engineers'],
            logins: [sshd.login],
            allowForwarding: true,
            forwardTo: [`127.0.0.1:${portOf(echoAllowed)}`],
          },
        ],
        guardrails: [
          { name: 'no-touch', targets: ['deny-1'], match: { commands: ['touch', 'reboot'] }, action: 'block' },
          { name: 'reads', targets: ['allow-1'], match: { commands: ['uptime', 'ls', 'echo'] }, action: 'allow' },
        ],
      },
      sessions: { heartbeatTimeout: '5s', heartbeatInterval: '1s' },
    });
    const agentConfig = path.join(cp.dir, 'agent.yaml');
    const host = { type: 'ssh', host: sshd.host, port: sshd.port, hostKeys: [sshd.hostKeyLine], caKeyEnv: 'SSH_CA_KEY' };
    const drop = { ...host, hostUsers: { adminLogin: 'root' } };
    writeFileSync(
      agentConfig,
      stringify({
        name: 'local',
        controlPlane: cp.url,
        targets: {
          'deny-1': host,
          'allow-1': host,
          'drop-1': drop,
          'fwd-1': host,
          'badkey-1': { ...host, hostKeys: [makeEd25519().publicLine] },
        },
      }),
    );
    server = spawnJit(['server', '--config', cp.serverConfigPath, '--log-level', 'warn'], { home: makeHome() });
    await server.waitForLine('stderr', /listening on/, 30_000);
    agent = spawnJit(['agent', '--config', agentConfig, '--log-level', 'warn'], {
      home: makeHome(),
      env: { JIT_AGENT_TOKEN: cp.agentToken, SSH_CA_KEY: sshd.caPrivateText },
    });
    await agent.waitForLine('stderr', /agent local started/, 30_000);
    home = await cliLogin(cp.url, 'alice', USERS.find((u) => u.username === 'alice')!.password);
  }, 120_000);

  afterAll(async () => {
    for (const p of [agent, server]) {
      p?.kill('SIGTERM');
      await p?.exited(10_000).catch(() => p.kill('SIGKILL'));
    }
    await cp?.stop();
    await sshd?.stop();
    await run('rm', ['-rf', dir]).catch(() => {});
    echoAllowed?.server.close();
    echoOther?.server.close();
  });

  const attacks: [string, (marker: string) => string][] = [
    ['an unknown wrapper', (m) => `chrt 0 touch ${m}`],
    ['env -S', (m) => `env -S 'touch ${m}'`],
    ['a shell function', (m) => `f() { touch ${m}; }; f`],
    ['an alias', (m) => `shopt -s expand_aliases; alias t=touch; t ${m}`],
    ['a trap', (m) => `trap 'touch ${m}' EXIT; true`],
    ['a here-string to a shell', (m) => `bash <<< 'touch ${m}'`],
    ['a pipe to a shell', (m) => `echo 'touch ${m}' | sh`],
    ['sourcing generated input', (m) => `source <(echo 'touch ${m}')`],
    ['ANSI-C quoting', (m) => `$'\\x74ouch' ${m}`],
    ['an interpreter', (m) => `python3 -c 'open("${m}", "w")'`],
  ];

  it.each(attacks)('refuses %s and nothing runs on the host', async (_what, make) => {
    const marker = path.join(dir, randomBytes(4).toString('hex'));
    const r = await ssh('deny-1', make(marker));
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toMatch(/^jit: blocked by rule (no-touch|jit\.unparsable)/);
    expect(existsSync(marker)).toBe(false);
  });

  it('still runs what no rule refuses', async () => {
    const marker = path.join(dir, 'ok');
    const r = await ssh('deny-1', `echo touch > ${marker}`);
    expect(r.code).toBe(0);
    expect(existsSync(marker)).toBe(true);
  });

  it('jit replay filters what a host could do to the viewer’s terminal; --raw opts out with a warning', async () => {
    const r = await ssh('deny-1', "printf '\\033]52;c;ZXZpbA==\\007visible\\033]0;owned\\007\\033[6n\\n'");
    expect(r.code).toBe(0);
    const sessions = await runJit(['sessions', '--json', '--server', cp.url], { home });
    const id = (JSON.parse(sessions.stdout) as { sessions: { id: string }[] }).sessions[0]!.id;
    const replay = await runJit(['replay', id, '--server', cp.url], { home });
    expect(replay.stdout).toBe('visible\n');
    expect(replay.stderr).toMatch(/removed terminal sequences .*OSC 52 \(clipboard write\).*OSC title change.*terminal report request/);
    const raw = await runJit(['replay', id, '--raw', '--server', cp.url], { home });
    expect(raw.stdout).toContain('\x1b]52;c;ZXZpbA==');
    expect(raw.stderr).toMatch(/--raw: the recording reaches your terminal unfiltered/);
  });

  it('nothing outlives the session: with host users, its background processes and its account are gone once jit ssh has exited', async () => {
    const tag = String(400 + Math.floor(Math.random() * 500));
    const r = await ssh('drop-1', `nohup sleep ${tag} >/dev/null 2>&1 & setsid sleep ${tag} >/dev/null 2>&1 < /dev/null & id -un`);
    expect(r.code, r.stderr).toBe(0);
    const user = r.stdout.trim();
    expect(user).toMatch(/^jit_[a-z0-9]{20}$/);
    const alive = async () =>
      (await run('pgrep', ['-f', `^sleep ${tag}$`]).then(
        (x) => x.stdout.trim(),
        () => '',
      )) !== '';
    const account = async () =>
      run('id', ['-u', user]).then(
        () => true,
        () => false,
      );
    expect(await eventually(async () => !(await alive()) && !(await account()), 15_000)).toBe(true);
  });

  it('ssh -L through jit ssh --stdio reaches the destination policy names, and nothing else', async () => {
    const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), JIT_KEYRING: 'file', JIT_SERVER: cp.url };
    const [la, lb] = [await freePort(), await freePort()];
    const child = spawn(
      'ssh',
      [
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
        '-N',
        '-L',
        `${la}:127.0.0.1:${portOf(echoAllowed)}`,
        '-L',
        `${lb}:127.0.0.1:${portOf(echoOther)}`,
        `${sshd.login}@fwd-1`,
      ],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let sshErr = '';
    child.stderr!.on('data', (d: Buffer) => {
      sshErr += d.toString();
    });
    const talk = (p: number) => probeTunnel(p, () => sshErr);
    try {
      expect(await talk(la)).toBe('ping');
      expect(await talk(lb)).toBe('');
    } finally {
      child.kill();
    }
  });

  const eventsOf = async (): Promise<{ type: string; data: Record<string, unknown> }[]> => {
    const sessions = await runJit(['sessions', '--json', '--server', cp.url], { home });
    const id = (JSON.parse(sessions.stdout) as { sessions: { id: string }[] }).sessions[0]!.id;
    const r = await runJit(['replay', id, '--json', '--server', cp.url], { home });
    return (JSON.parse(r.stdout) as { events: { type: string; data: Record<string, unknown> }[] }).events;
  };

  it('a certificate is issued for the login only: its window is seconds, not the session', async () => {
    expect((await ssh('deny-1', 'true')).code).toBe(0);
    const created = (await eventsOf()).find((e) => e.type === 'credential.created');
    const after = Date.parse(String(created?.data['validAfter']));
    const before = Date.parse(String(created?.data['validBefore']));
    expect(before - after).toBeLessThanOrEqual(70_000); // 60 s of clock skew allowance + 10 s to log in
  });

  it('refuses a host whose key is not pinned, and the audit says why', async () => {
    const r = await ssh('badkey-1', `touch ${path.join(dir, 'badkey')}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/host key the agent does not know/);
    expect(existsSync(path.join(dir, 'badkey'))).toBe(false);
    const failed = (await eventsOf()).find((e) => e.type === 'ssh.login-failed');
    expect(failed?.data).toMatchObject({ reason: 'host-key-mismatch' });
  });

  it('allowlist mode runs only listed commands', async () => {
    expect((await ssh('allow-1', 'echo listed')).stdout).toBe('listed\n');
    const marker = path.join(dir, 'unlisted');
    const r = await ssh('allow-1', `uptime; touch ${marker}`);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/jit\.not-allowlisted/);
    expect(existsSync(marker)).toBe(false);
    const shell = await ssh('allow-1', 'bash');
    expect(shell.code).toBe(4);
  });
});
