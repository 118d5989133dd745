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
}

const MAX_POOLS = 32;

/** Per-target catalog resolver with a cache; shared by every stream of the target. */
export class Catalog {
  private readonly pools = new Map<string, pg.Pool>();
  private readonly tables = new Map<string, TableEntry>();
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
    const res = await this.pool(database).query<{ oid: number; nspname: string; relname: string; attnum: number; attname: string }>(
      `select c.oid::int8 as oid, n.nspname, c.relname, a.attnum, a.attname
         from pg_catalog.pg_class c
         join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         join pg_catalog.pg_attribute a on a.attrelid = c.oid
        where c.oid = any($1::pg_catalog.oid[]) and a.attnum > 0 and not a.attisdropped`,
      [tableOids],
    );
    const now = this.deps.clock.now();
    const fresh = new Map<number, TableEntry>();
    for (const oid of tableOids) fresh.set(oid, { at: now, schema: '', table: '', columns: new Map() });
    for (const r of res.rows) {
      const t = fresh.get(Number(r.oid));
      if (!t) continue;
      t.schema = r.nspname;
      t.table = r.relname;
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
