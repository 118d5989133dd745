/**
 * GUI clients through the inspecting engine: the catalog queries DBeaver and pgAdmin 4 send when
 * they connect and when a user browses a schema, under a realistic policy (DDL and dangerous
 * functions blocked, customers.email masked, computing on masked columns refused). None of them
 * may be refused (no false positive from the guard or from maskedComputation: refuse), each one
 * must return rows and be audited, and masking must still apply to the user table. psql's \watch
 * is the third client: a loop of simple queries.
 *
 * The SQL is the tools' own, with template variables replaced by concrete values:
 * - DBeaver: plugins/org.jkiss.dbeaver.ext.postgresql …/model/PostgreDataSource.java,
 *   PostgreDatabase.java (schema/role/type caches), PostgreSchema.java (TableCache, children,
 *   ConstraintCache, IndexCache, ProceduresCache, ExtensionCache), PostgreDataTypeCache.java, plus
 *   the pgjdbc TypeInfoCache queries, in the order a DBeaver 25.1 session sends them on connect.
 *   DBeaver runs on pgjdbc, so every query goes through the extended protocol; pgjdbc switches to
 *   a named server-side statement after a few executions, which node-postgres's `name` mimics.
 * - pgAdmin 4: pgadmin/utils/driver connection set-up, the browser templates
 *   servers/templates/connect/sql/10_plus/check_recovery.sql, databases/sql/{default/nodes,
 *   17_plus/properties}.sql, schemas/pg/default/sql/{nodes,properties}.sql (with the
 *   catalog/pg/macros/catalogs.sql LIST macro expanded), tables/sql/default/{nodes,properties,
 *   get_columns_for_table}.sql, the columns properties template, the View Data queries, and the
 *   dashboard's activity/session_stats/config.sql. pgAdmin renders literals into the text
 *   (psycopg, no parameters): simple protocol.
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../helpers/postgres.js';
import { type Harness, startInspectHarness } from './inspect-harness.js';

/** What a team would put in front of a production database that people browse with a GUI. */
const GUI_RULES = {
  guardrails: [
    {
      name: 'no-ddl',
      match: {
        kinds: ['create', 'alter', 'drop', 'truncate', 'create-function', 'grant', 'revoke', 'create-role', 'alter-role', 'drop-role'],
      },
      action: 'block',
      message: 'schema changes go through migrations',
    },
    { name: 'no-role-switch', match: { kinds: ['set-role', 'set-session-authorization'] }, action: 'block' },
    {
      name: 'no-dangerous-functions',
      match: {
        functions: [
          'pg_terminate_backend',
          'pg_cancel_backend',
          'pg_read_file',
          'pg_read_binary_file',
          'pg_ls_dir',
          'pg_stat_file',
          'lo_import',
          'lo_export',
          'dblink*',
        ],
      },
      action: 'block',
    },
    { name: 'no-unbounded-write', match: { kinds: ['delete', 'update'], withoutWhere: true }, action: 'block' },
  ],
  masking: [
    { name: 'mask-email', columns: ['customers.email'], style: 'partial' },
    { name: 'mask-card', columns: ['card_number'], style: 'full' },
  ],
  maskedComputation: 'refuse',
};

/** Objects a schema browser has something to show for: comments, an index, a view, a function. */
const EXTRA_SETUP = [
  `COMMENT ON TABLE customers IS 'customer accounts'`,
  `COMMENT ON COLUMN customers.email IS 'contact address'`,
  `CREATE INDEX customers_email_idx ON customers (email)`,
  `CREATE INDEX customers_lower_name_idx ON customers (lower(name))`,
  `ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer) REFERENCES customers (id)`,
  `CREATE VIEW customer_names AS SELECT id, name FROM customers`,
  `CREATE FUNCTION order_total(c int) RETURNS numeric LANGUAGE sql AS 'select sum(amount) from orders where customer = c'`,
];

let h: Harness;
let publicOid: number;
let customersOid: number;
let dbOid: number;
let exprIndexOid: number;

beforeAll(async () => {
  h = await startInspectHarness('gui', EXTRA_SETUP);
  publicOid = Number((await sql(h.superDbUrl, `select 'public'::regnamespace::oid as o`))[0]!['o']);
  customersOid = Number((await sql(h.superDbUrl, `select 'public.customers'::regclass::oid as o`))[0]!['o']);
  exprIndexOid = Number((await sql(h.superDbUrl, `select 'public.customers_lower_name_idx'::regclass::oid as o`))[0]!['o']);
  dbOid = Number((await sql(h.superDbUrl, 'select oid from pg_database where datname = current_database()'))[0]!['oid']);
});
afterAll(async () => {
  await h?.close();
});

async function connect(): Promise<{ c: pg.Client; sid: string; url: string }> {
  const s = h.newSession(GUI_RULES);
  const c = new pg.Client({ connectionString: h.url(s) });
  c.on('error', () => {});
  await c.connect();
  return { c, sid: s.session.id, url: h.url(s) };
}

interface Probe {
  what: string;
  text: string;
  values?: () => unknown[];
  /** The result must have at least one row (catalog queries that always find something). */
  rows?: boolean;
}

