/**
 * oidc-provider's storage adapter on the control plane's kysely database, so grants, refresh
 * tokens, device codes and sessions survive a restart. One table for every model; the
 * secondary keys oidc-provider looks things up by (grantId, userCode, uid) get their own
 * columns and indexes. Portable SQL only: the same queries must run on PostgreSQL later.
 */
import type { Kysely } from 'kysely';

export const OIDC_TABLE = 'oidc_payloads' as const;

/** Models whose rows belong to a grant and are deleted with it (revocation, code reuse). */
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

/** What oidc-provider stores and reads back; its shape is oidc-provider's business. */
export type AdapterPayload = Record<string, unknown> & {
  grantId?: string;
  userCode?: string;
  uid?: string;
  consumed?: number;
};

/** The adapter interface oidc-provider v9 calls (see its memory adapter). */
export interface OidcAdapter {
  upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
  find(id: string): Promise<AdapterPayload | undefined>;
  findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
  findByUid(uid: string): Promise<AdapterPayload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

interface OidcPayloadsTable {
  model: string;
  id: string;
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  /** Epoch seconds; null = no expiry. */
  expires_at: number | null;
  consumed_at: number | null;
}

/** The part of the control plane's database this adapter owns. */
export interface OidcSchema {
  oidc_payloads: OidcPayloadsTable;
}

interface Row {
  payload: string;
  consumed_at: number | null;
}

/** Create the adapter's table and indexes if they are missing. */
export async function migrateOidcStore(db: Kysely<OidcSchema>): Promise<void> {
  await db.schema
    .createTable(OIDC_TABLE)
    .ifNotExists()
    .addColumn('model', 'varchar(64)', (c) => c.notNull())
    .addColumn('id', 'varchar(255)', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('grant_id', 'varchar(255)')
    .addColumn('user_code', 'varchar(255)')
    .addColumn('uid', 'varchar(255)')
    .addColumn('expires_at', 'bigint')
    .addColumn('consumed_at', 'bigint')
    .addPrimaryKeyConstraint('oidc_payloads_pk', ['model', 'id'])
    .execute();
  await db.schema.createIndex('oidc_payloads_grant').ifNotExists().on(OIDC_TABLE).column('grant_id').execute();
  await db.schema.createIndex('oidc_payloads_user_code').ifNotExists().on(OIDC_TABLE).columns(['model', 'user_code']).execute();
  await db.schema.createIndex('oidc_payloads_uid').ifNotExists().on(OIDC_TABLE).columns(['model', 'uid']).execute();
  await db.schema.createIndex('oidc_payloads_expiry').ifNotExists().on(OIDC_TABLE).column('expires_at').execute();
}

/** Returns oidc-provider's `adapter` factory: one adapter object per model name. */
export function createAdapterFactory(db: Kysely<OidcSchema>, now: () => number): (model: string) => OidcAdapter {
  const epoch = () => Math.floor(now() / 1000);
  let lastSweep = 0;

  // Expired rows are invisible to find*; deleting them now and then keeps the table small.
  async function sweep(): Promise<void> {
    const t = epoch();
    if (t - lastSweep < 60) return;
    lastSweep = t;
    await db.deleteFrom(OIDC_TABLE).where('expires_at', '<', t).execute();
  }

  function live(row: Row | undefined): AdapterPayload | undefined {
    if (!row) return undefined;
    const payload = JSON.parse(row.payload) as AdapterPayload;
    if (row.consumed_at !== null) payload.consumed = Number(row.consumed_at);
    return payload;
  }

  return (model: string): OidcAdapter => {
    const base = () =>
      db
        .selectFrom(OIDC_TABLE)
        .select(['payload', 'consumed_at'])
        .where('model', '=', model)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>=', epoch())]));

    return {
      async upsert(id, payload, expiresIn) {
        await sweep();
        const row = {
          model,
          id,
          payload: JSON.stringify(payload),
          grant_id: GRANTABLE.has(model) && typeof payload.grantId === 'string' ? payload.grantId : null,
          user_code: typeof payload.userCode === 'string' ? payload.userCode : null,
          uid: typeof payload.uid === 'string' ? payload.uid : null,
          expires_at: typeof expiresIn === 'number' ? epoch() + expiresIn : null,
        };
        await db
          .insertInto(OIDC_TABLE)
          .values({ ...row, consumed_at: null })
          .onConflict((oc) =>
            oc.columns(['model', 'id']).doUpdateSet({
              payload: row.payload,
              grant_id: row.grant_id,
              user_code: row.user_code,
              uid: row.uid,
              expires_at: row.expires_at,
            }),
          )
          .execute();
      },
      async find(id) {
        return live(await base().where('id', '=', id).executeTakeFirst());
      },
      async findByUserCode(userCode) {
        return live(await base().where('user_code', '=', userCode).executeTakeFirst());
      },
      async findByUid(uid) {
        return live(await base().where('uid', '=', uid).executeTakeFirst());
      },
      async consume(id) {
        await db.updateTable(OIDC_TABLE).set({ consumed_at: epoch() }).where('model', '=', model).where('id', '=', id).execute();
      },
      async destroy(id) {
        await db.deleteFrom(OIDC_TABLE).where('model', '=', model).where('id', '=', id).execute();
      },
      async revokeByGrantId(grantId) {
        await db.deleteFrom(OIDC_TABLE).where('grant_id', '=', grantId).execute();
      },
    };
  };
}

/** Count of stored rows for a model (tests and diagnostics). */
export async function countOidcRows(db: Kysely<OidcSchema>, model: string): Promise<number> {
  const r = await db
    .selectFrom(OIDC_TABLE)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('model', '=', model)
    .executeTakeFirst();
  return Number(r?.n ?? 0);
}
