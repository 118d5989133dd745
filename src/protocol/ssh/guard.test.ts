import { beforeAll, describe, expect, it } from 'vitest';
import { loadShellParser } from './shell.js';
import { Guardrail } from '#shared/config/policy.js';
import { blockedLine } from './admit.js';
import { analyzeCommand, commandMatches, judgeCommand, judgeShell, UNPARSABLE_RULE } from './guard.js';

beforeAll(async () => {
  await loadShellParser();
});

const rule = (name: string, action: Guardrail['action'], match: Record<string, unknown>, message?: string) =>
  Guardrail.parse({ name, action, match, ...(message ? { message } : {}) });

const rules = [
  rule('status-ok', 'allow', { commands: ['systemctl status'] }),
  rule('no-reboot', 'block', { commands: ['reboot', 'shutdown', 'poweroff', 'halt', 'systemctl reboot'] }),
  rule('no-wipe', 'block', { commands: ['rm -rf /', 'rm -rf /*'] }, 'wiping the root file system is not allowed'),
  rule('restart-needs-ok', 'require-approval', { commands: ['systemctl restart'] }),
];

// Each row: command line, expected verdict, and why it matters (rows are never deleted).
const corpus: [string, 'allow' | 'block' | 'require-approval', string][] = [
  ['uptime', 'allow', 'plain command'],
  ['ls -la /var/log', 'allow', 'arguments only'],
  ['echo reboot', 'allow', 'the word as an argument is not the command'],
  ['grep -r shutdown /etc', 'allow', 'the word as an argument is not the command'],
  ['systemctl status nginx', 'allow', 'an allow rule first'],
  ['reboot', 'block', 'the command itself'],
  ['sudo reboot', 'block', 'through sudo'],
  ['sudo -u root -- /sbin/reboot', 'block', 'sudo with options and an absolute path'],
  ['/sbin/reboot', 'block', 'absolute path'],
  ['./reboot', 'block', 'relative path'],
  ['r\\eboot', 'block', 'backslash inside the name'],
  ['"re"boot', 'block', 'quotes inside the name'],
  ['a; reboot', 'block', 'after a separator'],
  ['true && reboot', 'block', 'after &&'],
  ['false || reboot', 'block', 'after ||'],
  ['echo hi | reboot', 'block', 'in a pipeline'],
  ['uptime &reboot', 'block', 'after &'],
  ['uptime\nreboot', 'block', 'on the next line'],
  ['(reboot)', 'block', 'in a subshell'],
  ['{ reboot; }', 'block', 'in a group'],
  ['echo $(reboot)', 'block', 'command substitution'],
  ['echo "$(reboot)"', 'block', 'command substitution in double quotes'],
  ['echo `reboot`', 'block', 'backquotes'],
  ["bash -c 'reboot'", 'block', 'nested shell'],
  ["sh -c 'uptime; reboot'", 'block', 'nested shell with a list'],
  ["bash -lc 'sudo reboot'", 'block', 'combined shell flags'],
  ["su -c 'reboot' root", 'block', 'su -c'],
  ['eval reboot', 'block', 'eval'],
  ['FOO=1 reboot', 'block', 'leading assignment'],
  ['env FOO=1 reboot', 'block', 'env with an assignment'],
  ['nohup reboot', 'block', 'nohup'],
  ['timeout 5 reboot', 'block', 'timeout with its duration'],
  ['nice -n 5 reboot', 'block', 'nice with its option'],
  ['xargs reboot < /dev/null', 'block', 'xargs'],
  ['find / -maxdepth 0 -exec reboot \\;', 'block', 'find -exec'],
  ['if true; then reboot; fi', 'block', 'inside if'],
  ['systemctl reboot', 'block', 'systemctl reboot'],
  ['shutdown -h now', 'block', 'shutdown with arguments'],
  ['rm -rf /', 'block', 'the classic'],
  ['rm -fr /', 'block', 'flags in another order'],
  ['rm -r -f /', 'block', 'separate flags'],
  ['rm --recursive --force /', 'block', 'long options'],
  ['rm -rf //', 'block', 'double slash is the root'],
  ['rm -rf /*', 'block', 'a glob is opaque and matches a pattern for it'],
  ['rm -rf /tmp/x', 'allow', 'a subdirectory'],
  ['systemctl restart nginx', 'require-approval', 'approval rule'],
  ['sudo systemctl restart nginx; reboot', 'block', 'the most severe wins'],
  ['$CMD', 'block', 'a command name known only at run time'],
  ['echo reboot | sh', 'block', 'a shell reading code from a pipe'],
  ['bash script.sh', 'block', 'a shell running a file is opaque'],
  ['echo $(', 'block', 'unbalanced substitution'],
  ["echo 'unterminated", 'block', 'unparsable quotes'],
  ['ls > reboot', 'allow', 'a redirection target is a file name'],
];

describe('SSH command guard (corpus)', () => {
  for (const [line, expected, why] of corpus) {
    it(`${JSON.stringify(line)} → ${expected} (${why})`, () => {
      expect(judgeCommand(line, rules).action).toBe(expected);
    });
  }
});

describe('SSH command guard', () => {
  it('names the rule and the simple command that decided', () => {
    const v = judgeCommand('uptime; sudo /sbin/reboot now', rules);
    expect(v).toMatchObject({ action: 'block', rule: 'no-reboot', command: 'reboot now' });
    expect(blockedLine(v)).toBe('jit: blocked by rule no-reboot: `reboot now`');
    expect(blockedLine(judgeCommand('rm -rf /', rules))).toBe('jit: blocked by rule no-wipe: wiping the root file system is not allowed');
  });

  it('blocks what it cannot parse under jit.unparsable, but only when some rule enforces', () => {
    expect(judgeCommand('$CMD', rules).rule).toBe(UNPARSABLE_RULE);
    expect(judgeCommand('$CMD', [rule('ok', 'allow', { commands: ['ls'] })]).action).toBe('allow');
    expect(judgeCommand('$CMD', []).action).toBe('allow');
  });

  it('ignores SQL guardrails and judges shells only by interactive rules', () => {
    const sql = rule('no-drop', 'block', { kinds: ['drop'] });
    expect(judgeCommand('reboot', [sql]).action).toBe('allow');
    expect(judgeShell([sql]).action).toBe('allow');
    expect(judgeShell([rule('no-shell', 'block', { interactive: true }, 'use jit ssh host -- cmd')])).toMatchObject({
      action: 'block',
      rule: 'no-shell',
    });
  });

  it('rejects a guardrail that mixes SQL and command conditions', () => {
    expect(Guardrail.safeParse({ name: 'x', action: 'block', match: { kinds: ['drop'], commands: ['rm'] } }).success).toBe(false);
    expect(Guardrail.safeParse({ name: 'x', action: 'block', match: { interactive: true, commands: ['rm'] } }).success).toBe(false);
  });

  it('matches patterns by basename, wildcards and arguments in any order', () => {
    const c = (s: string) => {
      const a = analyzeCommand(s);
      if (!a.ok) throw new Error(a.error);
      return a.commands[a.commands.length - 1]!;
    };
    expect(commandMatches('systemctl restart', c('systemctl --now restart nginx'))).toBe(true);
    expect(commandMatches('systemctl restart', c('systemctl status nginx'))).toBe(false);
    expect(commandMatches('mkfs*', c('/sbin/mkfs.ext4 /dev/sdb'))).toBe(true);
    expect(commandMatches('iptables -F', c('iptables -t nat -F'))).toBe(true);
  });
});
