/**
 * Nothing outlives the session: a host account per session (`jit_<session>`, Teleport's host user
 * creation in "drop" mode). The agent creates it through the target's admin login before the
 * session's first login, the session logs in as it (its certificate names only it), and when the
 * session ends the agent kills every process the account owns — backgrounded, `nohup`, `setsid`,
 * double-forked, `disown`ed alike, since they all keep its uid — checks that none is left, and
 * deletes the account and its home. An account left behind by an agent that died is removed when
 * the agent starts again.
 *
 * The admin login (root, or an account with passwordless sudo) gets its own short-lived
 * certificate from the same CA for each of these operations; the commands it runs are fixed
 * strings with the account name validated, never user input.
 */
import { JitError } from '#shared/errors/jit-error.js';
import type { SessionInfo, SshSessionRules } from '#shared/contract/agent.js';
import { SESSION_ROLE_PREFIX } from '#shared/contract/ids.js';
import type { Logger } from '#shared/log.js';
import type { SshCredentials } from '../../credentials/ssh-ca.js';
import type { EmitEvent } from '../../events.js';
import type { SshTargetRef } from './engine.js';
import { connectUpstream } from './upstream.js';

/** The session's host account name (the same name as its PostgreSQL role); session ids are 20 lowercase letters and digits. */
export function sessionAccount(sessionId: string): string {
  if (!/^[a-z0-9]{1,27}$/.test(sessionId)) throw new JitError('JIT_INTERNAL', { detail: 'session id unfit for an account name' });
  return `${SESSION_ROLE_PREFIX}${sessionId}`;
}

const ACCOUNT = /^jit_[a-z0-9]{1,27}$/;

export interface HostUsersDeps {
  credentials: SshCredentials;
  emit: EmitEvent;
  logger: Logger;
}

export class HostUsers {
  private readonly ready = new Map<string, { target: SshTargetRef; p: Promise<void> }>();

  constructor(private readonly deps: HostUsersDeps) {}

  /** The rules a session's logins use on a target with host users: its own account, in the policy login's group. */
  async prepare(target: SshTargetRef, session: SessionInfo, rules: SshSessionRules): Promise<SshSessionRules> {
    const hu = target.config.hostUsers;
    if (!hu) return rules;
    const user = sessionAccount(session.id);
    let p = this.ready.get(session.id)?.p;
    if (!p) {
      const group = rules.login;
      const shell = hu.shell;
      // the policy login names a group to join when the host has one
      const script = [
        `id -u ${user} >/dev/null 2>&1 && exit 0`,
        `g=""; getent group ${group} >/dev/null 2>&1 && g="-G ${group}"`,
        // password '*': no password login, but not a locked account (sshd refuses locked ones)
        `useradd -m -p '*' -s ${shell} $g ${user}`,
      ].join('; ');
      p = this.run(target, script).then((r) => {
        if (r.code !== 0)
          throw new JitError('JIT_CREDENTIAL_FAILED', {
            message: `cannot create the host account ${user}`,
            detail: r.stderr.slice(0, 300),
          });
        this.deps.emit({
          event: 'host-user.created',
          session: session.id,
          target: session.target,
          outcome: 'success',
          data: { user, group },
        });
      });
      this.ready.set(session.id, { target, p });
    }
    await p;
    return { ...rules, login: user, principals: [user] };
  }

  /**
   * End the session's account, if this agent made one: kill everything it owns until nothing is
   * left, then delete it; records host-user.removed (outcome failure when something survived).
   */
  async remove(sessionId: string, reason: string): Promise<void> {
    const had = this.ready.get(sessionId);
    if (!had) return;
    this.ready.delete(sessionId);
    await had.p.catch(() => {});
    await this.removeAccount(had.target, sessionAccount(sessionId), sessionId, reason);
  }

  /** At agent start: accounts of sessions this agent no longer serves (it died) are removed. */
  async sweep(target: SshTargetRef): Promise<void> {
    if (!target.config.hostUsers) return;
    const r = await this.run(target, "getent passwd | cut -d: -f1 | grep '^jit_[a-z0-9]*$' || true");
    for (const user of r.stdout.split('\n').map((l) => l.trim())) {
      if (ACCOUNT.test(user)) await this.removeAccount(target, user, user.slice(4), 'agent restarted');
    }
  }

  private async removeAccount(target: SshTargetRef, user: string, sessionId: string, reason: string): Promise<void> {
    if (!ACCOUNT.test(user)) return;
    // pkill until pgrep finds nothing (a fork racing the first kill is caught by the next), then userdel
    const script = [
      `id -u ${user} >/dev/null 2>&1 || { echo gone; exit 0; }`,
      `n=$(pgrep -u ${user} | wc -l)`,
      `for i in $(seq 1 50); do pkill -KILL -u ${user} 2>/dev/null; pgrep -u ${user} >/dev/null || break; sleep 0.1; done`,
      `pgrep -u ${user} >/dev/null && { echo "left $(pgrep -u ${user} | wc -l)"; exit 3; }`,
      `userdel -r -f ${user} 2>/dev/null; id -u ${user} >/dev/null 2>&1 && exit 4`,
      'echo "killed $n"',
    ].join('; ');
    try {
      const r = await this.run(target, script);
      const killed = Number(/killed (\d+)/.exec(r.stdout)?.[1] ?? 0);
      if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`.slice(0, 300));
      if (/gone/.test(r.stdout)) return;
      this.deps.emit({
        event: 'host-user.removed',
        session: sessionId,
        target: target.name,
        outcome: 'success',
        data: { user, processesKilled: killed, reason },
      });
    } catch (err) {
      this.deps.logger.error({ target: target.name, user, err: (err as Error).message }, 'could not remove a session host account');
      this.deps.emit({
        event: 'host-user.removed',
        session: sessionId,
        target: target.name,
        outcome: 'failure',
        data: { user, reason, error: (err as Error).message.slice(0, 200) },
      });
    }
  }

  /** Run a fixed admin script on the host through the admin login. */
  private async run(target: SshTargetRef, script: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const hu = target.config.hostUsers!;
    const cert = this.deps.credentials.forAdmin(target.ca, target.name, hu.adminLogin);
    const client = await connectUpstream({ target: target.config, hostKeys: target.hostKeys, login: hu.adminLogin, cert });
    const command =
      hu.adminLogin === 'root' ? `sh -c '${script.replace(/'/g, `'\\''`)}'` : `sudo -n sh -c '${script.replace(/'/g, `'\\''`)}'`;
    try {
      return await new Promise((resolve, reject) => {
        client.exec(command, (err, ch) => {
          if (err) return reject(err);
          let stdout = '';
          let stderr = '';
          ch.on('data', (d: Buffer) => {
            stdout += d.toString();
          });
          ch.stderr.on('data', (d: Buffer) => {
            stderr += d.toString();
          });
          ch.on('close', (code: number | null) => resolve({ code: code ?? -1, stdout, stderr }));
        });
      });
    } finally {
      client.end();
    }
  }
}
