/** A small column table for list commands: plain text, aligned, optionally coloured header. */
import { clean, styles } from './style.js';

export interface Column<T> {
  header: string;
  value(row: T): string;
  /** Long cells are cut with "…" beyond this width. */
  maxWidth?: number;
  align?: 'left' | 'right';
}

export interface TableOptions {
  color?: boolean;
  /** Text printed instead of an empty table (header-less). */
  empty?: string;
}

function cut(text: string, max: number | undefined): string {
  const s = clean(text);
  return max !== undefined && s.length > max ? `${s.slice(0, Math.max(1, max - 1))}…` : s;
}

/** Render rows as an aligned table; ends with a newline. */
export function renderTable<T>(columns: Column<T>[], rows: readonly T[], opts: TableOptions = {}): string {
  if (rows.length === 0 && opts.empty !== undefined) return `${opts.empty}\n`;
  const st = styles(Boolean(opts.color));
  const cells = rows.map((r) => columns.map((c) => cut(c.value(r), c.maxWidth)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[], header: boolean) =>
    values
      .map((v, i) => {
        const last = i === values.length - 1;
        const padded = columns[i]!.align === 'right' ? v.padStart(widths[i]!) : last ? v : v.padEnd(widths[i]!);
        return header ? st.bold(padded) : padded;
      })
      .join('  ')
      .trimEnd();
  return (
    [
      line(
        columns.map((c) => c.header),
        true,
      ),
      ...cells.map((r) => line(r, false)),
    ].join('\n') + '\n'
  );
}
