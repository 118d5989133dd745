/**
 * What `jit dev` prints once everything runs. The "next steps" are the same commands as the
 * README's walkthrough; change both together.
 */
import type { DevUser } from './state.js';

export const DEFAULT_DEV_PORT = 8443;

export interface BannerInput {
  serverUrl: string;
  serverPort: number;
  pgPort: number;
  /** The dev folder as the user should read it (relative when under the cwd). */
  dirShown: string;
  users: Array<Pick<DevUser, 'username' | 'password' | 'groups'>>;
  /** Whether the cwd is a jit checkout (bin/jit.js exists): then show the alias line. */
  inCheckout: boolean;
  agentConnected: boolean;
  color: boolean;
  /** The demo-host sshd's port, when there is one. */
  sshPort?: number;
}

/** The banner text (stderr). */
export function bannerText(b: BannerInput): string {
  const bold = (s: string) => (b.color ? `\x1b[1m${s}\x1b[22m` : s);
  const dim = (s: string) => (b.color ? `\x1b[2m${s}\x1b[22m` : s);
  const green = (s: string) => (b.color ? `\x1b[32m${s}\x1b[39m` : s);
  const yellow = (s: string) => (b.color ? `\x1b[33m${s}\x1b[39m` : s);
  const nameWidth = Math.max(...b.users.map((u) => u.username.length));
  const userLines = b.users.map((u, i) => {
    const label = i === 0 ? '  Dev users      ' : '                 ';
    const role = u.groups.includes('jit-admins') ? 'administrator' : 'engineer';
    return `${label}${u.username.padEnd(nameWidth)}  ${bold(u.password)}  ${dim(`${role}; groups: ${u.groups.join(', ')}`)}`;
  });
  // The CLI's default server is http://127.0.0.1:8443; any other port must be named once.
  const login = b.serverPort === DEFAULT_DEV_PORT ? 'jit login' : `jit login --server ${b.serverUrl}`;
  const rows: Array<[string, string]> = [
    ...(b.inCheckout ? [['alias jit="node $PWD/bin/jit.js"', 'run the CLI from this checkout'] as [string, string]] : []),
    [login, 'open the URL it prints; log in as alice'],
    ['jit connect demo-db', 'prints a postgresql:// URL; leave it running'],
    ['psql "<that URL>"', 'in a third terminal; try: select count(*) from customers;'],
  ];
  const width = Math.max(...rows.map(([cmd]) => cmd.length)) + 2;
  const steps = rows.map(([cmd, why]) => `${cmd.padEnd(width)}${dim(`# ${why}`)}`);
  return [
    '',
    `${green('●')} ${bold('jit dev is running')}  ${dim(`(state in ${b.dirShown})`)}`,
    '',
    `  Control plane  ${b.serverUrl}`,
    `  PostgreSQL     127.0.0.1:${b.pgPort}  ${dim('database demo, target demo-db — reach it through jit connect')}`,
    ...(b.sshPort
      ? [`  SSH            127.0.0.1:${b.sshPort}  ${dim('target demo-host — jit ssh demo-host -- uptime (reboot is blocked)')}`]
      : []),
    ...userLines,
    ...(b.agentConnected ? [] : ['', yellow('  ! the agent has not connected yet; jit connect fails until it does (see the log above)')]),
    '',
    `Next, in a second terminal${b.inCheckout ? ' in this folder' : ''}:`,
    '',
    ...steps.map((s) => `  ${s}`),
    '',
    dim('Ctrl-C stops everything (data is kept); --reset starts from scratch. Details: docs/getting-started.md'),
    '',
  ].join('\n');
}
