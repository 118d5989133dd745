import { performance } from 'node:perf_hooks';
import { parseSync } from 'libpg-query';
import { beforeAll, describe, expect, it } from 'vitest';
import { type StatementInfo, classifySql, loadSqlParser } from './classify.js';

beforeAll(async () => {
  await loadSqlParser();
});

function all(sql: string): StatementInfo[] {
  const c = classifySql(sql);
  if (!c.ok) throw new Error(`expected ${sql} to parse: ${c.error}`);
  return c.statements;
}

function one(sql: string): StatementInfo {
  const s = all(sql);
  expect(s).toHaveLength(1);
  return s[0]!;
}

const cols = (s: StatementInfo) => s.computedColumns.map((c) => (c.relation ? `${c.relation}.${c.column}` : c.column)).sort();

describe('statements and text', () => {
  it('splits a multi-statement string and slices each statement text', () => {
    const s = all('select 1; drop table t ;\n  delete from x');
    expect(s.map((x) => x.kind)).toEqual(['select', 'drop', 'delete']);
    expect(s.map((x) => x.text)).toEqual(['select 1', 'drop table t', 'delete from x']);
  });

  it('slices by bytes when the text has multi-byte characters', () => {
    const s = all("select 'é🙂'; drop table t");
    expect(s.map((x) => x.text)).toEqual(["select 'é🙂'", 'drop table t']);
  });

  it('keeps dollar-quoted text inside one statement', () => {
    const s = all('select $$; drop table t; $$');
    expect(s).toHaveLength(1);
    expect(s[0]!.kind).toBe('select');
  });

  it('sees through comments and case', () => {
    const s = all('SeLeCt 1 /* ; */ -- ; drop\n;/**/DrOp/**/TABLE t');
    expect(s.map((x) => x.kind)).toEqual(['select', 'drop']);
    expect(s[1]!.relationsWritten).toEqual(['t']);
  });

  it('keeps quoted identifier case and decodes unicode escapes', () => {
    expect(one('select * from "Customers"').relationsRead).toEqual(['Customers']);
    expect(one('select * from U&"\\0063ustomers"').relationsRead).toEqual(['customers']);
    expect(one('select * from Sales.CUSTOMERS').relationsRead).toEqual(['sales.customers']);
  });

  it('an empty or comment-only string has no statements', () => {
    expect(classifySql('')).toEqual({ ok: true, statements: [] });
    expect(classifySql('  -- nothing\n')).toEqual({ ok: true, statements: [] });
  });

  it('refuses what it cannot see: syntax errors, NUL bytes', () => {
    const bad = classifySql('selec 1');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/syntax error/);
    expect(classifySql('select 1;\u0000 drop table t').ok).toBe(false);
  });

  it('refuses settings that would make jit split text differently from the server', () => {
    expect(classifySql('set standard_conforming_strings = off').ok).toBe(false);
    expect(classifySql("select set_config('standard_conforming_strings', 'off', false)").ok).toBe(false);
    expect(classifySql("set client_encoding = 'SJIS'").ok).toBe(false);
    expect(classifySql('set standard_conforming_strings = on').ok).toBe(true);
    expect(classifySql("set client_encoding = 'UTF8'").ok).toBe(true);
  });
});

