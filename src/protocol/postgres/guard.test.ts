import { beforeAll, describe, expect, it } from 'vitest';
import { InspectionRules } from '#shared/contract/agent.js';
import { classifySql, loadSqlParser } from './classify.js';
import { judge, nameMatches } from './guard.js';

beforeAll(async () => {
  await loadSqlParser();
});

/** Rules as the control plane sends them (zod defaults applied). */
function rules(r: unknown): InspectionRules {
  return InspectionRules.parse(r);
}

const verdict = (sql: string, r: InspectionRules) => judge(classifySql(sql), r);

const noDrop = rules({
  guardrails: [
    { name: 'no-drop', match: { kinds: ['drop', 'truncate'] }, action: 'block', message: 'Dropping is not allowed here' },
    { name: 'careful-delete', match: { kinds: ['delete', 'update'], withoutWhere: true }, action: 'block' },
    { name: 'billing-writes', match: { relationsWritten: ['billing.*'] }, action: 'require-approval' },
    { name: 'no-kill', match: { functions: ['pg_terminate_backend', 'dblink*'] }, action: 'block' },
  ],
});

describe('judge', () => {
  it('allows what no rule matches', () => {
    expect(verdict('select 1', noDrop)).toMatchObject({ action: 'allow', statementIndex: 0 });
  });

  it('an empty query is allowed; an unparsable one is blocked', () => {
    expect(verdict('', noDrop)).toEqual({ action: 'allow', reason: 'empty query' });
    const v = verdict('selec 1', noDrop);
    expect(v.action).toBe('block');
    expect(v.rule).toBe('jit.parse-error');
    expect(v.reason).toMatch(/^could not parse: syntax error/);
  });

  it('blocks with the rule name and message, on the offending statement', () => {
    expect(verdict('select 1; drop table t', noDrop)).toEqual({
      action: 'block',
      rule: 'no-drop',
      message: 'Dropping is not allowed here',
      statementIndex: 1,
      reason: 'drop statement matches guardrail no-drop',
    });
  });

  it('most severe statement wins, first one on a tie', () => {
    const v = verdict('insert into billing.invoices values (1); delete from t; drop table x', noDrop);
    expect(v).toMatchObject({ action: 'block', rule: 'careful-delete', statementIndex: 1 });
    expect(verdict('insert into billing.a values (1); insert into billing.b values (1)', noDrop)).toMatchObject({
      action: 'require-approval',
      statementIndex: 0,
    });
  });

  it('all conditions of a guardrail must hold', () => {
    expect(verdict('delete from t where id = 1', noDrop).action).toBe('allow');
    expect(verdict('delete from t', noDrop).action).toBe('block');
    const both = rules({ guardrails: [{ name: 'r', match: { kinds: ['delete'], relations: ['secrets'] }, action: 'block' }] });
    expect(verdict('delete from t', both).action).toBe('allow');
    expect(verdict('select * from secrets', both).action).toBe('allow');
    expect(verdict('delete from app.secrets where id = 1', both).action).toBe('block');
  });

  it('the strictest matching guardrail wins, whatever the order: an allow never lifts a block', () => {
    const r = rules({
      guardrails: [
        { name: 'scratch-ok', match: { relations: ['scratch.*'] }, action: 'allow' },
        { name: 'no-drop', match: { kinds: ['drop'] }, action: 'block' },
      ],
    });
    expect(verdict('drop table scratch.tmp', r)).toMatchObject({ action: 'block', rule: 'no-drop' });
    expect(verdict('select * from scratch.tmp', r)).toMatchObject({ action: 'allow', rule: 'scratch-ok' });
  });

  it('an approval rule listed first never releases what a block rule matches', () => {
    const r = rules({
      guardrails: [
        { name: 'billing-needs-ok', match: { relations: ['billing.*'] }, action: 'require-approval' },
        { name: 'no-kill', match: { functions: ['pg_terminate_backend'] }, action: 'block' },
      ],
    });
    expect(verdict('select pg_terminate_backend(pid) from billing.sessions', r)).toMatchObject({ action: 'block', rule: 'no-kill' });
    expect(verdict('select * from billing.invoices', r)).toMatchObject({ action: 'require-approval', rule: 'billing-needs-ok' });
  });

  it('names every rule that matched at the deciding strictness; the first in policy order leads', () => {
    const r = rules({
      guardrails: [
        { name: 'no-drop', match: { kinds: ['drop'] }, action: 'block', message: 'no dropping' },
        { name: 'no-billing', match: { relations: ['billing.*'] }, action: 'block' },
        { name: 'billing-ok', match: { relations: ['billing.*'] }, action: 'require-approval' },
      ],
    });
    expect(verdict('drop table billing.invoices', r)).toMatchObject({
      action: 'block',
      rule: 'no-drop',
      rules: ['no-drop', 'no-billing'],
      message: 'no dropping',
    });
    expect(verdict('drop table public.t', r).rules).toBeUndefined();
  });

  it('a guardrail without conditions matches every statement', () => {
    const r = rules({ guardrails: [{ name: 'all', match: {}, action: 'require-approval' }] });
    expect(verdict('select 1', r)).toMatchObject({ action: 'require-approval', rule: 'all' });
  });

  it('kinds match nested effects: data-modifying CTE, EXPLAIN ANALYZE, PREPARE, set_config', () => {
    const r = rules({
      guardrails: [
        { name: 'no-delete', match: { kinds: ['delete'] }, action: 'block' },
        { name: 'no-role', match: { kinds: ['set-role'] }, action: 'block' },
      ],
    });
    expect(verdict('with d as (delete from t returning 1) select * from d', r).rule).toBe('no-delete');
    expect(verdict('explain analyze delete from t', r).rule).toBe('no-delete');
    expect(verdict('explain delete from t', r).action).toBe('allow');
    expect(verdict('prepare p as delete from t; execute p', r)).toMatchObject({ rule: 'no-delete', statementIndex: 0 });
    expect(verdict("select set_config('role', 'postgres', false)", r).rule).toBe('no-role');
  });

  it('opaque rules catch DO, EXECUTE, CALL, function bodies', () => {
    const r = rules({ guardrails: [{ name: 'opaque', match: { opaque: true }, action: 'require-approval' }] });
    for (const sql of ['do $$begin end$$', 'execute p', 'call p()', "create function f() returns int language sql as 'select 1'"]) {
      expect(verdict(sql, r).rule).toBe('opaque');
    }
    expect(verdict('select 1', r).action).toBe('allow');
  });
});

