import { beforeAll, describe, expect, it } from 'vitest';
import type { MaskRule } from '#shared/config/policy.js';
import { loadSqlParser } from './classify.js';
import { type CatalogFunction, type CatalogSnapshot, deriveProvenance } from './provenance.js';

const rule = (name: string, columns: string[], style: MaskRule['style'] = 'full'): MaskRule => ({
  name,
  columns,
  detectors: [],
  style,
  targets: ['*'],
  users: [],
  groups: [],
});
const RULES = [rule('email', ['customers.email'], 'partial')];

const fn = (name: string, body: string, extra: Partial<CatalogFunction> = {}): CatalogFunction => ({
  schema: 'public',
  name,
  language: 'sql',
  definition: `CREATE OR REPLACE FUNCTION public.${name}()\n RETURNS text\n LANGUAGE ${extra.language ?? 'sql'}\nAS $function$${body}$function$\n`,
  securityDefiner: false,
  extension: false,
  kind: 'f',
  ...extra,
});

function snap(s: Partial<CatalogSnapshot>): CatalogSnapshot {
  return { views: [], functions: [], inherits: [], ...s };
}

beforeAll(async () => {
  await loadSqlParser();
});

describe('views', () => {
  it('masks view columns that pass or compute on a masked column, in views over views, and not the others', () => {
    const p = deriveProvenance(
      snap({
        views: [
          {
            schema: 'public',
            name: 'v_contact',
            columns: ['id', 'contact', 'name'],
            definition: ' SELECT id,\n    upper(email) AS contact,\n    name\n   FROM public.customers;',
          },
          {
            schema: 'public',
            name: 'v_json',
            columns: ['id', 'doc'],
            definition: ' SELECT id,\n    row_to_json(c.*) AS doc\n   FROM public.customers c;',
          },
          { schema: 'public', name: 'v_nested', columns: ['e'], definition: ' SELECT contact AS e\n   FROM public.v_contact;' },
        ],
      }),
      RULES,
    );
    expect(p.masks.map((m) => [m.columns[0], m.name]).sort()).toEqual([
      ['v_contact.contact', 'email'],
      ['v_json.doc', 'email'],
      ['v_nested.e', 'email'],
    ]);
  });
});

describe('functions', () => {
  it('taints functions reading masked data, through calls, and those it cannot inspect', () => {
    const p = deriveProvenance(
      snap({
        functions: [
          fn('leak', ' SELECT email FROM customers WHERE id = 1 '),
          fn('via', ' SELECT leak() '),
          fn('fine', ' SELECT name FROM customers WHERE id = 1 '),
          fn('dyn', ` DECLARE r text; BEGIN EXECUTE 'select em' || 'ail from customers where id = 1' INTO r; RETURN r; END `, {
            language: 'plpgsql',
          }),
          { ...fn('py', ''), language: 'plpython3u', definition: null },
          { ...fn('ext_c', ''), language: 'c', definition: null, extension: true },
        ],
      }),
      RULES,
    );
    const taint = (n: string) => p.functions.get(n)?.[0]?.taint;
    expect(taint('leak')).toMatch(/reads masked data \(rule email\)/);
    expect(taint('via')).toMatch(/calls leak\(\)/);
    expect(taint('fine')).toBeUndefined();
    expect(taint('dyn')).toMatch(/dynamic SQL/);
    expect(taint('py')).toMatch(/plpython3u/);
    expect(taint('ext_c')).toBeUndefined();
    expect(p.functions.get('leak')?.[0]?.classes).toEqual(['user-defined']);
  });
});
