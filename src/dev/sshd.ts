/**
 * `jit dev`'s demo SSH host: the machine's own OpenSSH server (`/usr/sbin/sshd`) started on
 * 127.0.0.1:<free port> with a config of our own in `<dev folder>/ssh/`: it trusts the dev user
 * CA (TrustedUserCAKeys), so the only way in is a jit session certificate, for the account that
 * runs jit dev. The CA and host keys are made once and kept, so known hosts stay valid.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ed25519PublicBlob, encodeOpenSshEd25519PrivateKey, publicKeyLine } from '#protocol/ssh/keys.js';
import type { Clock } from '#shared/runtime/ctx.js';
import { anyFreePort } from './postgres.js';

export const SSHD_PATH = '/usr/sbin/sshd';

export interface DevSshd {
  port: number;
  /** The account sessions log in as (whoever runs jit dev). */
  login: string;
  hostKeyLine: string;
  caKeyFile: string;
  stop(): Promise<void>;
}

function ensureKey(file: string, comment: string): string {
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    const seed = Buffer.from(jwk.d ?? '', 'base64url');
    const pub = Buffer.from(jwk.x ?? '', 'base64url');
    writeFileSync(file, encodeOpenSshEd25519PrivateKey(seed, pub, randomBytes(4), comment), { mode: 0o600 });
    writeFileSync(`${file}.pub`, `${publicKeyLine(ed25519PublicBlob(pub), comment)}\n`);
  }
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

/** Start the demo sshd; undefined when this machine has no OpenSSH server. */
export async function startDevSshd(opts: { dir: string; clock: Clock }): Promise<DevSshd | undefined> {
  if (!existsSync(SSHD_PATH)) return undefined;
  const dir = path.join(opts.dir, 'ssh');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caKeyFile = path.join(dir, 'user_ca');
  const hostKeyFile = path.join(dir, 'host_key');
  ensureKey(caKeyFile, 'jit dev user CA');
  const hostKeyLine = ensureKey(hostKeyFile, 'jit dev host');
  const login = os.userInfo().username;
  const root = process.getuid?.() === 0;
  if (root) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const port = await anyFreePort();
  const config = [
    '# Written by jit dev at every start: the demo-host target. Only jit certificates get in.',
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKeyFile}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `TrustedUserCAKeys ${caKeyFile}.pub`,
    'AuthorizedKeysFile none',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'StrictModes no',
    'UsePAM no',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
  const configFile = path.join(dir, 'sshd_config');
  writeFileSync(configFile, config, { mode: 0o600 });
  let log = '';
  const child: ChildProcess = spawn(SSHD_PATH, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-4000);
  });
  const until = opts.clock.now() + 5_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited: ${log.trim()}`);
    if (await canConnect(port)) break;
    if (opts.clock.now() > until) {
      child.kill('SIGTERM');
      throw new Error(`sshd did not start: ${log.trim()}`);
    }
    await new Promise<void>((r) => opts.clock.setTimeout(r, 50));
  }
  return {
    port,
    login,
    hostKeyLine,
    caKeyFile,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