/** DBeaver 25.1 on connect and when the navigator opens schema `public` and table `customers`. */
const DBEAVER: Probe[] = [
  { what: 'pgjdbc: extra_float_digits', text: 'SET extra_float_digits = 3' },
  { what: 'pgjdbc: application_name', text: `SET application_name = 'DBeaver 25.1.5 - Main <jit>'` },
  { what: 'PostgreDataSource: default objects', text: 'SELECT current_database(), current_schema(),session_user', rows: true },
  { what: 'PostgreExecutionContext: active schema', text: 'SELECT current_schema(),session_user', rows: true },
  { what: 'search path', text: 'SHOW search_path', rows: true },
  { what: 'server version', text: 'SELECT version()', rows: true },
  { what: 'DatabaseCache', text: 'SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=$1', values: () => [h.db], rows: true },
  {
    what: 'settings',
    text: 'SELECT * FROM pg_catalog.pg_settings where name=$1',
    values: () => ['standard_conforming_strings'],
    rows: true,
  },
  {
    what: 'dialect keywords',
    text: `SELECT string_agg(word, ',' ) from pg_catalog.pg_get_keywords() where word <> ALL ('{a,abs,absolute,action,ada,add,admin,after,all}'::text[])`,
    rows: true,
  },
  {
    what: 'SchemaCache',
    text: `SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass
 ORDER BY nspname`,
    rows: true,
  },
  {
    what: 'pgjdbc TypeInfoCache.getPGType(oid)',
    text: 'SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = $1',
    values: () => [1034],
    rows: true,
  },
  {
    what: 'pgjdbc TypeInfoCache array type',
    text: `SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = $1  ORDER BY sp.r, pg_type.oid DESC`,
    values: () => [1034],
    rows: true,
  },
  { what: 'enum probe', text: 'SELECT * FROM pg_catalog.pg_enum WHERE 1<>1 LIMIT 1' },
  { what: 'reltype probe', text: 'SELECT reltype FROM pg_catalog.pg_class WHERE 1<>1 LIMIT 1' },
  {
    what: 'PostgreDataTypeCache',
    text: `SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as base_type_name, d.description
FROM pg_catalog.pg_type t
LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem
LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid
LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid
WHERE t.typname IS NOT NULL
AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')
AND t.typnamespace=$1`,
    values: () => [11],
    rows: true,
  },
  { what: 'RoleCache', text: 'SELECT a.oid,a.* FROM pg_catalog.pg_roles a \nORDER BY a.oid', rows: true },
  { what: 'AccessMethodCache', text: 'SELECT am.oid,am.* FROM pg_catalog.pg_am am \nORDER BY am.oid', rows: true },
  {
    what: 'EncodingCache',
    text: 'SELECT c.contoencoding as encid,pg_catalog.pg_encoding_to_char(c.contoencoding) as encname\nFROM pg_catalog.pg_conversion c\nGROUP BY c.contoencoding\nORDER BY 2\n',
    rows: true,
  },
  { what: 'LanguageCache', text: 'SELECT l.oid,l.* FROM pg_catalog.pg_language l \nORDER BY l.oid', rows: true },
  { what: 'TablespaceCache', text: 'SELECT t.oid,t.* FROM pg_catalog.pg_tablespace t \nORDER BY t.oid', rows: true },
  {
    what: 'TableCache (schema public)',
    text: `SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key 
FROM pg_catalog.pg_class c
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass
WHERE c.relnamespace=$1 AND c.relkind not in ('i','I','c')`,
    values: () => [publicOid],
    rows: true,
  },
  {
    what: 'table statistics',
    text: 'select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,pg_catalog.pg_relation_size(c.oid) as rel_size FROM pg_class c WHERE c.relnamespace=$1',
    values: () => [publicOid],
    rows: true,
  },
  {
    what: 'TableCache children (columns of customers)',
    text: `SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description
FROM pg_catalog.pg_attribute a
INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)
LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)
LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)
WHERE NOT a.attisdropped AND c.oid=$1 ORDER BY a.attnum`,
    values: () => [customersOid],
    rows: true,
  },
  {
    what: 'TableCache children (whole schema)',
    text: `SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description
FROM pg_catalog.pg_attribute a
INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)
LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)
LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)
WHERE NOT a.attisdropped AND c.relnamespace=$1 AND c.relkind not in ('i','c')  ORDER BY a.attnum`,
    values: () => [publicOid],
    rows: true,
  },
  {
    what: 'ConstraintCache',
    text: `SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description, case when c.contype='c' then "substring"(pg_get_constraintdef(c.oid), 7) else null end consrc_copy
FROM pg_catalog.pg_constraint c
INNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid
LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_constraint'::regclass
WHERE t.relnamespace=$1
ORDER BY c.oid`,
    values: () => [publicOid],
    rows: true,
  },
  {
    what: 'IndexCache',
    text: `SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,c.reltablespace,tc.relname as tabrelname,dsc.description,pg_catalog.pg_get_expr(i.indpred, i.indrelid) as pred_expr,pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr,pg_catalog.pg_relation_size(i.indexrelid) as index_rel_size,pg_catalog.pg_stat_get_numscans(i.indexrelid) as index_num_scans
FROM pg_catalog.pg_index i
INNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid
INNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid
LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid
WHERE  i.indrelid=$1 ORDER BY tabrelname, c.relname`,
    values: () => [customersOid],
    rows: true,
  },
  {
    what: 'expression index column',
    text: 'select pg_catalog.pg_get_indexdef($1, $2, true)',
    values: () => [exprIndexOid, 1],
    rows: true,
  },
  {
    what: 'ProceduresCache',
    text: `SELECT p.oid,p.*,pg_catalog.pg_get_expr(p.proargdefaults, 0) as arg_defaults,d.description
FROM pg_catalog.pg_proc p
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=p.oid
WHERE p.pronamespace=$1
ORDER BY p.proname`,
    values: () => [publicOid],
    rows: true,
  },
  {
    // DBeaver joins pg_authid, which only superusers can read; pg_roles is its readable view.
    what: 'ExtensionCache',
    text: `SELECT 
 e.oid,
 a.rolname oname,
 cfg.tbls,
 e.* 
FROM 
 pg_catalog.pg_extension e 
 join pg_roles a on a.oid = e.extowner
 join pg_namespace n on n.oid =e.extnamespace
 left join  (
         select
            ARRAY_AGG(ns.nspname || '.' ||  cls.relname) tbls, oid_ext
          from
            (
            select
                unnest(e1.extconfig) oid , e1.oid oid_ext
            from
                pg_catalog.pg_extension e1 ) c 
                join    pg_class cls on cls.oid = c.oid 
                join pg_namespace ns on ns.oid = cls.relnamespace
            group by oid_ext        
         ) cfg on cfg.oid_ext = e.oid

WHERE e.extnamespace=$1
ORDER BY e.oid`,
    values: () => [11],
    rows: true,
  },
  { what: 'data viewer: row count', text: 'SELECT COUNT(*) FROM public.customers', rows: true },
];

