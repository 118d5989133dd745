/**
 * The CLI's access token: read from the token store, refreshed silently when it has less than
 * a minute left. Refresh is serialised per profile+server by a lock file, and after taking the
 * lock the store is re-read — another jit process may already have rotated the refresh token.
 */
import { JitError } from '#shared/errors/jit-error.js';
import type { Ctx } from '#shared/runtime/ctx.js';
import { LockTimeoutError, withFileLock } from './lock.js';
import { refreshTokens } from './oidc.js';
import { ensurePrivateDir, type StoredTokens, type TokenStore, tokenPaths } from './token-store.js';

/** Refresh this early so a token never expires in flight. */
export const REFRESH_MARGIN_MS = 60_000;

export type Refresher = (tokens: StoredTokens) => Promise<StoredTokens>;

export interface AuthDeps {
  ctx: Pick<Ctx, 'fetch' | 'clock'>;
  store: TokenStore;
  configDir: string;
  profile: string;
  server: string;
  /** Defaults to the OIDC refresh_token grant. */
  refresh?: Refresher;
  lockStaleMs?: number;
}

export interface AccessTokenOptions {
  /** The server refused this token: refresh even if it looks valid (unless already replaced). */
  rejected?: string;
}

/** Access tokens for one profile and server. */
export class Auth {
  private inflight: Promise<string> | undefined;
  private readonly refresh: Refresher;
  private readonly lockPath: string;
  private readonly lockDir: string;

  constructor(private readonly deps: AuthDeps) {
    this.refresh = deps.refresh ?? ((t) => refreshTokens(deps.ctx, t));
    const paths = tokenPaths(deps.configDir, deps.profile, deps.server);
    this.lockPath = paths.lock;
    this.lockDir = paths.dir;
  }

  /** The stored tokens, or null when not logged in. */
  tokens(): Promise<StoredTokens | null> {
    return this.deps.store.get();
  }

  /** A usable access token: cached, or refreshed. No tokens → JIT_AUTH_REQUIRED. */
  async getAccessToken(opts: AccessTokenOptions = {}): Promise<string> {
    const current = await this.deps.store.get();
    if (!current) throw new JitError('JIT_AUTH_REQUIRED', { message: `You are not logged in to ${this.deps.server}` });
    if (!this.needsRefresh(current, opts)) return current.accessToken;
    // One refresh per process at a time; the lock file covers other processes.
    this.inflight ??= this.refreshLocked(opts).finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private needsRefresh(t: StoredTokens, opts: AccessTokenOptions): boolean {
    if (opts.rejected !== undefined) return t.accessToken === opts.rejected;
    return t.expiresAt - this.deps.ctx.clock.now() < REFRESH_MARGIN_MS;
  }

  private async refreshLocked(opts: AccessTokenOptions): Promise<string> {
    ensurePrivateDir(this.lockDir);
    try {
      return await withFileLock(
        this.lockPath,
        async () => {
          const latest = await this.deps.store.get();
          if (!latest) throw new JitError('JIT_AUTH_REQUIRED', { message: `You are not logged in to ${this.deps.server}` });
          if (!this.needsRefresh(latest, opts)) return latest.accessToken;
          if (!latest.refreshToken) {
            throw new JitError('JIT_AUTH_EXPIRED', { message: `Your login to ${this.deps.server} has expired` });
          }
          const next = await this.refresh(latest);
          await this.deps.store.set(next);
          return next.accessToken;
        },
        { clock: this.deps.ctx.clock, ...(this.deps.lockStaleMs ? { staleMs: this.deps.lockStaleMs } : {}) },
      );
    } catch (err) {
      if (err instanceof LockTimeoutError) {
        throw new JitError('JIT_AUTH_REFRESH_FAILED', {
          message: 'Another jit process is refreshing your login and did not finish',
          hint: `try again; if it persists, remove ${this.lockPath}`,
          cause: err,
        });
      }
      throw err;
    }
  }
}
