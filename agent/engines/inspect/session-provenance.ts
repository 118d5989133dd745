/**
 * One connection's view of provenance (src/protocol/postgres/provenance.ts): the session's rules
 * with the view and child-table column masks the catalog adds, and what the database's own
 * functions are. Read when the connection opens (before the client is told it is in), again once
 * a statement that may change the catalog has passed and completed, and at least every
 * REFRESH_MS while statements arrive.
 *
 * Fail closed: a connection that needs provenance and cannot read the catalog at the start is not
 * let in. A failed refresh keeps the last snapshot: what it misses is still refused (a view the
 * planner cannot place, a function it does not know).
 */
import type { Catalog } from '#agent/catalog.js';
import { deriveProvenance, type Provenance } from '#protocol/postgres/provenance.js';
import type { InspectionRules } from '#shared/contract/agent.js';
import type { StatementKind } from '#shared/config/policy.js';
import type { Logger } from '#shared/log.js';
import type { Clock } from '#shared/runtime/ctx.js';

/** Longest a connection judges with one catalog snapshot while statements keep arriving. */
export const REFRESH_MS = 30_000;

/** Kinds after which the catalog may hold new views or functions. */
const CATALOG_CHANGING = new Set<StatementKind>(['create', 'alter', 'drop', 'create-function', 'do', 'call', 'other']);

export class SessionProvenance {
  rules: InspectionRules;
  prov: Provenance | undefined;
  /** Changes whenever rules/prov change: verdicts cached under an older generation are stale. */
  generation = 0;
  private at = 0;
  private dirty = false;

  private constructor(
    private readonly base: InspectionRules,
    private readonly source: { catalog: Catalog; database: string; clock: Clock; logger: Logger; target: string } | undefined,
  ) {
    this.rules = base;
  }

  /** Whether a session's rules need the catalog at all: column masking, or a guardrail on function classes. */
  static needed(rules: InspectionRules): boolean {
    return rules.masking.some((r) => r.columns.length > 0) || rules.guardrails.some((g) => (g.match.functionClasses?.length ?? 0) > 0);
  }

  /** Without a catalog (or when the rules need none) the base rules apply as they are. */
  static fixed(rules: InspectionRules): SessionProvenance {
    return new SessionProvenance(rules, undefined);
  }

  /** Read the catalog now; throws when it cannot be read. */
  static async open(
    rules: InspectionRules,
    source: { catalog: Catalog; database: string; clock: Clock; logger: Logger; target: string },
  ): Promise<SessionProvenance> {
    const p = new SessionProvenance(rules, source);
    await p.load();
    return p;
  }

  /** A statement of this kind passed: read the catalog again before judging the next one. */
  noteStatement(effects: readonly StatementKind[] | undefined): void {
    if (!this.source || !effects) return;
    for (const e of effects) if (CATALOG_CHANGING.has(e)) this.dirty = true;
  }

  /** Something the snapshot does not know turned up (a view it never read): read it again before the next statement. */
  noteUnknown(): void {
    if (this.source) this.dirty = true;
  }

  /**
   * A statement names a function the snapshot does not know: worth one fresh read (it may have
   * been created a moment ago). The caller asks once per statement; a snapshot read this very
   * millisecond is not read again.
   */
  mayKnowMore(): boolean {
    return this.source !== undefined && this.source.clock.now() > this.at;
  }

  needsRefresh(): boolean {
    if (!this.source) return false;
    return this.dirty || this.source.clock.now() - this.at > REFRESH_MS;
  }

  /** Read the catalog again (`fresh`: not a snapshot another connection shares); on failure keep the last one (logged). */
  async refresh(fresh = false): Promise<void> {
    if (fresh) this.dirty = true;
    try {
      await this.load();
    } catch (err) {
      this.dirty = false;
      this.at = this.source!.clock.now();
      this.source!.logger.warn(
        { target: this.source!.target, err: (err as Error).message },
        'catalog snapshot refresh failed; judging with the last one',
      );
    }
  }

  private async load(): Promise<void> {
    const src = this.source!;
    // after a change, a snapshot another connection read a moment ago may predate it
    const snap = await src.catalog.snapshot(src.database, this.dirty ? 0 : undefined);
    const prov = deriveProvenance(snap, this.base.masking);
    this.prov = prov;
    this.rules = prov.masks.length ? { ...this.base, masking: [...this.base.masking, ...prov.masks] } : this.base;
    this.at = src.clock.now();
    this.dirty = false;
    this.generation++;
  }
}
