/**
 * A real OpenSSH server for tests: `/usr/sbin/sshd -D -e -f <tmp config>` on 127.0.0.1:<free
 * port>, trusting a user CA (TrustedUserCAKeys; the principal must equal the login), with a
 * fresh Ed25519 host key, password and keyboard-interactive logins off, and a local test account.
 * Needs root (sshd switches to the user); tests skip when sshd or root is missing.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ed25519PublicBlob, encodeOpenSshEd25519PrivateKey, publicKeyLine } from '#protocol/ssh/keys.js';
import { freePort } from './postgres.js';

export const SSHD = '/usr/sbin/sshd';
/** The local account sessions log in as. */
export const TEST_LOGIN = 'jitssh';

/** Whether this machine can run the sshd tests. */
export function sshdAvailable(): boolean {
  return existsSync(SSHD) && process.getuid?.() === 0;
}

/** An Ed25519 key as an OpenSSH private key file text and a public key line. */
export function makeEd25519(comment = ''): { privateText: string; publicLine: string; blob: Buffer } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d!, 'base64url');
  const pub = Buffer.from(jwk.x!, 'base64url');
  const blob = ed25519PublicBlob(pub);
  return {
    privateText: encodeOpenSshEd25519PrivateKey(seed, pub, randomBytes(4), comment),
    publicLine: publicKeyLine(blob, comment),
    blob,
  };
}

/** Create the test account if missing (idempotent across parallel test files). */
export function ensureTestUser(login = TEST_LOGIN): void {
  const exists = () => {
    try {
      execFileSync('id', ['-u', login], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!exists()) {
    try {
      execFileSync('useradd', ['-m', '-s', '/bin/bash', login], { stdio: 'ignore' });
    } catch {
      if (!exists()) throw new Error(`cannot create the test account ${login}`);
    }
  }
  // useradd leaves the password field "!", which sshd without PAM reads as a locked account;
  // "*" is "no password" without the lock (certificates are the only way in).
  execFileSync('usermod', ['-p', '*', login], { stdio: 'ignore' });
}

export interface TestSshd {
  host: string;
  port: number;
  /** The host key line the agent must know. */
  hostKeyLine: string;
  /** The CA the server trusts: its private key text (for the agent) and public line. */
  caPrivateText: string;
  caPublicLine: string;
  login: string;
  dir: string;
  /** sshd's log so far (-e: to stderr). */
  log(): string;
  stop(): Promise<void>;
}

/** Start sshd trusting a fresh user CA (or the one given). */
export async function startSshd(opts: { ca?: { privateText: string; publicLine: string } } = {}): Promise<TestSshd> {
  ensureTestUser();
  // Privilege separation directory sshd insists on.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-sshd-'));
  const host = makeEd25519('test-host');
  const ca = opts.ca ?? makeEd25519('test-ca');
  writeFileSync(path.join(dir, 'host_key'), host.privateText, { mode: 0o600 });
  writeFileSync(path.join(dir, 'ca.pub'), `${ca.publicLine}\n`);
  const port = await freePort();
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${path.join(dir, 'host_key')}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `TrustedUserCAKeys ${path.join(dir, 'ca.pub')}`,
    'AuthorizedKeysFile none',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'UsePAM no',
    'StrictModes no',
    'AcceptEnv LANG LC_* JIT_TEST_*',
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
  const configPath = path.join(dir, 'sshd_config');
  writeFileSync(configPath, config);
  let log = '';
  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited: ${log}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > until) throw new Error(`sshd did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host: '127.0.0.1',
    port,
    hostKeyLine: host.publicLine,
    caPrivateText: ca.privateText,
    caPublicLine: ca.publicLine,
    login: TEST_LOGIN,
    dir,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The sshd pid file's pid (for tests that look at the process). */
export function sshdPid(d: TestSshd): number {
  return Number(readFileSync(path.join(d.dir, 'sshd.pid'), 'utf8').trim());
}