/** pgAdmin 4 on connect, when expanding Databases → db → Schemas → public → Tables → customers, View Data, and the dashboard. */
const PGADMIN = (): Probe[] => [
  {
    what: 'connection set-up',
    text: `SET DateStyle=ISO; SET client_min_messages=notice; SELECT set_config('bytea_output','hex',false) FROM pg_show_all_settings() WHERE name = 'bytea_output'; SET client_encoding='utf-8';`,
    rows: true,
  },
  { what: 'server version', text: 'SELECT version()', rows: true },
  {
    what: 'current database',
    text: `
        SELECT
            db.oid as did, db.datname, db.datallowconn,
            pg_encoding_to_char(db.encoding) AS serverencoding,
            has_database_privilege(db.oid, 'CREATE') as cancreate,
            datistemplate
        FROM
            pg_catalog.pg_database db
        WHERE db.datname = current_database()`,
    rows: true,
  },
  {
    what: 'current role',
    text: `
                SELECT
                    roles.oid as id, roles.rolname as name,
                    roles.rolsuper as is_superuser,
                    CASE WHEN roles.rolsuper THEN true ELSE roles.rolcreaterole END as
                    can_create_role,
                    CASE WHEN roles.rolsuper THEN true
                    ELSE roles.rolcreatedb END as can_create_db,
                    CASE WHEN 'pg_signal_backend'=ANY(ARRAY(WITH RECURSIVE cte AS (
                    SELECT pg_roles.oid,pg_roles.rolname FROM pg_roles
                        WHERE pg_roles.oid = roles.oid
                    UNION ALL
                    SELECT m.roleid,pgr.rolname FROM cte cte_1
                        JOIN pg_auth_members m ON m.member = cte_1.oid
                        JOIN pg_roles pgr ON pgr.oid = m.roleid)
                    SELECT rolname  FROM cte)) THEN True
                    ELSE False END as can_signal_backend
                FROM
                    pg_catalog.pg_roles as roles
                WHERE
                    rolname = current_user`,
    rows: true,
  },
  {
    what: 'connect/sql/10_plus/check_recovery.sql',
    text: `SELECT CASE WHEN usesuper
       THEN pg_is_in_recovery()
       ELSE FALSE
       END as inrecovery,
       CASE WHEN usesuper AND pg_is_in_recovery()
       THEN pg_is_wal_replay_paused()
       ELSE FALSE
       END as isreplaypaused
FROM pg_user WHERE usename=current_user`,
    rows: true,
  },
  {
    what: 'databases/sql/default/nodes.sql',
    text: `SELECT
    db.oid as did, db.datname as name, ta.spcname as spcname, db.datallowconn,
    db.datistemplate AS is_template,
    pg_catalog.has_database_privilege(db.oid, 'CREATE') as cancreate, datdba as owner,
    descr.description
FROM
    pg_catalog.pg_database db
    LEFT OUTER JOIN pg_catalog.pg_tablespace ta ON db.dattablespace = ta.oid
    LEFT OUTER JOIN pg_catalog.pg_shdescription descr ON (
        db.oid=descr.objoid AND descr.classoid='pg_database'::regclass
    )
WHERE 
    db.oid > 16383::OID OR db.datname IN ('postgres', 'edb')

ORDER BY datname;`,
    rows: true,
  },
  {
    what: 'databases/sql/17_plus/properties.sql',
    text: `SELECT
    db.oid AS did, db.oid, db.datname AS name, db.dattablespace AS spcoid,
    spcname, datallowconn, pg_catalog.pg_encoding_to_char(encoding) AS encoding,
    pg_catalog.pg_get_userbyid(datdba) AS datowner, db.datcollate, db.datctype,
    datconnlimit, datlocale AS daticulocale, datlocale AS datbuiltinlocale, daticurules, datcollversion,
    CASE WHEN datlocprovider = 'i' THEN 'icu' WHEN datlocprovider = 'b' THEN 'builtin'
    ELSE 'libc' END datlocaleprovider,
    pg_catalog.has_database_privilege(db.oid, 'CREATE') AS cancreate,
    pg_catalog.current_setting('default_tablespace') AS default_tablespace,
    descr.description AS comments, db.datistemplate AS is_template,
    '' AS tblacl,
    '' AS seqacl,
    '' AS funcacl,
    pg_catalog.array_to_string(datacl::text[], ', ') AS acl
FROM pg_catalog.pg_database db
    LEFT OUTER JOIN pg_catalog.pg_tablespace ta ON db.dattablespace=ta.OID
    LEFT OUTER JOIN pg_catalog.pg_shdescription descr ON (
        db.oid=descr.objoid AND descr.classoid='pg_database'::regclass
    )
WHERE
    db.oid = ${dbOid}::OID

ORDER BY datname;`,
    rows: true,
  },
  {
    what: 'schemas/pg/default/sql/nodes.sql',
    text: String.raw`SELECT
    nsp.oid,
    nsp.nspname as name,
    pg_catalog.has_schema_privilege(nsp.oid, 'CREATE') as can_create,
    pg_catalog.has_schema_privilege(nsp.oid, 'USAGE') as has_usage,
    des.description
FROM
    pg_catalog.pg_namespace nsp
    LEFT OUTER JOIN pg_catalog.pg_description des ON
        (des.objoid=nsp.oid AND des.classoid='pg_namespace'::regclass)
WHERE
     nspname NOT LIKE E'pg\\_%' AND
    NOT (
    (nsp.nspname = 'pg_catalog' AND EXISTS
        (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'pg_class' AND
            relnamespace = nsp.oid LIMIT 1)) OR
    (nsp.nspname = 'pgagent' AND EXISTS
        (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'pga_job' AND
            relnamespace = nsp.oid LIMIT 1)) OR
    (nsp.nspname = 'information_schema' AND EXISTS
        (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'tables' AND
            relnamespace = nsp.oid LIMIT 1))
    )

ORDER BY nspname;`,
    rows: true,
  },
  {
    what: 'schemas/pg/default/sql/properties.sql',
    text: String.raw`SELECT
    CASE
    WHEN (nspname LIKE E'pg\\_temp\\_%') THEN 1
    WHEN (nspname LIKE E'pg\\_%') THEN 0
    ELSE 3 END AS nsptyp,
    nsp.nspname AS name,
    nsp.oid,
    pg_catalog.array_to_string(nsp.nspacl::text[], ', ') as acl,
    r.rolname AS namespaceowner, description,
    pg_catalog.has_schema_privilege(nsp.oid, 'CREATE') AS can_create,
    (SELECT pg_catalog.array_to_string(ARRAY(
        SELECT pg_catalog.array_to_string(defaclacl::text[], ', ')
            FROM pg_catalog.pg_default_acl
        WHERE defaclobjtype = 'r' AND defaclnamespace = nsp.oid
    ), ', ')) AS tblacl,
    (SELECT pg_catalog.array_to_string(ARRAY(
        SELECT pg_catalog.array_to_string(defaclacl::text[], ', ')
            FROM pg_catalog.pg_default_acl
        WHERE defaclobjtype = 'S' AND defaclnamespace = nsp.oid
    ), ', ')) AS seqacl,
    (SELECT pg_catalog.array_to_string(ARRAY(
        SELECT pg_catalog.array_to_string(defaclacl::text[], ', ')
            FROM pg_catalog.pg_default_acl
        WHERE defaclobjtype = 'f' AND defaclnamespace = nsp.oid
    ), ', ')) AS funcacl,
    (SELECT pg_catalog.array_to_string(ARRAY(
        SELECT pg_catalog.array_to_string(defaclacl::text[], ', ')
            FROM pg_catalog.pg_default_acl
        WHERE defaclobjtype = 'T' AND defaclnamespace = nsp.oid
    ), ', ')) AS typeacl,
    (SELECT pg_catalog.array_agg(provider || '=' || label) FROM pg_catalog.pg_seclabels sl1 WHERE sl1.objoid=nsp.oid) AS seclabels
FROM
    pg_catalog.pg_namespace nsp
    LEFT OUTER JOIN pg_catalog.pg_description des ON
        (des.objoid=nsp.oid AND des.classoid='pg_namespace'::regclass)
    LEFT JOIN pg_catalog.pg_roles r ON (r.oid = nsp.nspowner)
WHERE
    nsp.oid=${publicOid}::oid AND
    NOT (
    (nsp.nspname = 'pg_catalog' AND EXISTS
        (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'pg_class' AND
            relnamespace = nsp.oid LIMIT 1)) OR
    (nsp.nspname = 'pgagent' AND EXISTS
        (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'pga_job' AND
            relnamespace = nsp.oid LIMIT 1)) OR
    (nsp.nspname = 'information_schema' AND EXISTS
        (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'tables' AND
            relnamespace = nsp.oid LIMIT 1))
    )
ORDER BY 1, nspname;`,
    rows: true,
  },
  {
    what: 'tables/sql/default/nodes.sql',
    text: `SELECT rel.oid, rel.relname AS name,
    (SELECT count(*) FROM pg_trigger WHERE tgrelid=rel.oid) AS triggercount,
    (SELECT count(*) FROM pg_trigger WHERE tgrelid=rel.oid AND tgenabled = 'O') AS has_enable_triggers,
	(SELECT count(1) FROM pg_inherits WHERE inhrelid=rel.oid LIMIT 1) as is_inherits,
	(SELECT count(1) FROM pg_inherits WHERE inhparent=rel.oid LIMIT 1) as is_inherited
FROM pg_class rel
    WHERE rel.relkind IN ('r','s','t') AND rel.relnamespace = ${publicOid}::oid
    ORDER BY rel.relname;`,
    rows: true,
  },
  {
    // relhasoids is gone since PostgreSQL 12; pgAdmin's 12_plus templates select false for it.
    what: 'tables/sql/default/properties.sql',
    text: `SELECT *,
	(CASE when pre_coll_inherits is NULL then ARRAY[]::varchar[] else pre_coll_inherits END) as coll_inherits
FROM (
	SELECT rel.oid, rel.relname AS name, rel.reltablespace AS spcoid,rel.relacl AS relacl_str,
		(CASE WHEN length(spc.spcname::text) > 0 THEN spc.spcname ELSE
			(SELECT sp.spcname FROM pg_database dtb
			JOIN pg_tablespace sp ON dtb.dattablespace=sp.oid
			WHERE dtb.oid = ${dbOid}::oid)
		END) as spcname,
		(select nspname FROM pg_namespace WHERE oid = ${publicOid}::oid ) as schema,
		pg_get_userbyid(rel.relowner) AS relowner, false AS relhasoids,
		rel.relhassubclass, rel.reltuples::bigint, des.description, con.conname, con.conkey,
		EXISTS(select 1 FROM pg_trigger
				JOIN pg_proc pt ON pt.oid=tgfoid AND pt.proname='logtrigger'
				JOIN pg_proc pc ON pc.pronamespace=pt.pronamespace AND pc.proname='slonyversion'
				WHERE tgrelid=rel.oid) AS isrepl,
		(SELECT count(*) FROM pg_trigger WHERE tgrelid=rel.oid) AS triggercount,
		(SELECT ARRAY(SELECT CASE WHEN (nspname NOT LIKE 'pg\\_%') THEN
							quote_ident(nspname)||'.'||quote_ident(c.relname)
							ELSE quote_ident(c.relname) END AS inherited_tables
			FROM pg_inherits i
			JOIN pg_class c ON c.oid = i.inhparent
			JOIN pg_namespace n ON n.oid=c.relnamespace
			WHERE i.inhrelid = rel.oid ORDER BY inhseqno)) AS pre_coll_inherits,
		(SELECT count(*)
			FROM pg_inherits i
				JOIN pg_class c ON c.oid = i.inhparent
				JOIN pg_namespace n ON n.oid=c.relnamespace
			WHERE i.inhrelid = rel.oid) AS inherited_tables_cnt,
		false AS relpersistence,
		substring(array_to_string(rel.reloptions, ',') FROM 'fillfactor=([0-9]*)') AS fillfactor,
		(substring(array_to_string(rel.reloptions, ',') FROM 'autovacuum_enabled=([a-z|0-9]*)'))::BOOL AS autovacuum_enabled,
		substring(array_to_string(rel.reloptions, ',') FROM 'autovacuum_vacuum_threshold=([0-9]*)') AS autovacuum_vacuum_threshold,
		(substring(array_to_string(tst.reloptions, ',') FROM 'autovacuum_enabled=([a-z|0-9]*)'))::BOOL AS toast_autovacuum_enabled,
		rel.reloptions AS reloptions, tst.reloptions AS toast_reloptions, NULL AS reloftype, NULL AS typname,
		typ.typrelid AS typoid, rel.relrowsecurity as rlspolicy, rel.relforcerowsecurity as forcerlspolicy,
		(CASE WHEN rel.reltoastrelid = 0 THEN false ELSE true END) AS hastoasttable,
		ARRAY[]::varchar[] AS seclabels,
		(CASE WHEN rel.oid <= 16383::oid THEN true ElSE false END) AS is_sys_table

	FROM pg_class rel
		LEFT OUTER JOIN pg_tablespace spc on spc.oid=rel.reltablespace
		LEFT OUTER JOIN pg_description des ON (des.objoid=rel.oid AND des.objsubid=0 AND des.classoid='pg_class'::regclass)
		LEFT OUTER JOIN pg_constraint con ON con.conrelid=rel.oid AND con.contype='p'
		LEFT OUTER JOIN pg_class tst ON tst.oid = rel.reltoastrelid
		LEFT JOIN pg_type typ ON rel.reloftype=typ.oid

	 WHERE rel.relkind IN ('r','s','t') AND rel.relnamespace = ${publicOid}
	  AND rel.oid = ${customersOid}::oid
) AS TableInformation
 ORDER BY name`,
    rows: true,
  },
  {
    what: 'columns properties',
    text: `SELECT att.attname as name, att.atttypid, att.attlen, att.attnum, att.attndims,
att.atttypmod, att.attacl, att.attnotnull, att.attoptions, att.attstattarget,
att.attstorage, att.attidentity,
pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS defval,
pg_catalog.format_type(ty.oid,NULL) AS typname,
pg_catalog.format_type(ty.oid,att.atttypmod) AS displaytypname,
pg_catalog.format_type(ty.oid,att.atttypmod) AS cltype,
CASE WHEN ty.typelem > 0 THEN ty.typelem ELSE ty.oid END as elemoid,
(SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = ty.typnamespace) as typnspname,
ty.typstorage AS defaultstorage,
description, pi.indkey,
(SELECT count(1) FROM pg_catalog.pg_type t2 WHERE t2.typname=ty.typname) > 1 AS isdup,
CASE WHEN length(coll.collname::text) > 0 AND length(nspc.nspname::text) > 0  THEN
pg_catalog.concat(pg_catalog.quote_ident(nspc.nspname),'.',pg_catalog.quote_ident(coll.collname))
ELSE '' END AS collspcname,
EXISTS(SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid=att.attrelid AND contype='f' AND att.attnum=ANY(conkey)) As is_fk,
(SELECT pg_catalog.array_agg(provider || '=' || label) FROM pg_catalog.pg_seclabels sl1 WHERE sl1.objoid=att.attrelid AND sl1.objsubid=att.attnum) AS seclabels,
(CASE WHEN (att.attnum < 1) THEN true ElSE false END) AS is_sys_column,
(CASE WHEN (att.attidentity in ('a', 'd')) THEN 'i' ELSE 'n' END) AS colconstype, tab.relname as relname,
(CASE WHEN tab.relkind = 'v' THEN true ELSE false END) AS is_view_only,
seq.*
FROM pg_catalog.pg_attribute att
JOIN pg_catalog.pg_type ty ON ty.oid=atttypid
LEFT OUTER JOIN pg_catalog.pg_attrdef def ON adrelid=att.attrelid AND adnum=att.attnum
LEFT OUTER JOIN pg_catalog.pg_description des ON (des.objoid=att.attrelid AND des.objsubid=att.attnum AND des.classoid='pg_class'::regclass)
LEFT OUTER JOIN (pg_catalog.pg_depend dep JOIN pg_catalog.pg_class cs ON dep.classid='pg_class'::regclass AND dep.objid=cs.oid AND cs.relkind='S') ON dep.refobjid=att.attrelid AND dep.refobjsubid=att.attnum
LEFT OUTER JOIN pg_catalog.pg_index pi ON pi.indrelid=att.attrelid AND indisprimary
LEFT OUTER JOIN pg_catalog.pg_collation coll ON att.attcollation=coll.oid
LEFT OUTER JOIN pg_catalog.pg_namespace nspc ON coll.collnamespace=nspc.oid
LEFT OUTER JOIN pg_catalog.pg_sequence seq ON cs.oid=seq.seqrelid
LEFT OUTER JOIN pg_catalog.pg_class tab on tab.oid = att.attrelid
WHERE att.attrelid = ${customersOid}::oid
AND att.attnum > 0
AND att.attisdropped IS FALSE
ORDER BY att.attnum;`,
    rows: true,
  },
  {
    what: 'tables/sql/default/get_columns_for_table.sql',
    text: `SELECT
    a.attname AS name, pg_catalog.format_type(a.atttypid, NULL) AS cltype,
    pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS defval,
    pg_catalog.quote_ident(n.nspname)||'.'||pg_catalog.quote_ident(c.relname) as inheritedfrom,
    c.oid as inheritedid
FROM
    pg_catalog.pg_class c
JOIN
    pg_catalog.pg_namespace n ON c.relnamespace=n.oid
JOIN
    pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped AND a.attnum > 0
LEFT OUTER JOIN
    pg_catalog.pg_attrdef def ON adrelid=a.attrelid AND adnum=a.attnum
WHERE
    c.oid = ${customersOid}::OID
`,
    rows: true,
  },
  {
    what: 'View Data: primary key columns',
    text: `SELECT at.attname, at.attnum, ty.typname
        FROM pg_catalog.pg_attribute at LEFT JOIN pg_catalog.pg_type ty ON (ty.oid = at.atttypid)
        WHERE attrelid=${customersOid}::oid AND attnum = ANY (
            (SELECT con.conkey FROM pg_catalog.pg_class rel LEFT OUTER JOIN pg_catalog.pg_constraint con ON con.conrelid=rel.oid
            AND con.contype='p' WHERE rel.relkind IN ('r','s','t', 'p') AND rel.oid = ${customersOid}::oid)::oid[])
`,
    rows: true,
  },
  {
    what: 'View Data: column types',
    text: `SELECT DISTINCT att.attname as name, att.attnum as OID, pg_catalog.format_type(ty.oid,NULL) AS datatype,
        att.attnotnull as not_null, att.atthasdef as has_default_val
        FROM pg_catalog.pg_attribute att
            JOIN pg_catalog.pg_type ty ON ty.oid=atttypid
            JOIN pg_catalog.pg_namespace tn ON tn.oid=ty.typnamespace
            JOIN pg_catalog.pg_class cl ON cl.oid=att.attrelid
            JOIN pg_catalog.pg_namespace na ON na.oid=cl.relnamespace
            LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=ty.typelem
            LEFT OUTER JOIN pg_catalog.pg_attrdef def ON adrelid=att.attrelid AND adnum=att.attnum
            LEFT OUTER JOIN (pg_catalog.pg_depend JOIN pg_catalog.pg_class cs ON classid='pg_class'::regclass AND objid=cs.oid AND cs.relkind='S') ON refobjid=att.attrelid AND refobjsubid=att.attnum
            LEFT OUTER JOIN pg_catalog.pg_namespace ns ON ns.oid=cs.relnamespace
            LEFT OUTER JOIN pg_catalog.pg_index pi ON pi.indrelid=att.attrelid AND indisprimary
        WHERE
            att.attrelid = ${customersOid}::oid
            AND att.attnum > 0
            AND att.attisdropped IS FALSE
        ORDER BY att.attnum`,
    rows: true,
  },
  {
    what: 'View Data: type names',
    text: 'SELECT oid, pg_catalog.format_type(oid, NULL) AS typname FROM pg_catalog.pg_type WHERE oid IN (23, 25, 25, 25, 1043) ORDER BY oid;',
    rows: true,
  },
  {
    what: 'dashboard/sql/default/session_stats.sql',
    text: `/*pga4dash*/
SELECT
   (SELECT count(*) FROM pg_stat_activity WHERE datname = (SELECT datname FROM pg_database WHERE oid = ${dbOid})) AS "Total",
   (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND datname = (SELECT datname FROM pg_database WHERE oid = ${dbOid}))  AS "Active",
   (SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' AND datname = (SELECT datname FROM pg_database WHERE oid = ${dbOid}))  AS "Idle"
`,
    rows: true,
  },
  {
    what: 'dashboard/sql/default/activity.sql',
    text: `/*pga4dash*/
SELECT
    pid,
    datname,
    usename,
    application_name,
    client_addr,
    pg_catalog.to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS backend_start,
    state,
    wait_event_type || ': ' || wait_event AS wait_event,
    array_to_string(pg_catalog.pg_blocking_pids(pid), ', ') AS blocking_pids,
    query,
    pg_catalog.to_char(state_change, 'YYYY-MM-DD HH24:MI:SS TZ') AS state_change,
    pg_catalog.to_char(query_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS query_start,
    pg_catalog.to_char(xact_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS xact_start,
    backend_type,
    CASE WHEN state = 'active' THEN ROUND((extract(epoch from now() - query_start) / 60)::numeric, 2) ELSE 0 END AS active_since
FROM
    pg_catalog.pg_stat_activity
WHERE
    datname = (SELECT datname FROM pg_catalog.pg_database WHERE oid = ${dbOid})
ORDER BY pid
`,
    rows: true,
  },
  {
    what: 'dashboard/sql/default/config.sql',
    text: `/*pga4dash*/
SELECT
    name,
    category,
    setting,
    unit,
    short_desc
FROM
    pg_catalog.pg_show_all_settings()
ORDER BY
    category
`,
    rows: true,
  },
];