describe('kinds and effects', () => {
  it.each([
    ['select 1', 'select'],
    ['values (1)', 'select'],
    ['table t', 'select'],
    ['insert into t values (1)', 'insert'],
    ['update t set a = 1', 'update'],
    ['delete from t', 'delete'],
    ['merge into t using s on t.id = s.id when matched then delete', 'merge'],
    ['copy t to stdout', 'copy-to'],
    ['copy t from stdin', 'copy-from'],
    ["copy t to program 'sh'", 'copy-program'],
    ['create table t (a int)', 'create'],
    ['create index on t (a)', 'create'],
    ['create view v as select 1', 'create'],
    ['alter table t add column b int', 'alter'],
    ['drop table t', 'drop'],
    ['truncate only t', 'truncate'],
    ['grant select on t to bob', 'grant'],
    ['revoke select on t from bob', 'revoke'],
    ['grant admin to bob', 'grant'],
    ['create user u', 'create-role'],
    ['create group g', 'create-role'],
    ['alter role x superuser', 'alter-role'],
    ["alter user x set role = 'postgres'", 'alter-role'],
    ['alter role x rename to y', 'alter-role'],
    ['drop role x', 'drop-role'],
    ['drop user x', 'drop-role'],
    ['set role admin', 'set-role'],
    ['set local role admin', 'set-role'],
    ['set session authorization admin', 'set-session-authorization'],
    ['set search_path = x', 'set'],
    ['reset work_mem', 'reset'],
    ['show all', 'show'],
    ['begin', 'transaction'],
    ['prepare p as select 1', 'prepare'],
    ['execute p', 'execute'],
    ['deallocate p', 'deallocate'],
    ['explain select 1', 'explain'],
    ['explain analyze select 1', 'explain-analyze'],
    ['explain (analyze, buffers) select 1', 'explain-analyze'],
    ['explain (analyze false) select 1', 'explain'],
    ['do $$ begin end $$', 'do'],
    ['call p()', 'call'],
    ['create function f() returns int language sql as $$ select 1 $$', 'create-function'],
    ['create procedure p() language sql begin atomic select 1; end', 'create-function'],
    ['listen c', 'listen'],
    ['notify c', 'notify'],
    ['vacuum t', 'maintenance'],
    ['lock table t', 'lock'],
    ['checkpoint', 'maintenance'],
    ['load $$x$$', 'other'],
  ])('%s → %s', (sql, kind) => {
    expect(one(sql).kind).toBe(kind);
  });

  it('a data-modifying CTE: top kind select, the delete is an effect and t is written', () => {
    const s = one('WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d');
    expect(s.kind).toBe('select');
    expect(s.effects).toContain('delete');
    expect(s.relationsWritten).toEqual(['t']);
    expect(s.hasWhere).toBe(false);
  });

  it('EXPLAIN ANALYZE counts what it runs; plain EXPLAIN only names it', () => {
    const a = one('explain analyze delete from t');
    expect(a.effects).toEqual(expect.arrayContaining(['explain-analyze', 'delete']));
    expect(a.relationsWritten).toEqual(['t']);
    expect(a.hasWhere).toBe(false);
    const p = one('explain delete from t');
    expect(p.effects).toEqual(['explain']);
    expect(p.relationsWritten).toEqual([]);
    expect(p.relationsRead).toEqual(['t']);
  });

  it('PREPARE is judged by what it stores; EXECUTE is opaque', () => {
    const [p, e] = all('PREPARE p AS DELETE FROM t; EXECUTE p');
    expect(p!.effects).toContain('delete');
    expect(p!.relationsWritten).toEqual(['t']);
    expect(e!.opaque).toBe(true);
  });

  it('set_config of role or session_authorization is a set-role effect', () => {
    expect(one("select set_config('role', 'admin', false)").effects).toContain('set-role');
    expect(one("select pg_catalog.set_config('session_authorization', 'x', true)").effects).toContain('set-session-authorization');
    expect(one('select set_config($1, $2, false)').effects).toContain('set-role');
    expect(one("select set_config('work_mem', '1MB', false)").effects).not.toContain('set-role');
    expect(one('reset role').effects).toContain('set-role');
    expect(one('discard all').effects).toContain('set-role');
  });

  it('opaque: DO, function bodies, EXECUTE, CALL', () => {
    expect(one('do $$ begin perform 1; end $$').opaque).toBe(true);
    expect(one('create function f() returns int language sql as $$ select 1 $$').opaque).toBe(true);
    expect(one('call p(1)').opaque).toBe(true);
    expect(one('select 1').opaque).toBe(false);
  });

  it('looks into DO and function bodies: still opaque, but their static SQL counts', () => {
    const d = one('do $$ declare r record; begin delete from t; for r in select * from u loop perform pg_sleep(1); end loop; end $$');
    expect(d.opaque).toBe(true);
    expect(d.effects).toEqual(expect.arrayContaining(['do', 'delete', 'select']));
    expect(d.relationsWritten).toEqual(['t']);
    expect(d.relationsRead).toEqual(['u']);
    expect(d.functions).toEqual(['pg_sleep']);
    const f = one("create function f() returns void language sql as 'update t set a = 1'");
    expect(f.effects).toContain('update');
    expect(f.hasWhere).toBe(false);
    // a body that does not parse stays opaque and adds nothing
    expect(one('do $$ begin this is not plpgsql; end $$').effects).toEqual(['do']);
    expect(one("do language plperl 'system(1)'").effects).toEqual(['do']);
  });

  it('MERGE reports each action it may take', () => {
    const s = one('merge into t using s on t.id = s.id when matched then delete when not matched then insert values (s.id)');
    expect(s.effects).toEqual(expect.arrayContaining(['merge', 'delete', 'insert']));
    expect(s.relationsWritten).toEqual(['t']);
    expect(s.relationsRead).toEqual(['s']);
  });
});

