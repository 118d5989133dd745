/**
 * Mask plans for one connection's results: which column of a RowDescription (or a COPY … TO
 * STDOUT) a masking rule covers, from the target's catalog (table OID + attnum → schema.table.
 * column). A plan is made before the first row of its result is forwarded; when the catalog
 * cannot say, the result is refused (REFUSE_PLAN), never guessed.
 */
import type { StatementInfo } from '#protocol/postgres/classify.js';
import { type ColumnIdentity, type MaskPlan, planCopyMasking, planMasking } from '#protocol/postgres/mask.js';
import type { FieldDescription } from '#protocol/postgres/messages.js';
import type { MaskRule } from '#shared/config/policy.js';
import type { Logger } from '#shared/log.js';
import type { Catalog } from '../../catalog.js';
import type { SessionProvenance } from './session-provenance.js';

/** Stands for "refuse every row of this result". */
export const REFUSE_PLAN: MaskPlan = Object.freeze({ active: true });

export type PlanAnswer = MaskPlan | null | 'refuse';

export class ResultPlanner {
  private readonly cache = new Map<string, MaskPlan | null>();
  private readonly columnRules: boolean;
  private cacheOf = 0;

  constructor(
    private readonly provenance: SessionProvenance,
    private readonly where: { database: string; target: string },
    private readonly catalog: Catalog | undefined,
    private readonly logger: Logger,
  ) {
    this.columnRules = provenance.rules.masking.some((r) => r.columns.length > 0);
  }

  /** The session's masking rules with the view and child-table columns the catalog adds. */
  private get rules(): MaskRule[] {
    return this.provenance.rules.masking;
  }

  /** The plan of a result, from cache when the same RowDescription was seen and its tables are fresh. */
  forRow(body: string, fields: FieldDescription[]): PlanAnswer | Promise<PlanAnswer> {
    const { catalog } = this;
    const db = this.where.database;
    let missing: number[] = [];
    if (this.columnRules) {
      if (!catalog) return fields.some((f) => f.tableOid !== 0) ? 'refuse' : this.make(fields);
      missing = catalog.missing(
        db,
        fields.map((f) => f.tableOid),
      );
    }
    if (this.cacheOf !== this.provenance.generation) {
      this.cache.clear();
      this.cacheOf = this.provenance.generation;
    }
    if (missing.length === 0) {
      const cached = this.cache.get(body);
      if (cached !== undefined) return cached;
      return this.remember(body, this.make(fields));
    }
    return catalog!.load(db, missing).then(
      () => this.remember(body, this.make(fields)),
      (err: Error) => {
        this.logger.warn({ target: this.where.target, err: err.message }, 'catalog look-up failed; refusing the result');
        return 'refuse' as const;
      },
    );
  }

  /** The plan of a COPY … TO STDOUT with `columnCount` columns in `format`. */
  forCopy(
    info: StatementInfo | undefined,
    columnCount: number,
    format: 'text' | 'csv' | 'binary',
  ): MaskPlan | null | Promise<MaskPlan | null> {
    const apply = (cols: ColumnIdentity[] | undefined): MaskPlan | null => {
      if (!cols || cols.length !== columnCount) return REFUSE_PLAN;
      const p = planCopyMasking(cols, this.rules, format);
      return p.active ? (format === 'binary' ? REFUSE_PLAN : p) : null;
    };
    const cols = this.copyColumns(info);
    if (cols instanceof Promise) return cols.then(apply, () => apply(undefined));
    return apply(cols);
  }

  private remember(key: string, p: MaskPlan | null): MaskPlan | null {
    if (this.cache.size >= 256) this.cache.clear();
    this.cache.set(key, p);
    return p;
  }

  private make(fields: FieldDescription[]): MaskPlan | null {
    const db = this.where.database;
    const prov = this.provenance.prov;
    const plan = planMasking(
      fields,
      (oid, att) => {
        const id = this.catalog?.column(db, oid, att);
        if (!id || !prov) return id;
        // a view created after the snapshot: which columns it carries is unknown, so it is refused
        // (system views show the catalog; the guard refuses those that show column values)
        const kind = this.catalog!.relationKind(db, oid);
        const system = id.schema === 'pg_catalog' || id.schema === 'information_schema';
        if ((kind === 'v' || kind === 'm') && !system && !prov.views.has(`${id.schema}.${id.table}`.toLowerCase())) {
          this.provenance.noteUnknown();
          return undefined;
        }
        return id;
      },
      this.rules,
    );
    return plan.active ? plan : null;
  }

  /** Column identities of a COPY … TO STDOUT, in output order; undefined when they cannot be known. */
  private copyColumns(info: StatementInfo | undefined): ColumnIdentity[] | undefined | Promise<ColumnIdentity[] | undefined> {
    const copy = info?.copy;
    if (!copy) return undefined;
    if (copy.query) {
      if (!info.outputs || info.star) return this.columnRules ? undefined : info.outputs?.map(() => ({ column: '?' }));
      return info.outputs.map((o) => (o ? { ...splitRelation(o.relation), column: o.column } : { column: '?' }));
    }
    if (!copy.relation) return undefined;
    const rel = splitRelation(copy.relation);
    if (copy.columns && copy.columns.length > 0) return copy.columns.map((column) => ({ ...rel, column }));
    const { catalog } = this;
    if (!catalog) return undefined;
    return catalog
      .tableColumns(this.where.database, copy.relation)
      .then((t) => (t ? t.columns.map((column) => ({ schema: t.schema, table: t.table, column })) : undefined));
  }
}

function splitRelation(rel: string | undefined): { schema?: string; table?: string } {
  if (!rel) return {};
  const dot = rel.lastIndexOf('.');
  return dot < 0 ? { table: rel } : { schema: rel.slice(0, dot), table: rel.slice(dot + 1) };
}
