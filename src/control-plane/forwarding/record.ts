/**
 * What a forwarded audit event looks like on the wire: the API's AuditEvent plus the chain fields
 * and an idempotency key. Delivery is at least once; receivers dedupe by `id` (or by
 * `idempotencyKey`, the event's hash, unique across streams), which makes the result exactly once.
 */
import os from 'node:os';
import type { Selectable } from 'kysely';
import type { AuditTable } from '../store/db.js';
import { toAuditEvent } from '../audit/audit-log.js';

export interface ForwardRecord {
  id: number;
  idempotencyKey: string;
  time: string;
  type: string;
  actor?: string | undefined;
  target?: string | undefined;
  session?: string | undefined;
  outcome: string;
  data: Record<string, unknown>;
  stream?: string | undefined;
  seq?: number | undefined;
  prevHash?: string | undefined;
  hash?: string | undefined;
}

/** A stored row as a forwarded record. */
export function toRecord(r: Selectable<AuditTable>): ForwardRecord {
  const e = toAuditEvent(r);
  return { ...e, idempotencyKey: e.hash ?? `${e.stream ?? 'cp'}:${e.id}` };
}

/** JSON lines: one record per line, newline-terminated. */
export function jsonLines(records: readonly ForwardRecord[]): string {
  let out = '';
  for (const r of records) out += `${JSON.stringify(r)}\n`;
  return out;
}

/** Syslog's SD-ID for jit's parameters. 32473 is the documentation enterprise number (RFC 5612). */
export const SYSLOG_SD_ID = 'jit@32473';

function sdEscape(v: string): string {
  return v.replace(/[\\"\]]/g, (c) => `\\${c}`);
}

/** PRINTUSASCII without spaces, as HOSTNAME, APP-NAME and MSGID require; '-' when empty. */
function printable(v: string, max: number): string {
  const s = v.replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return s || '-';
}

export interface SyslogOptions {
  facility: number;
  hostname?: string;
  appName?: string;
}

/** One RFC 5424 message (without framing) for a record. */
export function syslogMessage(r: ForwardRecord, o: SyslogOptions): string {
  const severity = r.outcome === 'failure' ? 4 : 6;
  const pri = o.facility * 8 + severity;
  const host = printable(o.hostname ?? os.hostname(), 255);
  const sd = `[${SYSLOG_SD_ID} id="${r.id}" stream="${sdEscape(r.stream ?? '')}" seq="${r.seq ?? ''}" hash="${sdEscape(r.hash ?? '')}"]`;
  return `<${pri}>1 ${r.time} ${host} ${printable(o.appName ?? 'jit', 48)} - ${printable(r.type, 32)} ${sd} \uFEFF${JSON.stringify(r)}`;
}

/** RFC 6587 octet-counting frame: `<byte length> <message>`. */
export function octetFrame(msg: string): Buffer {
  const body = Buffer.from(msg, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}
