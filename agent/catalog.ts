/**
 * Catalog look-ups the inspecting engine needs to mask results: which table column a result
 * field comes from (RowDescription's table OID + attribute number), the column list of a table
 * for `COPY table TO STDOUT`, and a function's name for FunctionCall.
 *
 * Look-ups go through the target's admin role on a small pool per database (OIDs are per
 * database), never through the client's own connection. Answers are cached per
 * (database, table OID) for `ttlMs`: a column renamed inside that window keeps its old identity
 * (documented in docs/policy.md). A failed look-up throws; callers refuse the result (fail closed).
 */
import pg from 'pg';
import type { ColumnIdentity } from '#protocol/postgres/mask.js';
import type { CatalogSnapshot } from '#protocol/postgres/provenance.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';

/** What a result column is in the catalog (the masking engine's type). */
export type { ColumnIdentity };

export interface CatalogDeps {
  /** The target's admin connection URL; its database part is replaced per look-up. Never logged. */
  adminUrl: string;
  target: string;
  logger: Logger;
  clock: Clock;
  /** How long a table's columns are trusted (default 60 s). */
  ttlMs?: number;
  /** Tables kept per catalog (default 10 000; the oldest go first). */
  maxTables?: number;
}

interface TableEntry {
  at: number;
  schema: string;
  table: string;
  /** attnum → name; empty when the OID is not a table (any more). */
  columns: Map<number, string>;
  /** pg_class.relkind ('r' table, 'v' view, 'm' materialised view, 'p' partitioned, …) */
  kind: string;
}

/** How long a database's catalog snapshot (views, functions, inheritance) is shared between connections. */
const SNAPSHOT_SHARE_MS = 5_000;

const MAX_POOLS = 32;

/** Per-target catalog resolver with a cache; shared by every stream of the target. */
export class Catalog {
  private readonly pools = new Map<string, pg.Pool>();
  private readonly tables = new Map<string, TableEntry>();
  private readonly snapshots = new Map<string, { at: number; snap: Promise<CatalogSnapshot> }>();
  private readonly ttlMs: number;
  private readonly maxTables: number;

  constructor(private readonly deps: CatalogDeps) {
    this.ttlMs = deps.ttlMs ?? 60_000;
    this.maxTables = deps.maxTables ?? 10_000;
  }

  /** The cached identity of (table OID, attnum); undefined when unknown, not cached, or not a table column. */
  column(database: string, tableOid: number, attnum: number): ColumnIdentity | undefined {
    if (tableOid === 0 || attnum <= 0) return undefined;
    const t = this.tables.get(key(database, tableOid));
    if (!t) return undefined;
    const name = t.columns.get(attnum);
    return name === undefined ? undefined : { schema: t.schema, table: t.table, column: name };
  }

  /** The cached relkind of a relation OID ('v' view, 'm' materialised view, …); undefined when not cached. */
  relationKind(database: string, tableOid: number): string | undefined {
    return this.tables.get(key(database, tableOid))?.kind;
  }

  /** Table OIDs among these that are not cached (or stale) and must be loaded first. */
  missing(database: string, tableOids: Iterable<number>): number[] {
    const now = this.deps.clock.now();
    const out: number[] = [];
    for (const oid of tableOids) {
      if (oid === 0 || out.includes(oid)) continue;
      const t = this.tables.get(key(database, oid));
      if (!t || now - t.at > this.ttlMs) out.push(oid);
    }
    return out;
  }

  /** Load the columns of these tables into the cache. Throws when the catalog cannot be read. */
  async load(database: string, tableOids: number[]): Promise<void> {
    if (tableOids.length === 0) return;
    const res = await this.pool(database).query<{
      oid: number;
      nspname: string;
      relname: string;
      relkind: string;
      attnum: number;
      attname: string;
    }>(
      `select c.oid::int8 as oid, n.nspname, c.relname, c.relkind, a.attnum, a.attname
         from pg_catalog.pg_class c
         join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         join pg_catalog.pg_attribute a on a.attrelid = c.oid
        where c.oid = any($1::pg_catalog.oid[]) and a.attnum > 0 and not a.attisdropped`,
      [tableOids],
    );
    const now = this.deps.clock.now();
    const fresh = new Map<number, TableEntry>();
    for (const oid of tableOids) fresh.set(oid, { at: now, schema: '', table: '', columns: new Map(), kind: '' });
    for (const r of res.rows) {
      const t = fresh.get(Number(r.oid));
      if (!t) continue;
      t.schema = r.nspname;
      t.table = r.relname;
      t.kind = r.relkind;
      t.columns.set(r.attnum, r.attname);
    }
    for (const [oid, t] of fresh) {
      const k = key(database, oid);
      this.tables.delete(k);
      this.tables.set(k, t);
    }
    while (this.tables.size > this.maxTables) {
      const oldest = this.tables.keys().next().value;
      if (oldest === undefined) break;
      this.tables.delete(oldest);
    }
  }

  /**
   * Columns of a table in COPY order (attnum, without dropped and generated columns), resolved
   * with the admin role's search_path. undefined when there is no such table.
   */
  async tableColumns(database: string, relation: string): Promise<{ schema: string; table: string; columns: string[] } | undefined> {
    const res = await this.pool(database).query<{ nspname: string; relname: string; attname: string }>(
      `select n.nspname, c.relname, a.attname
         from pg_catalog.pg_class c
         join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         join pg_catalog.pg_attribute a on a.attrelid = c.oid
        where c.oid = pg_catalog.to_regclass($1) and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
        order by a.attnum`,
      [relation],
    );
    const first = res.rows[0];
    if (!first) return undefined;
    return { schema: first.nspname, table: first.relname, columns: res.rows.map((r) => r.attname) };
  }