interface Outcome {
  what: string;
  error?: { code?: string; message: string; detail?: string };
  rows: number;
}

/** Run each probe, collecting failures instead of stopping at the first, so a report names them all. */
async function runAll(c: pg.Client, probes: Probe[], mode: 'extended' | 'simple', round = ''): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const [i, p] of probes.entries()) {
    try {
      const r =
        mode === 'extended' ? await c.query({ name: `dbv${i}${round}`, text: p.text, values: p.values?.() ?? [] }) : await c.query(p.text);
      // A multi-statement simple query gives one result per statement: count the SELECT's rows.
      const results = Array.isArray(r) ? (r as pg.QueryResult[]) : [r];
      out.push({ what: p.what, rows: results.reduce((n, x) => n + (x.rows?.length ?? 0), 0) });
    } catch (e) {
      const err = e as { code?: string; message: string; detail?: string };
      out.push({ what: p.what, rows: 0, error: { code: err.code, message: err.message, detail: err.detail } });
    }
  }
  return out;
}

/** Execute DBeaver's prepared statement `what` again (same name: Bind/Execute only). */
function rerun(c: pg.Client, what: string): Promise<pg.QueryResult> {
  const i = DBEAVER.findIndex((p) => p.what === what);
  const p = DBEAVER[i]!;
  return c.query({ name: `dbv${i}`, text: p.text, values: p.values?.() ?? [] });
}

