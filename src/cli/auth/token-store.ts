/**
 * Where login tokens live: the OS keychain (@napi-rs/keyring) under service "jit" and account
 * "<profile>@<server>#<config dir hash>", or — where no keychain exists (headless Linux, CI) — a 0600 file under
 * `$XDG_CONFIG_HOME/jit/tokens/` (directory 0700). The fallback is announced once per machine.
 * `JIT_KEYRING=file|keychain` pins the backend (tests and CI pin `file`).
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { JitError } from '#shared/errors/jit-error.js';
import { readEnv } from '#shared/runtime/env.js';

export const KEYCHAIN_SERVICE = 'jit';
const MAX_TOKEN_FILE_BYTES = 256 * 1024;
const WARNED_MARKER = '.keychain-fallback-warned';

/** What `jit login` keeps. Never printed, never logged. */
export const StoredTokens = z.object({
  accessToken: z.string().min(1),
  refreshToken: z.string().min(1).optional(),
  /** Access token expiry, milliseconds since the epoch. */
  expiresAt: z.number(),
  issuer: z.string(),
  clientId: z.string(),
  audience: z.string(),
  /** A summary of the ID token's claims, for `jit whoami` offline and the login message. */
  claims: z
    .object({
      sub: z.string(),
      username: z.string().optional(),
      email: z.string().optional(),
    })
    .optional(),
});
export type StoredTokens = z.infer<typeof StoredTokens>;

export type KeyringMode = 'auto' | 'keychain' | 'file';

/** The subset of @napi-rs/keyring's Entry we use (injectable for tests). */
export interface KeyringEntry {
  getPassword(): string | null;
  setPassword(password: string): void;
  deletePassword(): boolean;
}
export type OpenKeyringEntry = (service: string, account: string) => Promise<KeyringEntry>;

export interface TokenStore {
  /** The backend actually used by the last operation. */
  readonly backend: 'keychain' | 'file';
  get(): Promise<StoredTokens | null>;
  set(tokens: StoredTokens): Promise<void>;
  /** Returns whether anything was deleted. */
  delete(): Promise<boolean>;
}

export interface TokenStoreDeps {
  env: Readonly<Record<string, string | undefined>>;
  configDir: string;
  profile: string;
  server: string;
  /** Where the one-time fallback warning goes (stderr). */
  warn(line: string): void;
  openEntry?: OpenKeyringEntry;
}

/** The JIT_KEYRING setting: unset → auto. */
export function keyringMode(env: Readonly<Record<string, string | undefined>>): KeyringMode {
  const v = readEnv(env, 'JIT_KEYRING');
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'file' || v === 'keychain') return v;
  throw new JitError('JIT_CONFIG_INVALID', {
    message: `JIT_KEYRING: "${v.slice(0, 40)}" is not one of auto, keychain, file`,
    hint: 'unset JIT_KEYRING, or set it to file or keychain',
  });
}

/** The per-profile, per-server file and lock names (the server is hashed: it may contain ":" or "/"). */
export function tokenPaths(configDir: string, profile: string, server: string): { dir: string; file: string; lock: string } {
  const dir = path.join(configDir, 'tokens');
  const base = `${profile}@${createHash('sha256').update(server).digest('hex').slice(0, 16)}`;
  return { dir, file: path.join(dir, `${base}.json`), lock: path.join(dir, `${base}.lock`) };
}

/**
 * The keychain account: profile, server and the config directory's identity. The keychain is per
 * OS user, so without the directory two HOMEs (or XDG_CONFIG_HOMEs) of one user — two people
 * sharing an account, a CI job beside a person — would read each other's tokens.
 */
export function keychainAccount(configDir: string, profile: string, server: string): string {
  return `${profile}@${server}#${createHash('sha256').update(path.resolve(configDir)).digest('hex').slice(0, 12)}`;
}

/** Make the tokens directory exist with mode 0700 (tightening an existing one). */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

const defaultOpenEntry: OpenKeyringEntry = async (service, account) => {
  // Loaded lazily: the native module costs start-up time that file-store users should not pay.
  const { Entry } = await import('@napi-rs/keyring');
  return new Entry(service, account);
};

function parseBlob(text: string): StoredTokens | null {
  try {
    return StoredTokens.parse(JSON.parse(text));
  } catch {
    // A corrupt entry is treated as "not logged in" rather than a crash; login overwrites it.
    return null;
  }
}

