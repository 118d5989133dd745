/**
 * Function classes jit ships: what a function does, by name, so policy can say `functionClasses:
 * [sql-executing, server-file]` instead of listing names (and keeping the list up to date), and so
 * masking knows which calls can carry a masked value past it.
 *
 * Built-in functions (pg-builtins.ts lists every name of the supported server version) are
 * classified here by name; a built-in name in no class is `plain`. Functions of the database
 * itself (user-defined, from extensions) are classified from the target's catalog (provenance.ts):
 * `user-defined` (not from an extension), `security-definer` (runs as its owner), plus any class
 * their name has here (dblink, crosstab… come from extensions). A name that is neither built in nor
 * in the catalog is `unknown`.
 *
 * Decisions (see docs/policy.md, "Function classes"):
 * - Names are matched without schema and case-insensitively (a function named like a built-in in
 *   another schema gets the built-in's classes too: over-matching is the safe mistake).
 * - SQL-executing functions name which arguments hold SQL text (SQL_TEXT_ARGS): a constant there is
 *   parsed and judged as if the client had sent it; anything else cannot be judged.
 */
import { FUNCTION_CLASSES, type FunctionClass } from '#shared/config/policy.js';
import { builtinFunctionNames } from './pg-builtins.js';

export { FUNCTION_CLASSES, type FunctionClass };

/** One line each: what the class means (docs/policy.md shows these). */
export const FUNCTION_CLASS_MEANING: Record<FunctionClass, string> = {
  'sql-executing': 'runs SQL text it is given (query_to_xml, ts_stat, dblink, crosstab, …)',
  serialiser: 'returns a whole table, schema or database as one value (table_to_xml, schema_to_xml, database_to_xml, cursor_to_xml, …)',
  'backend-signal': 'signals or reconfigures server processes (pg_terminate_backend, pg_cancel_backend, pg_reload_conf, …)',
  'server-file': "reads or lists the server's files (pg_read_file, pg_ls_dir, pg_stat_file, …)",
  'large-object': 'large objects, including import and export of server files (lo_import, lo_export, lo_get, …)',
  'advisory-lock': 'advisory locks (pg_advisory_lock, pg_try_advisory_xact_lock, …)',
  notification: 'LISTEN/NOTIFY through functions (pg_notify, pg_listening_channels, …)',
  configuration: 'changes settings (set_config)',
  'replication-admin':
    'replication slots, WAL, backups, recovery and statistics resets (pg_create_logical_replication_slot, pg_switch_wal, pg_stat_reset, …)',
  'extension-management': 'extension bookkeeping (pg_extension_config_dump, …)',
  'statistics-values': 'sample values of columns kept by the planner (pg_mcv_list_items)',
  'user-defined': 'a function of the database, not built in and not from an extension',
  'security-definer': "runs with its owner's privileges (SECURITY DEFINER)",
  unknown: 'neither built in nor in the catalog jit read at the session start',
};

