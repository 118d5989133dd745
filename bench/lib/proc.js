/**
 * Child processes for the benchmark: every process the bench starts is registered here, so that
 * one `stopAll()` (also on failure and on Ctrl-C) takes all of them down, newest first.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

/** Milliseconds from a monotonic clock. */
export const now = () => performance.now();

/** A port that was free a moment ago on 127.0.0.1 (the kernel picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** True once something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port, timeoutMs = 1_000) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Poll until 127.0.0.1:port accepts a connection; throws after `timeoutMs`. */
export async function waitForPort(port, timeoutMs, what) {
  const end = now() + timeoutMs;
  while (now() < end) {
    if (await canConnect(port, 500)) return;
    await sleep(5);
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Resident set size of a process in KiB (Linux /proc), or undefined when it is gone. */
export function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Kernel clock ticks per second, for /proc/<pid>/stat CPU times. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time (user + system) a process has used, in ms; undefined when it is gone. */
export function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may contain spaces): state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

function descendants(rootPid) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // Field 4 of /proc/<pid>/stat is the parent pid; the command (field 2) may contain spaces.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(name));
    } catch {
      // Exited while we looked.
    }
  }
  const out = [];
  const stack = [rootPid];
  while (stack.length) {
    const pid = stack.pop();
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/**
 * Resident set size of a process and all its descendants in KiB (sshd forks per connection).
 * Undefined when the root process is gone.
 */
export function treeRssKiB(rootPid) {
  if (rssKiB(rootPid) === undefined) return undefined;
  return descendants(rootPid).reduce((sum, pid) => sum + (rssKiB(pid) ?? 0), 0);
}

/** CPU ms of a process and its live descendants (see treeRssKiB). */
export function treeCpuMs(rootPid) {
  if (cpuMs(rootPid) === undefined) return undefined;
  return descendants(rootPid).reduce((sum, pid) => sum + (cpuMs(pid) ?? 0), 0);
}

const TAIL_BYTES = 8_192;

/**
 * A tracked child: output is kept as a bounded tail (for error messages) and can be watched
 * line by line while the process runs.
 */
export class Child {
  constructor(name, proc, { stopSignal = 'SIGTERM', group = false } = {}) {
    this.name = name;
    this.proc = proc;
    this.stopSignal = stopSignal;
    this.group = group;
    this.out = '';
    this.err = '';
    this.watchers = [];
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => resolve({ code, signal }));
      proc.once('error', (error) => resolve({ code: null, signal: null, error }));
    });
    const keep = (key) => (chunk) => {
      this[key] = (this[key] + chunk.toString('utf8')).slice(-TAIL_BYTES);
      for (const w of this.watchers) w();
    };
    proc.stdout?.on('data', keep('out'));
    proc.stderr?.on('data', keep('err'));
  }

  get pid() {
    return this.proc.pid;
  }

  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Last lines of stderr and stdout, for a failure message. */
  tail(lines = 6) {
    const text = `${this.err}\n${this.out}`.trim().split('\n');
    return text.slice(-lines).join('\n');
  }

  /**
   * Wait until stdout+stderr (since the start) match `re`; rejects when the process exits first
   * or after `timeoutMs`. Resolves with the match.
   */
  waitFor(re, timeoutMs, stream = 'both') {
    return new Promise((resolve, reject) => {
      const text = () => (stream === 'out' ? this.out : stream === 'err' ? this.err : `${this.out}\n${this.err}`);
      let timer;
      const finish = (fn, v) => {
        clearTimeout(timer);
        this.watchers = this.watchers.filter((w) => w !== check);
        fn(v);
      };
      const check = () => {
        const m = re.exec(text());
        if (m) finish(resolve, m);
      };
      timer = setTimeout(
        () => finish(reject, new Error(`${this.name}: no ${re} within ${timeoutMs} ms; output:\n${this.tail()}`)),
        timeoutMs,
      );
      this.watchers.push(check);
      this.exited.then(({ code, signal, error }) => {
        check();
        finish(reject, new Error(`${this.name} exited (${error?.message ?? signal ?? code}) before ${re}; output:\n${this.tail()}`));
      });
      check();
    });
  }

  /** Send the stop signal, wait up to `ms`, then SIGKILL. Resolves when the process is gone. */
  async stop(ms = 5_000) {
    if (!this.running) return;
    this.signal(this.stopSignal);
    const gone = await Promise.race([this.exited.then(() => true), sleep(ms).then(() => false)]);
    if (!gone) {
      this.signal('SIGKILL');
      await Promise.race([this.exited, sleep(2_000)]);
    }
  }

  signal(sig) {
    try {
      // A detached child leads its own process group: signal the group so helpers die with it.
      if (this.group) process.kill(-this.proc.pid, sig);
      else this.proc.kill(sig);
    } catch {
      // Already gone.
    }
  }
}

/** The registry of everything the bench started. */
export class Procs {
  constructor() {
    this.children = [];
    this.cleanups = [];
    this.closed = false;
  }

  /** Spawn and track a process. `opts.stopSignal`, `opts.group` (own process group) as in Child. */
  spawn(name, cmd, args, opts = {}) {
    // After stopAll began (Ctrl-C), a new process would outlive the bench.
    if (this.closed) throw new Error(`not starting ${name}: the bench is stopping`);
    const { stopSignal, group, ...spawnOpts } = opts;
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: Boolean(group), ...spawnOpts });
    const child = new Child(name, proc, { stopSignal, group });
    this.children.push(child);
    return child;
  }

  /** Register an async cleanup step (run newest first, after the processes started later). */
  onCleanup(name, fn) {
    this.cleanups.push({ name, fn, at: this.children.length });
  }

  /** Stop every tracked process and run the cleanups, newest first; never throws. */
  async stopAll() {
    this.closed = true;
    const steps = [
      ...this.children.map((c, i) => ({ at: i, name: c.name, fn: () => c.stop() })),
      ...this.cleanups.map((c) => ({ at: c.at - 0.5, name: c.name, fn: c.fn })),
    ].sort((a, b) => b.at - a.at);
    this.children = [];
    this.cleanups = [];
    for (const s of steps) {
      try {
        await s.fn();
      } catch (err) {
        process.stderr.write(`bench: cleanup of ${s.name} failed: ${err?.message ?? err}\n`);
      }
    }
  }
}

/**
 * Run a command to completion with a time limit. Resolves `{ code, signal, stdout, stderr, ms }`
 * (stdout kept whole unless `stdout: 'ignore'`); never rejects except on spawn failure.
 */
export function run(cmd, args, { env, input, timeoutMs = 60_000, stdout = 'pipe' } = {}) {
  return new Promise((resolve, reject) => {
    const started = now();
    const proc = spawn(cmd, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', stdout, 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout?.on('data', (c) => {
      out += c.toString('utf8');
    });
    proc.stderr?.on('data', (c) => {
      err = (err + c.toString('utf8')).slice(-TAIL_BYTES);
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err, ms: now() - started });
    });
    if (input !== undefined) proc.stdin.end(input);
  });
}

/** Median of numbers (undefined for none). */
export function median(xs) {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