  /** A function's name (lowercase, unqualified) by OID, for FunctionCall; undefined when unknown. */
  async functionName(database: string, oid: number): Promise<string | undefined> {
    const res = await this.pool(database).query<{ proname: string }>(
      'select proname from pg_catalog.pg_proc where oid = $1::pg_catalog.oid',
      [oid],
    );
    return res.rows[0]?.proname.toLowerCase();
  }

  /**
   * What provenance needs of a database (src/protocol/postgres/provenance.ts): its views and
   * materialised views with their definitions, its own functions (not built in) with their bodies,
   * and table inheritance. Read in one read-only transaction with an empty search_path, so every
   * relation in a view definition is schema-qualified. Shared between connections for a few
   * seconds; throws when the catalog cannot be read (callers fail closed).
   */
  snapshot(database: string, maxAgeMs = SNAPSHOT_SHARE_MS): Promise<CatalogSnapshot> {
    const now = this.deps.clock.now();
    const hit = this.snapshots.get(database);
    if (hit && now - hit.at < maxAgeMs) return hit.snap;
    const snap = this.readSnapshot(database);
    this.snapshots.set(database, { at: now, snap });
    snap.catch(() => {
      if (this.snapshots.get(database)?.snap === snap) this.snapshots.delete(database);
    });
    return snap;
  }

  private async readSnapshot(database: string): Promise<CatalogSnapshot> {
    const client = await this.pool(database).connect();
    try {
      await client.query("begin read only; set local search_path to ''");
      const views = await client.query<{ schema: string; name: string; def: string | null; cols: string[] }>(
        `select n.nspname as schema, c.relname as name, pg_catalog.pg_get_viewdef(c.oid) as def,
                array(select a.attname::text from pg_catalog.pg_attribute a
                       where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum) as cols
           from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')`,
      );
      const fns = await client.query<{
        schema: string;
        name: string;
        language: string;
        secdef: boolean;
        kind: string;
        ext: boolean;
        def: string | null;
      }>(
        `select n.nspname as schema, p.proname as name, l.lanname as language, p.prosecdef as secdef, p.prokind::text as kind,
                exists (select 1 from pg_catalog.pg_depend d
                         where d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass and d.objid = p.oid and d.deptype = 'e') as ext,
                case when l.lanname in ('sql', 'plpgsql') and p.prokind <> 'a' then pg_catalog.pg_get_functiondef(p.oid) end as def
           from pg_catalog.pg_proc p
           join pg_catalog.pg_namespace n on n.oid = p.pronamespace
           join pg_catalog.pg_language l on l.oid = p.prolang
          where p.oid >= 16384`,
      );
      const inh = await client.query<{ parent: string; child: string }>(
        `select pn.nspname || '.' || pc.relname as parent, cn.nspname || '.' || cc.relname as child
           from pg_catalog.pg_inherits i
           join pg_catalog.pg_class pc on pc.oid = i.inhparent join pg_catalog.pg_namespace pn on pn.oid = pc.relnamespace
           join pg_catalog.pg_class cc on cc.oid = i.inhrelid join pg_catalog.pg_namespace cn on cn.oid = cc.relnamespace`,
      );
      const ops = await client.query<{ schema: string; name: string; fschema: string; fname: string }>(
        `select n.nspname as schema, o.oprname as name, pn.nspname as fschema, p.proname as fname
           from pg_catalog.pg_operator o
           join pg_catalog.pg_namespace n on n.oid = o.oprnamespace
           join pg_catalog.pg_proc p on p.oid = o.oprcode join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace
          where o.oid >= 16384`,
      );
      await client.query('commit');
      return {
        views: views.rows.map((v) => ({ schema: v.schema, name: v.name, columns: v.cols, definition: v.def ?? '' })),
        functions: fns.rows.map((f) => ({
          schema: f.schema,
          name: f.name,
          language: f.language,
          definition: f.def,
          securityDefiner: f.secdef,
          extension: f.ext,
          kind: f.kind,
        })),
        inherits: inh.rows,
        operators: ops.rows.map((o) => ({ schema: o.schema, name: o.name, functionSchema: o.fschema, function: o.fname })),
      };
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /** The server's major version (server_version_num / 10000). */
  async serverMajor(database: string): Promise<number> {
    const res = await this.pool(database).query<{ v: number }>("select current_setting('server_version_num')::int / 10000 as v");
    return Number(res.rows[0]?.v);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
  }

  private pool(database: string): pg.Pool {
    let p = this.pools.get(database);
    if (p) return p;
    if (this.pools.size >= MAX_POOLS) {
      const [oldestName, oldest] = this.pools.entries().next().value as [string, pg.Pool];
      this.pools.delete(oldestName);
      void oldest.end().catch(() => {});
    }
    const url = new URL(this.deps.adminUrl);
    url.pathname = `/${encodeURIComponent(database)}`;
    p = new pg.Pool({ connectionString: url.toString(), max: 2, idleTimeoutMillis: 30_000, application_name: 'jit-agent-catalog' });
    p.on('error', () => this.deps.logger.warn({ target: this.deps.target }, 'catalog connection lost'));
    this.pools.set(database, p);
    return p;
  }
}

function key(database: string, oid: number): string {
  return `${database}\0${oid}`;
}
