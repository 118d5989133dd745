import { beforeAll, describe, expect, it } from 'vitest';
import { loadShellParser } from './shell.js';
import { Guardrail } from '#shared/config/policy.js';
import { admitSsh, approvalText, judgeAsk, type SshAsk, type SshGateHooks, type SshHoldDecision } from './admit.js';

beforeAll(async () => {
  await loadShellParser();
});

const rule = (name: string, action: Guardrail['action'], match: Record<string, unknown>) => Guardrail.parse({ name, action, match });

const rules = {
  allowForwarding: false,
  guardrails: [
    rule('no-reboot', 'block', { commands: ['reboot'] }),
    rule('restart-needs-ok', 'require-approval', { commands: ['systemctl restart'] }),
    rule('sftp-needs-ok', 'require-approval', { commands: ['sftp'] }),
    rule('shells-need-ok', 'require-approval', { interactive: true }),
  ],
};

/** What the gate did, in order. */
function run(ask: SshAsk, opts: { decision?: SshHoldDecision; recorder?: boolean; forwarding?: boolean } = {}) {
  const steps: string[] = [];
  const hooks: SshGateHooks = {
    blocked: (a, v) => void steps.push(`blocked ${a.kind} ${v.rule}`),
    hold: async (a) => {
      steps.push(`hold ${approvalText(a)}`);
      return opts.decision ?? { approved: false, reason: 'nobody answered' };
    },
    recorderReady: () => {
      steps.push('recorder?');
      return opts.recorder ?? true;
    },
  };
  return { steps, outcome: admitSsh(ask, { ...rules, allowForwarding: opts.forwarding ?? false, forwardTo: ['10.0.0.*:5432'] }, hooks) };
}

describe('the SSH gate', () => {
  it('runs an allowed command at once, only with the recorder connected', () => {
    expect(run({ kind: 'exec', command: 'uptime' })).toEqual({
      steps: ['recorder?'],
      outcome: { run: true, verdict: expect.objectContaining({ action: 'allow' }) },
    });
    const down = run({ kind: 'exec', command: 'uptime' }, { recorder: false });
    expect(down.outcome).toMatchObject({ run: false, verdict: { rule: 'jit.recorder' }, line: expect.stringMatching(/cannot record/) });
  });

  it('refuses a blocked command before anything else, recording it', () => {
    const r = run({ kind: 'exec', command: 'sudo reboot' });
    expect(r.steps).toEqual(['blocked exec no-reboot']);
    expect(r.outcome).toMatchObject({ run: false, line: 'jit: blocked by rule no-reboot: `reboot`' });
  });

  it('holds exec, shell and subsystem alike under require-approval, bound to exactly what runs', async () => {
    for (const [ask, text] of [
      [{ kind: 'exec', command: 'systemctl restart nginx' }, 'systemctl restart nginx'],
      [{ kind: 'shell' }, '<interactive shell>'],
      [{ kind: 'subsystem', name: 'sftp' }, '<subsystem sftp>'],
    ] as [SshAsk, string][]) {
      const approved = run(ask, { decision: { approved: true, request: 'req-1', by: 'bob' } });
      await expect(approved.outcome).resolves.toMatchObject({ run: true, approved: { request: 'req-1', by: 'bob' } });
      expect(approved.steps).toEqual([`hold ${text}`, 'recorder?']);
      const denied = run(ask, { decision: { approved: false, reason: 'denied by bob' } });
      await expect(denied.outcome).resolves.toMatchObject({
        run: false,
        verdict: { action: 'require-approval', reason: 'denied by bob' },
        line: expect.stringMatching(/needs approval \(rule [a-z-]+\) and denied by bob$/),
      });
      expect(denied.steps).toEqual([
        `hold ${text}`,
        `blocked ${ask.kind} ${ask.kind === 'exec' ? 'restart-needs-ok' : ask.kind === 'shell' ? 'shells-need-ok' : 'sftp-needs-ok'}`,
      ]);
    }
  });

  it('an approved command still does not run while the recorder is down', async () => {
    const r = run({ kind: 'exec', command: 'systemctl restart nginx' }, { decision: { approved: true }, recorder: false });
    await expect(r.outcome).resolves.toMatchObject({ run: false, verdict: { rule: 'jit.recorder' } });
  });

  it('port forwarding runs only where policy allows it; X11, agent and remote forwarding never, and each refusal is recorded', () => {
    expect(run({ kind: 'port-forward', host: '10.0.0.5', port: 5432 }, { forwarding: true }).outcome).toMatchObject({ run: true });
    for (const [ask, ruleName] of [
      [{ kind: 'port-forward', host: '10.0.0.5', port: 5432 }, 'jit.forwarding'],
      [{ kind: 'x11' }, 'jit.x11'],
      [{ kind: 'agent-forward' }, 'jit.agent-forwarding'],
      [{ kind: 'remote-forward', request: 'tcpip-forward' }, 'jit.remote-forwarding'],
    ] as [SshAsk, string][]) {
      const r = run(ask, { forwarding: ask.kind !== 'port-forward' });
      expect(r.outcome).toMatchObject({ run: false, verdict: { action: 'block', rule: ruleName } });
      expect(r.steps).toEqual([`blocked ${ask.kind} ${ruleName}`]);
    }
  });
});

describe('port forwarding has a destination policy', () => {
  const fwd = (host: string, port: number) => ({ kind: 'port-forward' as const, host, port });
  const rules = {
    guardrails: [],
    allowForwarding: true,
    forwardTo: ['grafana.internal:3000', '10.1.2.*:8080-8089', '[::1]:9000'],
    guarded: [
      { host: '127.0.0.1', port: 5432 },
      { host: 'db.internal', port: 5432 },
    ],
  };

  it('allows only what forwardTo names', () => {
    expect(judgeAsk(fwd('grafana.internal', 3000), rules).action).toBe('allow');
    expect(judgeAsk(fwd('GRAFANA.internal.', 3000), rules).action).toBe('allow');
    expect(judgeAsk(fwd('10.1.2.7', 8085), rules).action).toBe('allow');
    expect(judgeAsk(fwd('::1', 9000), rules).action).toBe('allow');
    for (const [h, p] of [
      ['grafana.internal', 3001],
      ['evil.grafana.internal.attacker', 3000],
      ['10.1.2.7', 8090],
      ['10.1.3.7', 8080],
      ['169.254.169.254', 80],
    ] as const) {
      expect(judgeAsk(fwd(h, p), rules), `${h}:${p}`).toMatchObject({ action: 'block', rule: 'jit.forward-destination' });
    }
  });

  it('never forwards to a database jit guards, whatever forwardTo says, loopback spelled any way', () => {
    const open = { ...rules, forwardTo: ['*:*'] };
    for (const [h, p] of [
      ['127.0.0.1', 5432],
      ['localhost', 5432],
      ['127.1.2.3', 5432],
      ['::1', 5432],
      ['db.internal', 5432],
    ] as const) {
      expect(judgeAsk(fwd(h, p), open), `${h}:${p}`).toMatchObject({ action: 'block', rule: 'jit.guarded-destination' });
    }
    expect(judgeAsk(fwd('db.internal', 443), open).action).toBe('allow');
  });

  it('refuses all forwarding without allowForwarding', () => {
    expect(judgeAsk(fwd('grafana.internal', 3000), { ...rules, allowForwarding: false })).toMatchObject({ rule: 'jit.forwarding' });
  });
});
