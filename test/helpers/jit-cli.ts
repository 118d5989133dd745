/**
 * Drive the BUILT `jit` binary (`node bin/jit.js`, which imports dist/) like a user: an isolated
 * HOME and XDG_CONFIG_HOME per test, the file token store, no colours. Tests run after
 * `npm run build` (npm test does that); a missing dist/ fails loudly instead of testing old code.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The binary under test; JIT_E2E_BIN points the suite at another build (e.g. an installed jit). */
export const JIT_BIN = process.env['JIT_E2E_BIN'] ?? path.join(REPO_ROOT, 'bin', 'jit.js');

export interface JitRunOptions {
  /** HOME for the run; a fresh temp folder when absent (see makeHome). */
  home?: string;
  /** Extra environment (wins over the defaults below). */
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed. */
  input?: string;
  /** Kill with SIGKILL after this long (default 30 s) and report it in the result. */
  timeoutMs?: number;
  cwd?: string;
}

export interface JitResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** A fresh HOME with an XDG config folder inside. */
export function makeHome(): string {
  const home = mkdtempSync(path.join(os.tmpdir(), 'jit-home-'));
  mkdirSync(path.join(home, '.config'), { recursive: true });
  return home;
}

function assertBuilt(): void {
  if (!process.env['JIT_E2E_BIN'] && !existsSync(path.join(REPO_ROOT, 'dist', 'jit.js'))) {
    throw new Error('dist/jit.js is missing: run `npm run build` before the end-to-end tests');
  }
}

function childEnv(home: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    JIT_KEYRING: 'file',
    NO_COLOR: '1',
    LANG: 'C.UTF-8',
    TMPDIR: process.env['TMPDIR'],
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Run `jit <args>` to completion and capture its output and exit code. */
export function runJit(args: string[], opts: JitRunOptions = {}): Promise<JitResult> {
  assertBuilt();
  const home = opts.home ?? makeHome();
  const child = spawn(process.execPath, [JIT_BIN, ...args], {
    cwd: opts.cwd ?? home,
    env: childEnv(home, opts.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.on('error', () => {});
  child.stdin.end(opts.input ?? '');
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 30_000);
  return new Promise((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

export interface SpawnedJit {
  child: ChildProcessWithoutNullStreams;
  home: string;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /**
   * Resolve with the first line (already written or still to come) of `stream` matching `re`;
   * reject after `timeoutMs` or when the process exits first, quoting the output so far.
   */
  waitForLine(stream: 'stdout' | 'stderr', re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Send a signal (default SIGTERM). */
  kill(signal?: NodeJS.Signals): void;
  /** Resolve with the exit code and signal once the process has exited. */
  exited(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start a long-running `jit <args>` (jit dev, jit connect) and talk to it while it runs. */
export function spawnJit(args: string[], opts: Omit<JitRunOptions, 'input' | 'timeoutMs'> = {}): SpawnedJit {
  assertBuilt();
  const home = opts.home ?? makeHome();
  const child = spawn(process.execPath, [JIT_BIN, ...args], {
    cwd: opts.cwd ?? home,
    env: childEnv(home, opts.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  const feed = (name: 'stdout' | 'stderr', s: Readable) => {
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      out[name] += chunk;
      for (const l of listeners) l();
    });
  };
  feed('stdout', child.stdout);
  feed('stderr', child.stderr);
  child.stdin.on('error', () => {});
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitP = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      exit = { code, signal };
      for (const l of listeners) l();
      resolve(exit);
    });
  });
  return {
    child,
    home,
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    waitForLine(stream, re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const lineRe = new RegExp(re.source, re.flags.replace('g', ''));
        const check = () => {
          // Only whole lines: a match must not depend on how the output was chunked.
          const text = out[stream];
          const complete = text.slice(0, text.lastIndexOf('\n') + 1);
          for (const line of complete.split('\n')) {
            const m = line.match(lineRe);
            if (m) return done(() => resolve(m));
          }
          if (exit) {
            done(() =>
              reject(
                new Error(
                  `jit exited (code ${exit?.code}, signal ${exit?.signal}) before a ${stream} line matched ${re}\n` +
                    `stdout:\n${out.stdout}\nstderr:\n${out.stderr}`,
                ),
              ),
            );
          }
        };
        const timer = setTimeout(
          () =>
            done(() =>
              reject(new Error(`no ${stream} line matched ${re} within ${timeoutMs} ms\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`)),
            ),
          timeoutMs,
        );
        const done = (fn: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          fn();
        };
        listeners.add(check);
        check();
      });
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    exited(timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`jit did not exit within ${timeoutMs} ms\nstderr:\n${out.stderr}`)), timeoutMs);
        void exitP.then((e) => {
          clearTimeout(timer);
          resolve(e);
        });
      });
    },
  };
}