function expectAllAnswered(probes: Probe[], outcomes: Outcome[]): void {
  expect(outcomes.filter((o) => o.error)).toEqual([]);
  const empty = outcomes.filter((o, i) => probes[i]!.rows && o.rows === 0).map((o) => o.what);
  expect(empty).toEqual([]);
}

describe('DBeaver (pgjdbc: extended protocol, named prepared statements, bound parameters)', () => {
  it('answers every catalog query DBeaver sends on connect and when browsing a schema, twice (re-executing the prepared statements)', async () => {
    const { c, sid } = await connect();
    try {
      expectAllAnswered(DBEAVER, await runAll(c, DBEAVER, 'extended'));
      // pgjdbc re-executes its named statements (Bind/Execute only, no Parse) on a refresh.
      expectAllAnswered(DBEAVER, await runAll(c, DBEAVER, 'extended'));

      // What the navigator shows comes back: schema public, table customers, its email column
      // (a column NAME is catalog data, not masked), the email index and the FK constraint.
      const tables = await rerun(c, 'TableCache (schema public)');
      expect(tables.rows.map((r) => r.relname).sort()).toEqual(
        expect.arrayContaining(['customer_names', 'customers', 'orders', 'orders_id_seq']),
      );
      expect(tables.rows.find((r) => r.relname === 'customers')?.description).toBe('customer accounts');
      const cols = await rerun(c, 'TableCache children (columns of customers)');
      expect(cols.rows.filter((r) => r.attnum > 0).map((r) => [r.attname, r.description])).toEqual([
        ['id', null],
        ['name', null],
        ['email', 'contact address'],
        ['card_number', null],
        ['notes', null],
      ]);
      const idx = await rerun(c, 'IndexCache');
      expect(idx.rows.map((r) => [r.relname, r.expr])).toEqual(
        expect.arrayContaining([
          ['customers_email_idx', null],
          ['customers_lower_name_idx', 'lower(name)'],
        ]),
      );

      // The data viewer: masking applies to the user table whether DBeaver selects t.* or names columns.
      const data = await c.query({ name: 'dbv-data', text: 'SELECT t.* FROM public.customers t LIMIT 200', values: [] });
      expect(data.rows.map((r) => [r.email, r.card_number])).toEqual([
        ['a***@example.com', '****'],
        ['b***@example.org', '****'],
        [null, null],
      ]);
      const byId = await c.query({ name: 'dbv-byid', text: 'SELECT id, email FROM public.customers WHERE id=$1', values: [2] });
      expect(byId.rows).toEqual([{ id: 2, email: 'b***@example.org' }]);

      // The policy is live on the same connection: a filter on the masked column, DDL from the
      // table editor and a function blocked by name are refused with the rule.
      await expect(
        c.query({ name: 'dbv-filter', text: `SELECT t.* FROM public.customers t WHERE t.email LIKE $1`, values: ['%@example.com'] }),
      ).rejects.toMatchObject({ code: '42501', detail: 'rule: mask-email' });
      await expect(c.query({ name: 'dbv-ddl', text: 'ALTER TABLE public.customers ADD x int4 NULL', values: [] })).rejects.toMatchObject({
        code: '42501',
        detail: 'rule: no-ddl',
      });
      expect((await rerun(c, 'server version')).rows).toHaveLength(1);
    } finally {
      await c.end();
    }

    // Audit: every execution of every prepared statement is recorded (extended protocol, with its
    // statement name and bound parameters), and nothing but the three refusals was blocked.
    const executed = h.events.filter((e) => e.session === sid && e.event === 'statement.executed').map((e) => e.data!);
    for (const [i, p] of DBEAVER.entries()) {
      const runs = executed.filter((d) => d['sql'] === p.text && d['statementName'] === `dbv${i}`);
      expect(runs.length, p.what).toBeGreaterThanOrEqual(2);
      expect(runs[0], p.what).toMatchObject({ protocol: 'extended' });
      if (p.values) expect(runs[0]!['params'], p.what).toEqual(p.values().map(String));
    }
    const blocked = h.events.filter((e) => e.session === sid && e.event === 'statement.blocked').map((e) => e.data?.['rule']);
    expect(blocked).toEqual(['mask-email', 'no-ddl']);
    const masked = h.events.filter((e) => e.session === sid && e.event === 'result.masked');
    expect(masked.length).toBeGreaterThanOrEqual(2);
  });
});

