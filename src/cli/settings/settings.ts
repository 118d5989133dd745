/**
 * Where the CLI talks to and as which profile: flags > JIT_* environment > config file (XDG) >
 * defaults. The config file holds only non-secret settings; tokens live in the token store.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { checkConfigFileSafe, parseYamlConfig, yaml } from '#shared/config/load.js';
import { JitError } from '#shared/errors/jit-error.js';
import { readEnv } from '#shared/runtime/env.js';

/** The server `jit dev` listens on; the last fallback. */
export const DEFAULT_SERVER = 'http://127.0.0.1:8443';
export const DEFAULT_PROFILE = 'default';

const ProfileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a profile name is 1-64 letters, digits, ".", "_" or "-"');

/** `$XDG_CONFIG_HOME/jit/config.yaml`: one entry per profile. */
export const CliConfigFile = z
  .object({
    profiles: z
      .record(
        ProfileName,
        z
          .object({
            server: z.string().describe('control plane URL this profile talks to'),
          })
          .partial()
          .strict(),
      )
      .default({})
      .describe('settings per profile (--profile / JIT_PROFILE)'),
  })
  .strict();
export type CliConfigFile = z.infer<typeof CliConfigFile>;

export type SettingSource = 'flag' | 'env' | 'config' | 'default';

export interface Settings {
  profile: string;
  profileSource: SettingSource;
  /** Normalised server URL without a trailing slash (origin plus optional path prefix). */
  server: string;
  serverSource: SettingSource;
  /** `$XDG_CONFIG_HOME/jit` (default `~/.config/jit`). */
  configDir: string;
  configFile: string;
}

export interface SettingsInput {
  env: Readonly<Record<string, string | undefined>>;
  homedir: string;
  flags: { server?: string | undefined; profile?: string | undefined };
}

/** The jit config directory: `$XDG_CONFIG_HOME/jit`, else `~/.config/jit`. */
export function configDirFor(env: Readonly<Record<string, string | undefined>>, homedir: string): string {
  const xdg = env['XDG_CONFIG_HOME'];
  // XDG says relative values are invalid and must be ignored.
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(homedir, '.config');
  return path.join(base, 'jit');
}

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h);
}

/** Whether a URL points at this machine (http is allowed only there). */
export function isLoopbackUrl(url: URL): boolean {
  return isLoopbackHost(url.hostname);
}

/**
 * Validate and normalise a control plane URL: https anywhere, http only for loopback hosts,
 * no credentials, query or fragment. `source` names where the value came from, for the error.
 */
export function validateServerUrl(raw: string, source: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${source}: "${raw.slice(0, 100)}" is not a URL`,
      hint: 'use a URL such as https://jit.example.com',
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${source}: the server URL must start with https://`,
      hint: 'use a URL such as https://jit.example.com',
    });
  }
  if (url.protocol === 'http:' && !isLoopbackUrl(url)) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${source}: plain http is allowed only for this machine (127.0.0.1, ::1, localhost)`,
      hint: `use https://${url.host}${url.pathname === '/' ? '' : url.pathname}`,
    });
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${source}: the server URL must not contain credentials, a query or a fragment`,
      hint: 'use only scheme, host, port and path, e.g. https://jit.example.com',
    });
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Read the CLI config file; a missing file is an empty config. */
export function readCliConfig(file: string): CliConfigFile {
  let text: string;
  checkConfigFileSafe(file);
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { profiles: {} };
    throw new JitError('JIT_CONFIG_INVALID', { message: `${file}: cannot be read`, cause: err });
  }
  return parseYamlConfig(text, CliConfigFile, file);
}

/** Resolve profile and server from flags, environment, the config file and defaults. */
export function resolveSettings(input: SettingsInput): Settings {
  const { env, flags } = input;
  const configDir = configDirFor(env, input.homedir);
  const configFile = path.join(configDir, 'config.yaml');

  let profile = DEFAULT_PROFILE;
  let profileSource: SettingSource = 'default';
  if (flags.profile !== undefined) [profile, profileSource] = [flags.profile, 'flag'];
  else if (readEnv(env, 'JIT_PROFILE')) [profile, profileSource] = [readEnv(env, 'JIT_PROFILE')!, 'env'];
  const parsedProfile = ProfileName.safeParse(profile);
  if (!parsedProfile.success) {
    throw new JitError('JIT_CONFIG_INVALID', {
      message: `${profileSource === 'flag' ? '--profile' : 'JIT_PROFILE'}: ${parsedProfile.error.issues[0]?.message}`,
      hint: 'use a name such as "prod" or "staging"',
    });
  }

  let server: string;
  let serverSource: SettingSource;
  if (flags.server !== undefined) {
    server = validateServerUrl(flags.server, '--server');
    serverSource = 'flag';
  } else if (readEnv(env, 'JIT_SERVER')) {
    server = validateServerUrl(readEnv(env, 'JIT_SERVER')!, 'JIT_SERVER');
    serverSource = 'env';
  } else {
    const fromFile = readCliConfig(configFile).profiles[profile]?.server;
    if (fromFile !== undefined) {
      server = validateServerUrl(fromFile, `${configFile}: profiles.${profile}.server`);
      serverSource = 'config';
    } else {
      server = DEFAULT_SERVER;
      serverSource = 'default';
    }
  }
  return { profile, profileSource, server, serverSource, configDir, configFile };
}

/** Remember `server` for `profile` in the config file (written atomically, 0600). */
export function rememberServer(settings: Pick<Settings, 'configDir' | 'configFile' | 'profile'>, server: string): void {
  const config = readCliConfig(settings.configFile);
  config.profiles[settings.profile] = { ...config.profiles[settings.profile], server };
  mkdirSync(settings.configDir, { recursive: true, mode: 0o700 });
  const tmp = `${settings.configFile}.${randomUUID()}.tmp`;
  writeFileSync(tmp, yaml().stringify(config), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, settings.configFile);
}
