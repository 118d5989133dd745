/**
 * Just-in-time approvals end to end from the built binary: `jit connect` on a target that needs
 * approval files a request and waits (plain lines, no TTY), bob approves from his own HOME with
 * `jit approve`, and the session proceeds through a real agent to real PostgreSQL. A denial ends
 * the wait with exit 5; Ctrl-C cancels the request; --no-wait and --request split the two halves.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { USERS } from '../helpers/control-plane.js';
import { cliLogin, type Stack, startStack } from '../helpers/e2e-stack.js';
import { runJit, type SpawnedJit, spawnJit } from '../helpers/jit-cli.js';

const run = promisify(execFile);
const TARGET = 'e2e-appr-db';
const pgInfo = inject('pg');
let stack: Stack;
let aliceHome: string;
let bobHome: string;

const password = (u: string) => USERS.find((x) => x.username === u)!.password;

async function filed(proc: SpawnedJit): Promise<string> {
  const [, id] = await proc.waitForLine('stderr', /request ([a-z0-9]{20}) filed$/, 30_000);
  return id!;
}

async function auditOf(filter: string[]): Promise<any[]> {
  const r = await runJit(['audit', ...filter, '--json'], { home: bobHome });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

beforeAll(async () => {
  stack = await startStack(pgInfo, 'e2e_appr', {
    approvals: [{ name: 'prod-change', targets: [TARGET], approvers: { users: ['bob'], timeout: '10m' }, maxDuration: '1h' }],
  });
  [aliceHome, bobHome] = await Promise.all([cliLogin(stack.url, 'alice', password('alice')), cliLogin(stack.url, 'bob', password('bob'))]);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('jit connect on a target that needs approval', () => {
  it('without a TTY, a missing reason is a usage error naming --reason', async () => {
    const r = await runJit(['connect', TARGET], { home: aliceHome });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`A reason is required to request access to ${TARGET} (rule prod-change)  [JIT_USAGE]`);
    expect(r.stderr).toContain('hint: pass --reason');
  });

  it('files, waits, bob approves with jit approve, and the session proceeds', async () => {
    const proc = spawnJit(['connect', TARGET, '--reason', 'INC-7: stuck orders', '--json'], { home: aliceHome });
    const id = await filed(proc);
    await proc.waitForLine('stderr', /^Approvers: bob; waiting up to \d+m \d\ds\. Ctrl-C cancels the request\.$/);

    const list = await runJit(['requests', '--to-review'], { home: bobHome });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${id}\\s+access\\s+alice\\s+${TARGET}\\s+pending \\(you may review\\)\\s+0/1`));

    const ok = await runJit(['approve', id, '--comment', 'go ahead'], { home: bobHome });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain(`Approved request ${id}: alice may now connect to ${TARGET}`);
    expect(ok.stdout).toMatch(/^approved by\s+bob at .*: go ahead$/m);

    await proc.waitForLine('stderr', /^Approved by bob \(1 of 1\): "go ahead"$/);
    await proc.waitForLine('stderr', new RegExp(`^Request ${id} approved; opening the session$`));
    await proc.waitForLine('stdout', /^\}$/, 30_000);
    const ready = JSON.parse(proc.stdout()) as { session: { id: string; request: string }; url: string };
    expect(ready.session.request).toBe(id);
    const q = await run('psql', [ready.url, '-X', '-At', '-c', 'select count(*) from items'], { timeout: 20_000 });
    expect(q.stdout.trim()).toBe('100');

    proc.kill('SIGINT');
    expect((await proc.exited(15_000)).code).toBe(0);
    const types = (await auditOf(['--type', 'request.used'])).filter((e) => e.data.request === id);
    expect(types).toMatchObject([{ actor: 'alice', session: ready.session.id }]);
    const again = await runJit(['connect', TARGET, '--request', id], { home: aliceHome });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('JIT_APPROVAL_DECIDED');
  });

  it('a denial ends the wait with exit 5 and the approver’s reason', async () => {
    const proc = spawnJit(['connect', TARGET, '--reason', 'just looking'], { home: aliceHome });
    const id = await filed(proc);
    const d = await runJit(['deny', id, '--reason', 'not during the freeze'], { home: bobHome });
    expect(d.code, d.stderr).toBe(0);
    const { code } = await proc.exited(20_000);
    expect(code).toBe(5);
    expect(proc.stderr()).toContain(
      `✘ Access to ${TARGET} needs approval, and bob denied it: not during the freeze  [JIT_APPROVAL_DENIED]`,
    );
    expect(proc.stderr()).toContain(`hint: jit connect ${TARGET} --reason "…" files a new request`);
    expect(proc.stdout()).toBe('');
  });

  it('jit deny without --reason is a usage error', async () => {
    const r = await runJit(['deny', 'a'.repeat(20)], { home: bobHome });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--reason');
  });

  it('Ctrl-C while waiting cancels the request', async () => {
    const proc = spawnJit(['connect', TARGET, '--reason', 'oops, wrong target'], { home: aliceHome });
    const id = await filed(proc);
    proc.kill('SIGINT');
    const { code } = await proc.exited(20_000);
    expect(code).toBe(5);
    expect(proc.stderr()).toContain(`You cancelled request ${id}; no session was opened  [JIT_APPROVAL_CANCELLED]`);
    const show = await runJit(['requests', id, '--json'], { home: aliceHome });
    expect(JSON.parse(show.stdout).request.state).toBe('cancelled');
  });

  it('--no-wait files and prints the id; --request uses it once approved', async () => {
    const r = await runJit(['connect', TARGET, '--reason', 'INC-8', '--no-wait'], { home: aliceHome });
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^[a-z0-9]{20}$/);
    expect(r.stderr).toContain(`When it is approved: jit connect ${TARGET} --request ${id}`);
    expect(r.stderr).toMatch(/^Approvers: bob; it expires in \d+m \d\ds unless decided\.$/m);
    expect(r.stderr).not.toContain('Ctrl-C');
    // Self-approval is refused by the server, also through the CLI.
    const self = await runJit(['approve', id], { home: aliceHome });
    expect(self.code).toBe(4);
    expect((await runJit(['approve', id], { home: bobHome })).code).toBe(0);
    const proc = spawnJit(['connect', TARGET, '--request', id, '--json'], { home: aliceHome });
    await proc.waitForLine('stdout', /^\}$/, 30_000);
    expect(JSON.parse(proc.stdout()).session.request).toBe(id);
    proc.kill('SIGINT');
    expect((await proc.exited(15_000)).code).toBe(0);
  });
});