class FileBackend {
  constructor(private readonly paths: { dir: string; file: string }) {}

  get(): StoredTokens | null {
    let fd: number;
    try {
      // O_NOFOLLOW: never read tokens through a symlink someone else planted.
      fd = openSync(this.paths.file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new JitError('JIT_AUTH_REQUIRED', { detail: `token file unreadable: ${(err as Error).message}`, cause: err });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > MAX_TOKEN_FILE_BYTES) return null;
      const buf = Buffer.alloc(st.size);
      let off = 0;
      while (off < st.size) {
        const n = readSync(fd, buf, off, st.size - off, off);
        if (n === 0) break;
        off += n;
      }
      return parseBlob(buf.subarray(0, off).toString('utf8'));
    } finally {
      closeSync(fd);
    }
  }

  set(tokens: StoredTokens): void {
    ensurePrivateDir(this.paths.dir);
    const tmp = path.join(this.paths.dir, `.${randomUUID()}.tmp`);
    // 'wx' + 0600: the file is private from its first byte; rename makes the swap atomic.
    writeFileSync(tmp, JSON.stringify(tokens), { mode: 0o600, flag: 'wx' });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.paths.file);
  }

  exists(): boolean {
    return existsSync(this.paths.file);
  }

  delete(): boolean {
    try {
      unlinkSync(this.paths.file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }
}

/** Build the token store for one profile and server. */
export function createTokenStore(deps: TokenStoreDeps): TokenStore {
  const mode = keyringMode(deps.env);
  const paths = tokenPaths(deps.configDir, deps.profile, deps.server);
  const file = new FileBackend(paths);
  const account = keychainAccount(deps.configDir, deps.profile, deps.server);
  const openEntry = deps.openEntry ?? defaultOpenEntry;
  let backend: 'keychain' | 'file' = mode === 'file' ? 'file' : 'keychain';

  const warnOnce = () => {
    const marker = path.join(paths.dir, WARNED_MARKER);
    if (existsSync(marker)) return;
    deps.warn(`! No OS keychain is available here; jit keeps its tokens in ${paths.dir} (files readable only by you).`);
    try {
      ensurePrivateDir(paths.dir);
      writeFileSync(marker, '', { mode: 0o600 });
    } catch {
      // Not remembering means warning again next time: acceptable.
    }
  };

  /** Run a keychain operation; in auto mode a failing keychain falls back to the file. */
  async function withKeychain<T>(op: (e: KeyringEntry) => T, fallback: () => T): Promise<T> {
    if (mode === 'file') {
      backend = 'file';
      return fallback();
    }
    try {
      const entry = await openEntry(KEYCHAIN_SERVICE, account);
      const out = op(entry);
      backend = 'keychain';
      return out;
    } catch (err) {
      if (mode === 'keychain') {
        throw new JitError('JIT_KEYCHAIN_UNAVAILABLE', {
          hint: 'unset JIT_KEYRING (or set JIT_KEYRING=file) to keep tokens in a 0600 file',
          detail: (err as Error)?.message,
          cause: err,
        });
      }
      backend = 'file';
      warnOnce();
      return fallback();
    }
  }

  return {
    get backend() {
      return backend;
    },
    async get() {
      const fromKeychain = await withKeychain(
        (e) => {
          const v = e.getPassword();
          return v === null ? null : parseBlob(v);
        },
        () => file.get(),
      );
      // Auto mode: tokens written while the keychain was unavailable are still honoured.
      if (fromKeychain === null && mode === 'auto' && backend === 'keychain') return file.get();
      return fromKeychain;
    },
    async set(tokens) {
      const blob = JSON.stringify(StoredTokens.parse(tokens));
      await withKeychain(
        (e) => {
          e.setPassword(blob);
          // A file copy exists when a process without the keychain (a cron job, an ssh login
          // without a desktop session) logged in here: keep it current instead of deleting it —
          // deleting it made such a process lose its login whenever another one refreshed.
          if (mode === 'auto' && file.exists()) file.set(tokens);
        },
        () => file.set(tokens),
      );
    },
    async delete() {
      const fromKeychain = await withKeychain(
        (e) => e.deletePassword(),
        () => file.delete(),
      );
      const fromFile = mode === 'auto' && backend === 'keychain' ? file.delete() : false;
      return fromKeychain || fromFile;
    },
  };
}