describe('masked computation', () => {
  const masked = rules({ masking: [{ name: 'pii', columns: ['customers.email', 'ssn'] }] });

  it('refuses computing on a masked column, naming the mask rule', () => {
    expect(verdict('select lower(email) from customers', masked)).toMatchObject({
      action: 'block',
      rule: 'pii',
      statementIndex: 0,
      message: 'computing on masked column customers.email is not allowed',
    });
  });

  it('plain output of a masked column is left to result masking', () => {
    expect(verdict('select email from customers', masked).action).toBe('allow');
    expect(verdict('select * from customers', masked).action).toBe('allow');
  });

  it('table-qualified mask rules do not hit other tables', () => {
    expect(verdict('select lower(email) from users', masked).action).toBe('allow');
    expect(verdict('select lower(email) from public.customers', masked).action).toBe('block');
    expect(verdict('select lower(email) from users u join customers c on u.id = c.id', masked).action).toBe('block');
  });

  it('a bare column rule hits any table and any whole-row use', () => {
    expect(verdict('select count(*) from people group by ssn', masked).rule).toBe('pii');
    expect(verdict('select row_to_json(p) from people p', masked).rule).toBe('pii');
  });

  it('schema.table.column rules', () => {
    const r = rules({ masking: [{ name: 'm', columns: ['crm.customers.email'] }] });
    expect(verdict('select md5(email) from crm.customers', r).action).toBe('block');
    expect(verdict('select md5(email) from customers', r).action).toBe('block');
    expect(verdict('select md5(email) from other.customers', r).action).toBe('allow');
    expect(verdict('select c from crm.customers c', r).action).toBe('block');
  });

  it('maskedComputation: allow turns the refusal off; detector-only rules never refuse', () => {
    const allow = rules({ masking: [{ name: 'pii', columns: ['email'] }], maskedComputation: 'allow' });
    expect(verdict('select lower(email) from customers', allow).action).toBe('allow');
    const det = rules({ masking: [{ name: 'd', detectors: ['email'] }] });
    expect(verdict('select lower(email) from customers', det).action).toBe('allow');
  });

  it('an allow guardrail does not lift a masking refusal', () => {
    const r = rules({
      guardrails: [{ name: 'ok', match: { kinds: ['select'] }, action: 'allow' }],
      masking: [{ name: 'pii', columns: ['email'] }],
    });
    expect(verdict('select upper(email) from customers', r)).toMatchObject({ action: 'block', rule: 'pii' });
  });
});

