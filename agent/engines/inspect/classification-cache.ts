/**
 * Classifications by SQL text, least recently used first out. Drivers send the same texts over
 * and over (prepared or not), so the parser runs once per distinct text, not once per query.
 * Classification depends only on the text: one cache serves every session of the agent.
 */
import { type Classification, classifySql } from '#protocol/postgres/classify.js';

/** Texts longer than this are classified every time instead of being kept. */
const MAX_CACHED_TEXT = 64 * 1024;

export class ClassificationCache {
  private readonly map = new Map<string, Classification>();

  constructor(
    private readonly maxEntries = 2000,
    private readonly classify: (sql: string) => Classification = classifySql,
  ) {}

  get(sql: string): Classification {
    const hit = this.map.get(sql);
    if (hit !== undefined) {
      // Refresh recency only now and then: a delete+set per query costs more than it saves.
      if (this.map.size > this.maxEntries / 2) {
        this.map.delete(sql);
        this.map.set(sql, hit);
      }
      return hit;
    }
    const c = this.classify(sql);
    if (sql.length <= MAX_CACHED_TEXT) {
      this.map.set(sql, c);
      if (this.map.size > this.maxEntries) {
        const oldest = this.map.keys().next().value;
        if (oldest !== undefined) this.map.delete(oldest);
      }
    }
    return c;
  }
}
