/**
 * The OpenSSH baseline: our own sshd on 127.0.0.1:<free port> (temporary host key and
 * authorized key, nothing of the machine's ssh setup is read or changed) and an `ssh -N -L`
 * forward to PostgreSQL, with OpenSSH's default cipher and no compression.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, now, run, waitForPort } from './proc.js';

export const SSHD = '/usr/sbin/sshd';

async function keygen(file) {
  const r = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'jit-bench', '-f', file], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.trim()}`);
}

/**
 * Start sshd and an `ssh -L` forward from a free local port to 127.0.0.1:`targetPort`.
 * Returns `{ port, readyMs, sshPid, sshdPid }` (readyMs: from starting ssh until the forward
 * accepts connections).
 */
export async function startSshForward({ procs, dir, targetPort }) {
  if (!existsSync(SSHD)) {
    throw new Error(`${SSHD} is missing; install OpenSSH's server (Debian: apt-get install -y openssh-server)`);
  }
  const sshDir = path.join(dir, 'ssh');
  mkdirSync(sshDir, { mode: 0o700 });
  const hostKey = path.join(sshDir, 'host_key');
  const clientKey = path.join(sshDir, 'client_key');
  await Promise.all([keygen(hostKey), keygen(clientKey)]);
  const authorized = path.join(sshDir, 'authorized_keys');
  writeFileSync(authorized, readFileSync(`${clientKey}.pub`), { mode: 0o600 });

  const sshdPort = await freePort();
  const config = path.join(sshDir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${sshdPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorized}`,
      `PidFile ${path.join(sshDir, 'sshd.pid')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      // The temp folder is ours; the user's home directory permissions are none of our business.
      'StrictModes no',
      'UsePAM no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  // Debian's sshd insists on its privilege separation directory when started as root.
  if (os.userInfo().uid === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const sshd = procs.spawn('sshd', SSHD, ['-D', '-e', '-f', config]);
  await waitForPort(sshdPort, 10_000, 'sshd');

  const localPort = await freePort();
  const started = now();
  const ssh = procs.spawn('ssh -L', 'ssh', [
    '-N',
    '-F',
    '/dev/null',
    '-i',
    clientKey,
    '-p',
    String(sshdPort),
    '-L',
    `127.0.0.1:${localPort}:127.0.0.1:${targetPort}`,
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'ExitOnForwardFailure=yes',
    '-o',
    'LogLevel=ERROR',
    `${os.userInfo().username}@127.0.0.1`,
  ]);
  try {
    await waitForPort(localPort, 10_000, 'ssh -L');
  } catch (err) {
    throw new Error(`${err.message}\n${ssh.tail()}`);
  }
  return { port: localPort, readyMs: now() - started, sshPid: ssh.pid, sshdPid: sshd.pid };
}
