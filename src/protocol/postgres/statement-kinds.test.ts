/**
 * Statement kinds mean what they do (issue 12, item 4): every statement type the parser knows has a
 * kind policy can name, upserts and MERGE count as the updates/deletes they perform, server-side
 * COPY to a file is its own kind, and two-phase commit is refused unless policy allows it.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { STATEMENT_KINDS } from '#shared/config/policy.js';
import { InspectionRules } from '#shared/contract/agent.js';
import { classifySql, loadSqlParser } from './classify.js';
import { NOT_STATEMENTS, SPECIFIC_KINDS } from './classify-walk.js';
import { judge } from './guard.js';

beforeAll(async () => {
  await loadSqlParser();
});

const one = (sql: string) => {
  const c = classifySql(sql);
  if (!c.ok) throw new Error(c.error);
  return c.statements[0]!;
};

describe('every parser statement has a kind', () => {
  it('the parser types list no statement jit has no kind for', () => {
    const req = createRequire(import.meta.url);
    const dir = path.dirname(req.resolve('libpg-query/package.json'));
    const typesFile = req.resolve('@pgsql/types/types.d.ts', { paths: [dir] });
    const types = [...readFileSync(typesFile, 'utf8').matchAll(/export interface (\w+Stmt)\b/g)].map((m) => m[1]!);
    expect(types.length).toBeGreaterThan(100);
    const missing = types.filter((t) => !(t in SPECIFIC_KINDS) && !NOT_STATEMENTS.includes(t));
    expect(missing, 'statement types without a kind: add them to SPECIFIC_KINDS and STATEMENT_KINDS').toEqual([]);
    for (const k of Object.values(SPECIFIC_KINDS)) if (k) expect(STATEMENT_KINDS).toContain(k);
  });

  it.each([
    ['vacuum analyze t', ['maintenance', 'vacuum']],
    ['analyze t', ['maintenance', 'analyze']],
    ['cluster t using i', ['maintenance', 'cluster']],
    ['reindex table t', ['maintenance', 'reindex']],
    ['refresh materialized view mv', ['maintenance', 'refresh-materialized-view']],
    ['checkpoint', ['maintenance', 'checkpoint']],
    ['listen ch', ['listen']],
    ['unlisten ch', ['listen', 'unlisten']],
    ["notify ch, 'x'", ['notify']],
    ['lock table t in access exclusive mode', ['lock']],
    ["alter system set work_mem = '1GB'", ['alter', 'alter-system']],
    ["security label for selinux on table t is 'x'", ['alter', 'security-label']],
    ['import foreign schema s from server srv into public', ['create', 'import-foreign-schema']],
    ["load 'plugin'", ['other', 'load']],
    ['create extension dblink', ['create', 'create-extension']],
    ['drop table t', ['drop', 'drop-table']],
    ['drop schema s cascade', ['drop', 'drop-schema']],
    ['create table t2 (a int)', ['create', 'create-table']],
    ['create materialized view mv2 as select 1', ['create', 'create-materialized-view']],
    ['begin', ['transaction', 'begin']],
    ['commit', ['transaction', 'commit']],
    ["prepare transaction 'x'", ['transaction', 'prepare-transaction']],
    ["commit prepared 'x'", ['transaction', 'commit-prepared']],
    ["rollback prepared 'x'", ['transaction', 'rollback-prepared']],
    ['fetch 10 from c', ['other', 'fetch']],
    ['alter function f() owner to r', ['alter', 'alter-owner']],
    ['alter table t owner to r', ['alter', 'alter-table']],
  ])('%s → %j', (sql, kinds) => {
    const s = one(sql);
    for (const k of kinds) expect(s.effects, sql).toContain(k);
  });
});

describe('kinds mean what they do', () => {
  it('INSERT … ON CONFLICT DO UPDATE is an update, without WHERE unless one is written', () => {
    const upsert = one('insert into t (id, a) values (1, 2) on conflict (id) do update set a = excluded.a');
    expect(upsert.effects).toEqual(expect.arrayContaining(['insert', 'update']));
    expect(upsert.hasWhere).toBe(false);
    expect(one('insert into t values (1) on conflict (id) do update set a = 1 where t.a < 5').hasWhere).toBe(true);
    const nothing = one('insert into t values (1) on conflict do nothing');
    expect(nothing.effects).not.toContain('update');
  });

  it('MERGE … WHEN MATCHED THEN UPDATE/DELETE is an update/delete; its AND condition is its WHERE', () => {
    const m = one('merge into t using s on t.id = s.id when matched then delete when not matched then insert values (s.id)');
    expect(m.effects).toEqual(expect.arrayContaining(['merge', 'delete', 'insert']));
    expect(m.hasWhere).toBe(false);
    expect(one('merge into t using s on t.id = s.id when matched and s.gone then delete').hasWhere).toBe(true);
  });

  it('server-side COPY to or from a file is copy-file (with its direction), next to copy-program', () => {
    expect(one("copy t to '/tmp/x'")).toMatchObject({ kind: 'copy-file' });
    expect(one("copy t to '/tmp/x'").effects).toContain('copy-to');
    expect(one("copy t from '/tmp/x'").effects).toEqual(expect.arrayContaining(['copy-file', 'copy-from']));
    expect(one('copy t to stdout').kind).toBe('copy-to');
    expect(one("copy t to program 'x'").kind).toBe('copy-program');
  });

  it('guardrails on withoutWhere catch an upsert without WHERE', () => {
    const rules = InspectionRules.parse({
      guardrails: [{ name: 'careful', match: { kinds: ['update'], withoutWhere: true }, action: 'block' }],
    });
    expect(judge(classifySql('insert into t values (1) on conflict (id) do update set a = 2'), rules)).toMatchObject({
      action: 'block',
      rule: 'careful',
    });
  });

  it('two-phase commit is refused by default and runs when an allow rule names it', () => {
    const none = InspectionRules.parse({});
    expect(judge(classifySql("prepare transaction 'tx1'"), none)).toMatchObject({ action: 'block', rule: 'jit.refused-by-default' });
    expect(judge(classifySql("begin; select 1; commit prepared 'tx1'"), none)).toMatchObject({ action: 'block' });
    const allowed = InspectionRules.parse({ guardrails: [{ name: '2pc', match: { kinds: ['prepare-transaction'] }, action: 'allow' }] });
    expect(judge(classifySql("prepare transaction 'tx1'"), allowed).action).toBe('allow');
    expect(judge(classifySql("rollback prepared 'tx1'"), allowed).action).toBe('block');
  });
});
