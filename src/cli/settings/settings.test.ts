import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SERVER, rememberServer, resolveSettings, validateServerUrl } from './settings.js';

function home(config?: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-settings-'));
  if (config !== undefined) {
    mkdirSync(path.join(dir, 'xdg', 'jit'), { recursive: true });
    writeFileSync(path.join(dir, 'xdg', 'jit', 'config.yaml'), config);
  }
  return { homedir: dir, xdg: path.join(dir, 'xdg') };
}

const FILE = 'profiles:\n  default:\n    server: https://file.example.com\n  prod:\n    server: https://prod.example.com/\n';

describe('resolveSettings precedence', () => {
  it('flag beats environment beats config file beats default', () => {
    const h = home(FILE);
    const env = { XDG_CONFIG_HOME: h.xdg, JIT_SERVER: 'https://env.example.com' };
    const s1 = resolveSettings({ env, homedir: h.homedir, flags: { server: 'https://flag.example.com' } });
    expect([s1.server, s1.serverSource]).toEqual(['https://flag.example.com', 'flag']);
    const s2 = resolveSettings({ env, homedir: h.homedir, flags: {} });
    expect([s2.server, s2.serverSource]).toEqual(['https://env.example.com', 'env']);
    const s3 = resolveSettings({ env: { XDG_CONFIG_HOME: h.xdg }, homedir: h.homedir, flags: {} });
    expect([s3.server, s3.serverSource]).toEqual(['https://file.example.com', 'config']);
    const s4 = resolveSettings({ env: {}, homedir: h.homedir, flags: {} });
    expect([s4.server, s4.serverSource, s4.profile]).toEqual([DEFAULT_SERVER, 'default', 'default']);
  });

  it('the profile comes from --profile, then JIT_PROFILE, and selects the config entry', () => {
    const h = home(FILE);
    const env = { XDG_CONFIG_HOME: h.xdg, JIT_PROFILE: 'prod' };
    const s = resolveSettings({ env, homedir: h.homedir, flags: {} });
    expect([s.profile, s.profileSource, s.server]).toEqual(['prod', 'env', 'https://prod.example.com']);
    const f = resolveSettings({ env, homedir: h.homedir, flags: { profile: 'staging' } });
    expect([f.profile, f.profileSource, f.server]).toEqual(['staging', 'flag', DEFAULT_SERVER]);
  });

  it('without XDG_CONFIG_HOME the config lives in ~/.config/jit', () => {
    const h = home();
    const s = resolveSettings({ env: {}, homedir: h.homedir, flags: {} });
    expect(s.configFile).toBe(path.join(h.homedir, '.config', 'jit', 'config.yaml'));
  });

  it('a bad profile name or config entry names where it came from', () => {
    const h = home('profiles:\n  default:\n    server: http://evil.example.com\n');
    expect(() => resolveSettings({ env: {}, homedir: h.homedir, flags: { profile: '../x' } })).toThrow(/--profile/);
    expect(() => resolveSettings({ env: { XDG_CONFIG_HOME: h.xdg }, homedir: h.homedir, flags: {} })).toThrow(
      /config\.yaml: profiles\.default\.server: plain http is allowed only for this machine/,
    );
  });

  it('rememberServer writes the profile entry and keeps the others (0600)', () => {
    const h = home(FILE);
    const s = resolveSettings({ env: { XDG_CONFIG_HOME: h.xdg }, homedir: h.homedir, flags: { profile: 'new' } });
    rememberServer(s, 'https://new.example.com');
    const again = resolveSettings({ env: { XDG_CONFIG_HOME: h.xdg }, homedir: h.homedir, flags: { profile: 'new' } });
    expect(again.server).toBe('https://new.example.com');
    expect(readFileSync(s.configFile, 'utf8')).toContain('prod.example.com');
    expect(statSync(s.configFile).mode & 0o777).toBe(0o600);
  });
});

describe('validateServerUrl', () => {
  it('allows https anywhere and http only on loopback', () => {
    expect(validateServerUrl('https://jit.example.com/', 'x')).toBe('https://jit.example.com');
    expect(validateServerUrl('http://127.0.0.1:8443', 'x')).toBe('http://127.0.0.1:8443');
    expect(validateServerUrl('http://localhost:1/jit/', 'x')).toBe('http://localhost:1/jit');
    expect(validateServerUrl('http://[::1]:9', 'x')).toBe('http://[::1]:9');
    expect(() => validateServerUrl('http://10.0.0.1', '--server')).toThrow(/^--server: plain http/);
    expect(() => validateServerUrl('http://127.0.0.1.evil.com', 'x')).toThrow(/plain http/);
    expect(() => validateServerUrl('ftp://x', 'x')).toThrow(/must start with https/);
    expect(() => validateServerUrl('https://u:p@x.com', 'x')).toThrow(/credentials/);
    expect(() => validateServerUrl('nope', 'JIT_SERVER')).toThrow(/^JIT_SERVER: "nope" is not a URL/);
  });
});