describe('pgAdmin 4 (psycopg: simple protocol, literals in the text)', () => {
  it('answers its connection set-up, browser tree, View Data and dashboard queries; View Data is masked', async () => {
    const { c, sid } = await connect();
    const probes = PGADMIN();
    try {
      expectAllAnswered(probes, await runAll(c, probes, 'simple'));

      // The set-up batch ran whole: bytea_output is hex, DateStyle ISO.
      expect((await c.query('SHOW DateStyle')).rows[0].DateStyle).toMatch(/^ISO/);

      // View Data (pgAdmin's "All Rows"): the user table comes back masked.
      const rows = await c.query('SELECT * FROM public.customers\nORDER BY id ASC');
      expect(rows.rows.map((r) => [r.id, r.email, r.card_number])).toEqual([
        [1, 'a***@example.com', '****'],
        [2, 'b***@example.org', '****'],
        [3, null, null],
      ]);

      // The dashboard's "terminate session" and "cancel query" buttons are refused by name.
      await expect(c.query('SELECT pg_catalog.pg_terminate_backend(12345);')).rejects.toMatchObject({
        code: '42501',
        detail: 'rule: no-dangerous-functions',
      });
      await expect(c.query('SELECT pg_catalog.pg_cancel_backend(12345);')).rejects.toMatchObject({ code: '42501' });
      expect((await c.query('SELECT version()')).rows).toHaveLength(1);
    } finally {
      await c.end();
    }

    const executed = h.events.filter((e) => e.session === sid && e.event === 'statement.executed').map((e) => e.data!);
    for (const p of probes) {
      expect(
        executed.some((d) => d['protocol'] === 'simple' && typeof d['sql'] === 'string' && p.text.includes(d['sql'] as string)),
        p.what,
      ).toBe(true);
    }
    const blocked = h.events.filter((e) => e.session === sid && e.event === 'statement.blocked').map((e) => e.data?.['rule']);
    expect(blocked).toEqual(['no-dangerous-functions', 'no-dangerous-functions']);
  });
});

