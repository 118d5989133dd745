/**
 * The catalog-wide check (issue 12): every built-in function of the target's PostgreSQL is known
 * to jit — in a shipped class or listed as a plain built-in — and every name jit does not know is
 * judged `unknown`, which fails closed under masking. A PostgreSQL version with new functions fails
 * this test until they are classified (src/protocol/postgres/pg-builtins.ts says how).
 */
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { classifySql, loadSqlParser } from '#protocol/postgres/classify.js';
import { classMembers, FUNCTION_CLASSES, isBuiltinFunction } from '#protocol/postgres/function-classes.js';
import { judge, statementClasses } from '#protocol/postgres/guard.js';
import { PG_BUILTIN_MAJOR } from '#protocol/postgres/pg-builtins.js';
import { InspectionRules } from '#shared/contract/agent.js';
import { sql } from '../helpers/postgres.js';

/** Class members that come from extensions (dblink, tablefunc, adminpack, pg_background), not the server. */
const FROM_EXTENSIONS = /^(dblink|crosstab|connectby|pg_background|pg_file_|pg_logdir_ls)/;

let names: string[];
let major: number;

beforeAll(async () => {
  await loadSqlParser();
  const url = inject('pg').superUrl;
  names = (await sql(url, 'select distinct proname::text as n from pg_catalog.pg_proc where oid < 16384 order by 1')).map((r) =>
    String(r['n']),
  );
  major = Number((await sql(url, "select current_setting('server_version_num')::int / 10000 as v"))[0]!['v']);
});

describe('built-in functions of the target', () => {
  it('are all known to jit (classified or plain), for the server version jit is built for', () => {
    expect(major).toBe(PG_BUILTIN_MAJOR);
    const unknown = names.filter((n) => !isBuiltinFunction(n));
    expect(unknown, 'new built-in functions: classify them in function-classes.ts and list them in pg-builtins.ts').toEqual([]);
    expect(names.length).toBeGreaterThan(2500);
  });

  it('every class member is a real built-in or a known extension function (no typos in the classes)', () => {
    const have = new Set(names.map((n) => n.toLowerCase()));
    for (const cls of FUNCTION_CLASSES) {
      for (const m of classMembers(cls)) {
        if (FROM_EXTENSIONS.test(m)) continue;
        expect(have.has(m), `${cls}: ${m}`).toBe(true);
      }
    }
  });

  it('a name jit does not know is class unknown, and is refused under masking', () => {
    const rules = InspectionRules.parse({ masking: [{ name: 'pii', columns: ['customers.email'] }] });
    const c = classifySql('select pg_brand_new_function_of_pg_99(1)');
    expect(c.ok && statementClasses(c.statements[0]!)).toEqual(new Set(['unknown']));
    expect(judge(c, rules)).toMatchObject({ action: 'block', rule: 'jit.untraced' });
    // a plain built-in is not
    expect(judge(classifySql('select upper(name) from orders'), rules).action).toBe('allow');
  });
});