describe('relations and functions', () => {
  it('finds functions everywhere: subqueries, CTEs, defaults, arguments, casts, FROM', () => {
    expect(one('select pg_terminate_backend(pid) from pg_stat_activity').functions).toEqual(['pg_terminate_backend']);
    expect(one('select * from t where x in (select lo_export(1, $$/tmp/x$$))').functions).toEqual(['lo_export']);
    expect(one("with f as (select pg_read_file('/etc/passwd')) select * from f").functions).toEqual(['pg_read_file']);
    expect(one('create table t (a text default pg_ls_dir($$.$$)::text)').functions).toEqual(['pg_ls_dir']);
    expect(one("select upper(pg_read_server_files('x')::text)").functions).toEqual(['upper', 'pg_read_server_files']);
    expect(one("select * from dblink('x', 'y') as t(a int)").functions).toEqual(['dblink']);
    expect(one("select lo_import('/etc/passwd')::int").functions).toEqual(['lo_import']);
    expect(one('select pg_catalog.pg_terminate_backend(1)').functions).toEqual(['pg_catalog.pg_terminate_backend']);
    expect(one('call public.p(now())').functions).toEqual(['public.p', 'now']);
    expect(one('update t set a = (select dblink_exec($$x$$, $$y$$))').functions).toEqual(['dblink_exec']);
  });

  it('reads, writes, schema qualification', () => {
    const s = one('insert into audit.log select * from public.t join u using (id)');
    expect(s.relationsWritten).toEqual(['audit.log']);
    expect(s.relationsRead.sort()).toEqual(['public.t', 'u']);
    const u = one('update t set a = u.b from u where t.id = u.id');
    expect(u.relationsWritten).toEqual(['t']);
    expect(u.relationsRead).toEqual(['u']);
    expect(u.hasWhere).toBe(true);
    expect(one('truncate only a, b.c').relationsWritten).toEqual(['a', 'b.c']);
    expect(one('drop table if exists a, s.b').relationsWritten).toEqual(['a', 's.b']);
    expect(one('copy t from stdin').relationsWritten).toEqual(['t']);
    expect(one('select * into n from t').relationsWritten).toEqual(['n']);
    expect(one('alter table s.t drop column c').relationsWritten).toEqual(['s.t']);
  });

  it('a CTE name is not a table', () => {
    expect(one('with customers as (select 1 as a) select a from customers').relationsRead).toEqual([]);
  });

  it('WHERE true is still a WHERE', () => {
    expect(one('delete from t where true').hasWhere).toBe(true);
    expect(one('delete from t').hasWhere).toBe(false);
    expect(one('update t set a = 1').hasWhere).toBe(false);
    expect(one('select 1').hasWhere).toBeUndefined();
  });

  it('describes COPY', () => {
    expect(one('copy t (a, b) to stdout').copy).toEqual({
      direction: 'to',
      relation: 't',
      columns: ['a', 'b'],
      query: false,
      program: false,
      stdio: true,
    });
    expect(one("copy (select 1) to program 'gzip > /tmp/x'").copy).toEqual({ direction: 'to', query: true, program: true, stdio: false });
    expect(one("copy t from '/tmp/x'").copy).toEqual({ direction: 'from', relation: 't', query: false, program: false, stdio: false });
  });
});