describe('pgAdmin 4 under a policy that masks a column called name', () => {
  it('connects (regression: its set-up batch was refused because `name` from pg_show_all_settings() was taken for customers.name)', async () => {
    const rules = { ...GUI_RULES, masking: [...GUI_RULES.masking, { name: 'mask-name', columns: ['customers.name'], style: 'full' }] };
    const s = h.newSession(rules);
    const c = new pg.Client({ connectionString: h.url(s) });
    c.on('error', () => {});
    await c.connect();
    try {
      const setup = (await c.query(PGADMIN()[0]!.text)) as unknown as pg.QueryResult[];
      expect(setup.map((r) => r.command)).toEqual(['SET', 'SET', 'SELECT', 'SET']);
      expect((await c.query('SELECT id, name FROM public.customers WHERE id = 1')).rows).toEqual([{ id: 1, name: '****' }]);
      // A probe on the masked column is still refused, also behind a function in FROM.
      await expect(
        c.query(`select name from pg_show_all_settings() where name in (select name from customers where name like 'A%')`),
      ).rejects.toMatchObject({ code: '42501', detail: 'rule: mask-name' });
    } finally {
      await c.end();
    }
  });
});

describe('psql \\watch', () => {
  it('re-runs a query every 0.2 s through the engine; every run is answered, masked and audited', async () => {
    const s = h.newSession(GUI_RULES);
    const sid = s.session.id;
    // psql 15 has no \watch count: run it from stdin and interrupt it like a user pressing ^C.
    const child = spawn('/usr/bin/psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', h.url(s)], {
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdin.write('select email from customers where id = 1 \\watch 0.2\n');
    child.stdin.end();
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Wait for at least 5 answers, then interrupt.
    for (let i = 0; i < 100 && (stdout.match(/a\*\*\*@example\.com/g)?.length ?? 0) < 5; i++) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);

    expect(stderr).not.toMatch(/ERROR/);
    const answers = stdout.split('\n').filter((l) => l.includes('@'));
    expect(answers.length).toBeGreaterThanOrEqual(5);
    expect(new Set(answers)).toEqual(new Set(['a***@example.com']));
    const runs = h.events.filter(
      (e) => e.session === sid && e.event === 'statement.executed' && e.data?.['sql'] === 'select email from customers where id = 1',
    );
    expect(runs.length).toBeGreaterThanOrEqual(answers.length);
    expect(runs.every((e) => e.data?.['protocol'] === 'simple')).toBe(true);
  });
});