describe('nameMatches', () => {
  it.each([
    ['customers', 'customers', true],
    ['customers', 'public.customers', true],
    ['public.customers', 'public.customers', true],
    ['public.customers', 'customers', true],
    ['public.customers', 'other.customers', false],
    ['billing.*', 'billing.invoices', true],
    ['billing.*', 'public.invoices', false],
    ['billing.*', 'invoices', false],
    ['dblink*', 'dblink_exec', true],
    ['dblink*', 'public.dblink', true],
    ['dblink*', 'mydblink', false],
    ['Customers', 'customers', true],
    ['customers', 'Customers', true],
    ['pg_terminate_backend', 'pg_catalog.pg_terminate_backend', true],
  ])('%s ~ %s → %s', (p, n, want) => {
    expect(nameMatches(p, n)).toBe(want);
  });
});

describe('function classes', () => {
  const classes = rules({
    guardrails: [
      { name: 'no-files', match: { functionClasses: ['server-file', 'large-object'] }, action: 'block' },
      { name: 'sql-text-needs-approval', match: { functionClasses: ['sql-executing'] }, action: 'require-approval' },
      { name: 'own-functions-need-approval', match: { functionClasses: ['user-defined', 'unknown'] }, action: 'require-approval' },
    ],
  });

  it('matches shipped classes by name, in any schema and nested anywhere', () => {
    expect(verdict("select pg_read_file('/etc/passwd')", classes)).toMatchObject({ action: 'block', rule: 'no-files' });
    expect(verdict("select * from t where x = (select pg_catalog.lo_import('/etc/passwd'))", classes)).toMatchObject({
      rule: 'no-files',
    });
    expect(verdict("select query_to_xml('select 1', true, false, '')", classes)).toMatchObject({
      action: 'require-approval',
      rule: 'sql-text-needs-approval',
    });
    expect(verdict('select upper(name) from t', classes).action).toBe('allow');
  });

  it('a name that is neither built in nor in the catalog is unknown', () => {
    expect(verdict('select my_function(1)', classes)).toMatchObject({ action: 'require-approval', rule: 'own-functions-need-approval' });
  });

  it('constant SQL text given to an SQL-executing function is judged as sent; other text cannot be judged', () => {
    expect(verdict("select dblink_exec('dbname=x', 'drop table t')", noDrop)).toMatchObject({ action: 'block', rule: 'no-drop' });
    expect(verdict("select query_to_xml('select pg_terminate_backend(1)', true, false, '')", noDrop)).toMatchObject({
      rule: 'no-kill',
    });
    expect(verdict("select query_to_xml('sel' || 'ect 1', true, false, '')", noDrop)).toMatchObject({
      action: 'block',
      rule: 'jit.unjudgeable',
    });
    // nothing to apply: an unjudgeable statement runs when no rule restricts SQL at all
    expect(verdict("select query_to_xml('sel' || 'ect 1', true, false, '')", rules({})).action).toBe('allow');
  });
});