describe('columns for masking', () => {
  it('plain outputs resolve aliases', () => {
    expect(one('select email from customers').outputs).toEqual([{ relation: 'customers', column: 'email' }]);
    expect(one('select email as e from customers c').outputs).toEqual([{ relation: 'customers', column: 'email' }]);
    expect(one('select c.email from public.customers c').outputs).toEqual([{ relation: 'public.customers', column: 'email' }]);
    expect(one('select email from customers').computedColumns).toEqual([]);
  });

  it.each([
    'select lower(email) from customers',
    'select md5(email) from customers',
    'select left(email, 1) from customers',
    "select string_agg(email, ',') from customers",
    'select count(*) from customers group by email',
    "select id from customers where email like 'a%'",
    'select id from customers order by email',
    'select email from customers order by 1',
    'select email as e from customers order by e',
    'select email::text from customers',
    'select email || $$$$ from customers',
    'select distinct on (email) id from customers',
    'select id from customers c join orders o on o.email = c.email',
    'select count(*) over (partition by email) from customers',
    'select id from customers group by id having max(email) > $$m$$',
    'select (select email from customers limit 1)',
    'select id from orders where exists (select 1 from customers where email = $$x$$)',
    'select lower(e) from (select email as e from customers) s',
    'select lower(s.e) from (select email as e from customers) s',
    'with s as (select email from customers) select lower(email) from s',
    'select email from customers union select $$x$$',
    'insert into other select email from customers',
    'create table other as select email from customers',
    'select email into other from customers',
    'update customers set name = email',
    'select lower(x) from (select email from customers) s(x)',
    'select substring(email from 1 for 1) from customers',
    'select coalesce(email, $$$$) from customers',
    'select case when email is null then 1 end from customers',
  ])('%s computes on email', (sql) => {
    expect(cols(one(sql)).some((c) => c === 'email' || c.endsWith('customers.email'))).toBe(true);
  });

  it.each([
    ['select row_to_json(c) from customers c', 'customers'],
    ['select c from customers c', 'customers'],
    ['select to_jsonb(c.*) from customers c', 'customers'],
    ['select json_agg(customers) from customers', 'customers'],
    ['select (c).email from customers c', 'customers'],
    ['select lower(x) from (select * from customers) s(a, x)', 'customers'],
    ['insert into other select * from customers', 'customers'],
    ['select * from customers union select * from customers', 'customers'],
    ["copy customers to '/tmp/x'", 'customers'],
    ['select row_to_json(s) from (select * from customers) s', 'customers'],
  ])('%s uses %s whole-row', (sql, rel) => {
    expect(one(sql).wholeRowRefs).toContain(rel);
  });

  it('star is reported and not computed', () => {
    const s = one('select * from customers');
    expect(s.star).toBe(true);
    expect(s.computedColumns).toEqual([]);
    expect(s.wholeRowRefs).toEqual([]);
    expect(one('select c.* from customers c').star).toBe(true);
  });

  it('joins with aliases resolve qualified columns to their table', () => {
    const s = one('select c.email, o.total from customers c join orders o on o.customer_id = c.id where o.total > 1');
    expect(s.outputs).toEqual([
      { relation: 'customers', column: 'email' },
      { relation: 'orders', column: 'total' },
    ]);
    expect(cols(s)).toEqual(['customers.id', 'orders.customer_id', 'orders.total']);
  });

  it('a passthrough subquery keeps the column plain', () => {
    const s = one('select e from (select email as e from customers) s');
    expect(s.outputs).toEqual([{ relation: 'customers', column: 'email' }]);
    expect(s.computedColumns).toEqual([]);
  });

  it('RETURNING outputs are outputs', () => {
    expect(one('delete from customers where id = 1 returning email').outputs).toEqual([{ relation: 'customers', column: 'email' }]);
  });

  it('COPY (query) TO STDOUT exposes the query outputs; to a file they are computed', () => {
    expect(one('copy (select email from customers) to stdout').outputs).toEqual([{ relation: 'customers', column: 'email' }]);
    expect(cols(one("copy (select email from customers) to '/tmp/x'"))).toEqual(['customers.email']);
  });
});

describe('cost', () => {
  it('measures the pgbench -S statement (prints, does not assert timing)', () => {
    const sql = 'SELECT abalance FROM pgbench_accounts WHERE aid = 123;';
    const perCall = (f: () => unknown): number => {
      for (let i = 0; i < 2000; i++) f();
      const n = 20000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) f();
      return ((performance.now() - t0) * 1000) / n;
    };
    const parse = perCall(() => parseSync(sql));
    const classify = perCall(() => classifySql(sql));
    console.log(`pgbench -S statement: parseSync ${parse.toFixed(1)} µs, classifySql ${classify.toFixed(1)} µs per call`);
    expect(one(sql).outputs).toEqual([{ relation: 'pgbench_accounts', column: 'abalance' }]);
  });
});
