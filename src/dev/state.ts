/**
 * The `jit dev` folder (default `./.jit-dev`): everything the embedded setup keeps between runs.
 *
 *   state.json       0600  PostgreSQL superuser password, last PostgreSQL port
 *   dev-users.json   0600  the dev users' plaintext passwords (printed at every start)
 *   server.yaml            control plane config (rewritten at every start; password hashes only)
 *   policy.yaml            the demo policy (rewritten at every start)
 *   server/                control plane data (SQLite, signing keys)
 *   pg/                    PostgreSQL data directory;  postgres.log its log
 *
 * Secrets that need not survive a restart are not stored: the agent token and the jit_admin
 * password are made fresh at every start and live only in memory (and as hashes).
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { JitError } from '#shared/errors/jit-error.js';

export const STATE_FILE = 'state.json';
export const USERS_FILE = 'dev-users.json';

const DevStateSchema = z.object({
  version: z.literal(1),
  pgSuperPassword: z.string().min(16).max(200),
  pgPort: z.number().int().min(1).max(65535).optional(),
});
export type DevState = z.infer<typeof DevStateSchema>;

const DevUserSchema = z.object({
  username: z.string().regex(/^[a-z][a-z0-9._-]{0,62}$/),
  password: z.string().min(8).max(200),
  name: z.string().max(200),
  email: z.string().email(),
  groups: z.array(z.string().max(100)).max(20),
});
export type DevUser = z.infer<typeof DevUserSchema>;
const DevUsersSchema = z.array(DevUserSchema).min(1).max(20);

/** The fixed cast of the demo: an engineer and an administrator. */
export const DEV_USER_PROFILES: ReadonlyArray<Omit<DevUser, 'password'>> = [
  { username: 'alice', name: 'Alice (engineer)', email: 'alice@jit.example', groups: ['engineers'] },
  { username: 'bob', name: 'Bob (administrator)', email: 'bob@jit.example', groups: ['engineers', 'jit-admins'] },
];
export const ADMIN_GROUP = 'jit-admins';

export interface DevFolder {
  dir: string;
  state: DevState;
  users: DevUser[];
  /** True when this run created the folder (first run or after --reset). */
  created: boolean;
  file(name: string): string;
  /** Persist a changed state (e.g. the PostgreSQL port actually used). */
  saveState(state: DevState): void;
}

// No 0/O, 1/l/I: the passwords are read off a terminal and typed into a browser.
const TYPABLE = 'abcdefghjkmnpqrstuvwxyz23456789';

/** A password that is easy to type: `xxxx-xxxx-xxxx` (≈ 59 bits) from unbiased random bytes. */
export function typablePassword(random: (n: number) => Buffer): string {
  let out = '';
  while (out.length < 12) {
    for (const b of random(32)) {
      // Rejection sampling keeps every character equally likely.
      if (b < 256 - (256 % TYPABLE.length) && out.length < 12) out += TYPABLE[b % TYPABLE.length];
    }
  }
  return `${out.slice(0, 4)}-${out.slice(4, 8)}-${out.slice(8, 12)}`;
}

/** Write a file with mode 0600 atomically (a crash never leaves half a secret file). */
export function writeSecretFile(file: string, text: string): void {
  const tmp = `${file}.${randomUUID()}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

function readJson<S extends z.ZodType>(file: string, schema: S): z.infer<S> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${file} cannot be read`,
      hint: 'jit dev --reset starts over with a fresh dev folder',
      cause,
    });
  }
  const r = schema.safeParse(parsed);
  if (!r.success) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${file}: ${r.error.issues[0]?.path.join('.') || '(top level)'}: ${r.error.issues[0]?.message}`,
      hint: 'jit dev --reset starts over with a fresh dev folder',
    });
  }
  return r.data;
}

/** Whether `dir` is a jit dev folder (or absent/empty), i.e. safe to use and to delete. */
export function isDevFolderOrEmpty(dir: string): boolean {
  if (!existsSync(dir)) return true;
  if (!statSync(dir).isDirectory()) return false;
  const entries = readdirSync(dir);
  return entries.length === 0 || entries.includes(STATE_FILE);
}

/** Refuse folders that are not ours: --dir with --reset must never delete someone's home. */
export function assertDevFolder(dir: string): void {
  if (!isDevFolderOrEmpty(dir)) {
    throw new JitError('JIT_USAGE', {
      message: `${dir} exists and is not a jit dev folder (it has no ${STATE_FILE})`,
      hint: 'pass --dir with a new or empty folder, e.g. --dir .jit-dev',
    });
  }
}

/** Delete the dev folder (after assertDevFolder). PostgreSQL must be stopped first. */
export function removeDevFolder(dir: string): void {
  assertDevFolder(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Open the dev folder, creating it with fresh secrets on the first run. The folder is 0700:
 * it holds plaintext dev passwords.
 */
export function openDevFolder(dir: string, random: (n: number) => Buffer): DevFolder {
  assertDevFolder(dir);
  const file = (name: string) => path.join(dir, name);
  let created = false;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  if (!existsSync(file(STATE_FILE))) {
    created = true;
    const users: DevUser[] = DEV_USER_PROFILES.map((p) => ({ ...p, groups: [...p.groups], password: typablePassword(random) }));
    // Users first: state.json is the marker that the folder is complete.
    writeSecretFile(file(USERS_FILE), `${JSON.stringify(users, null, 2)}\n`);
    const state: DevState = { version: 1, pgSuperPassword: random(24).toString('base64url') };
    writeSecretFile(file(STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  }
  const state = readJson(file(STATE_FILE), DevStateSchema);
  const users = readJson(file(USERS_FILE), DevUsersSchema);
  return {
    dir,
    state,
    users,
    created,
    file,
    saveState(next) {
      writeSecretFile(file(STATE_FILE), `${JSON.stringify(DevStateSchema.parse(next), null, 2)}\n`);
      this.state = next;
    },
  };
}