const BY_CLASS: Partial<Record<FunctionClass, string[]>> = {
  'sql-executing': [
    'query_to_xml',
    'query_to_xmlschema',
    'query_to_xml_and_xmlschema',
    'ts_stat',
    'ts_rewrite',
    'dblink',
    'dblink_exec',
    'dblink_open',
    'dblink_send_query',
    'dblink_build_sql_insert',
    'dblink_build_sql_update',
    'dblink_build_sql_delete',
    'crosstab',
    'crosstab2',
    'crosstab3',
    'crosstab4',
    'connectby',
    'pg_background_launch',
  ],
  serialiser: [
    'table_to_xml',
    'table_to_xmlschema',
    'table_to_xml_and_xmlschema',
    'schema_to_xml',
    'schema_to_xmlschema',
    'schema_to_xml_and_xmlschema',
    'database_to_xml',
    'database_to_xmlschema',
    'database_to_xml_and_xmlschema',
    'cursor_to_xml',
    'cursor_to_xmlschema',
  ],
  'backend-signal': [
    'pg_cancel_backend',
    'pg_terminate_backend',
    'pg_reload_conf',
    'pg_rotate_logfile',
    'pg_log_backend_memory_contexts',
    'pg_promote',
  ],
  'server-file': [
    'pg_read_file',
    'pg_read_binary_file',
    'pg_stat_file',
    'pg_ls_dir',
    'pg_ls_logdir',
    'pg_ls_waldir',
    'pg_ls_tmpdir',
    'pg_ls_archive_statusdir',
    'pg_ls_logicalsnapdir',
    'pg_ls_logicalmapdir',
    'pg_ls_replslotdir',
    'pg_ls_summariesdir',
    'pg_current_logfile',
    'pg_file_write',
    'pg_file_rename',
    'pg_file_unlink',
    'pg_file_sync',
    'pg_logdir_ls',
  ],
  'large-object': [
    'lo_import',
    'lo_export',
    'lo_get',
    'lo_put',
    'lo_open',
    'lo_close',
    'lo_create',
    'lo_creat',
    'lo_unlink',
    'lo_from_bytea',
    'lo_lseek',
    'lo_lseek64',
    'lo_tell',
    'lo_tell64',
    'lo_truncate',
    'lo_truncate64',
    'loread',
    'lowrite',
  ],
  'advisory-lock': [
    'pg_advisory_lock',
    'pg_advisory_lock_shared',
    'pg_advisory_unlock',
    'pg_advisory_unlock_all',
    'pg_advisory_unlock_shared',
    'pg_advisory_xact_lock',
    'pg_advisory_xact_lock_shared',
    'pg_try_advisory_lock',
    'pg_try_advisory_lock_shared',
    'pg_try_advisory_xact_lock',
    'pg_try_advisory_xact_lock_shared',
  ],
  notification: ['pg_notify', 'pg_listening_channels', 'pg_notification_queue_usage'],
  configuration: ['set_config'],
  'replication-admin': [
    'pg_create_physical_replication_slot',
    'pg_create_logical_replication_slot',
    'pg_copy_physical_replication_slot',
    'pg_copy_logical_replication_slot',
    'pg_drop_replication_slot',
    'pg_replication_slot_advance',
    'pg_logical_slot_get_changes',
    'pg_logical_slot_peek_changes',
    'pg_logical_slot_get_binary_changes',
    'pg_logical_slot_peek_binary_changes',
    'pg_logical_emit_message',
    'pg_sync_replication_slots',
    'pg_replication_origin_advance',
    'pg_replication_origin_create',
    'pg_replication_origin_drop',
    'pg_replication_origin_session_reset',
    'pg_replication_origin_session_setup',
    'pg_replication_origin_xact_reset',
    'pg_replication_origin_xact_setup',
    'pg_backup_start',
    'pg_backup_stop',
    'pg_switch_wal',
    'pg_create_restore_point',
    'pg_wal_replay_pause',
    'pg_wal_replay_resume',
    'pg_log_standby_snapshot',
    'pg_stat_reset',
    'pg_stat_reset_shared',
    'pg_stat_reset_slru',
    'pg_stat_reset_single_table_counters',
    'pg_stat_reset_single_function_counters',
    'pg_stat_reset_replication_slot',
    'pg_stat_reset_subscription_stats',
    'pg_stat_reset_backend_stats',
    'pg_import_system_collations',
    'binary_upgrade_create_empty_extension',
    'binary_upgrade_logical_slot_has_caught_up',
  ],
  'extension-management': ['pg_extension_config_dump'],
  'statistics-values': ['pg_mcv_list_items'],
};

const CLASS_OF = new Map<string, FunctionClass[]>();
for (const [cls, names] of Object.entries(BY_CLASS) as [FunctionClass, string[]][]) {
  for (const n of names) CLASS_OF.set(n, [...(CLASS_OF.get(n) ?? []), cls]);
}

/**
 * Which arguments (0-based) of an SQL-executing function hold SQL text, by argument count
 * ('*' for any count). ts_rewrite's 3-argument form takes no SQL.
 */
export const SQL_TEXT_ARGS: Record<string, Partial<Record<number | '*', number[]>>> = {
  query_to_xml: { '*': [0] },
  query_to_xmlschema: { '*': [0] },
  query_to_xml_and_xmlschema: { '*': [0] },
  ts_stat: { '*': [0] },
  ts_rewrite: { 2: [1], 3: [] },
  dblink: { 1: [0], 2: [1], 3: [1] },
  dblink_exec: { 1: [0], 2: [1], 3: [1] },
  dblink_send_query: { '*': [1] },
  dblink_open: { 2: [1], 3: [1, 2], 4: [2] },
  crosstab: { '*': [0, 1] },
  crosstab2: { '*': [0] },
  crosstab3: { '*': [0] },
  crosstab4: { '*': [0] },
  pg_background_launch: { '*': [0] },
};

/** Argument positions holding SQL text for a call with `argc` arguments; undefined when the function takes none. */
export function sqlTextArgs(name: string, argc: number): number[] | undefined {
  const spec = SQL_TEXT_ARGS[name.toLowerCase()];
  if (!spec) return undefined;
  return spec[argc] ?? spec['*'];
}

function bare(name: string): string {
  const n = name.toLowerCase();
  const dot = n.lastIndexOf('.');
  return dot >= 0 ? n.slice(dot + 1) : n;
}

/** The shipped classes of a function name (schema ignored); [] for a plain built-in or a name jit does not classify by itself. */
export function builtinClasses(name: string): readonly FunctionClass[] {
  return CLASS_OF.get(bare(name)) ?? [];
}

/** Is this a built-in function name of the supported server version? */
export function isBuiltinFunction(name: string): boolean {
  return builtinFunctionNames().has(bare(name));
}

/** Every name a class lists (for docs and the catalog-wide test). */
export function classMembers(cls: FunctionClass): readonly string[] {
  return BY_CLASS[cls] ?? [];
}
